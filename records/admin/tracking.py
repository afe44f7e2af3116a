"""The tracking event review screens: list, masked form, actions and export."""

from django import forms
from django.contrib import admin
from django.db.models import Q

from records.admin.delivery import CdpOutcomeFilter
from records.admin.filters import (
    ErrorCodeFilter,
    LockedFilter,
    PurgedFilter,
    TrackingImportRunFilter,
)
from records.admin.formfields import PrettyJSONField
from records.admin.review import StagedRecordAdmin, masked_display
from records.models import TrackingEvent
from records.selectors import identity_provider_names
from records.services.review import TRACKING_EDITABLE_FIELDS, tracking_event_update


class TrackingEventForm(forms.ModelForm):
    class Meta:
        model = TrackingEvent
        fields = sorted(TRACKING_EDITABLE_FIELDS)
        field_classes = {
            "utms": PrettyJSONField,
            "feedback": PrettyJSONField,
            "identifiers": PrettyJSONField,
        }


@admin.register(TrackingEvent)
class TrackingEventAdmin(StagedRecordAdmin):
    schema = "tracking"
    editable_fields = TRACKING_EDITABLE_FIELDS
    form = TrackingEventForm
    list_display = (
        "id",
        "guest_identity_key",
        "service_identifier",
        "type",
        "channel",
        "occurred_at",
        "review_status",
        "error_count",
        "delivery_status",
        "import_run_display",
        "locked_display",
    )
    list_display_links = ("id",)
    list_filter = (
        "review_status",
        "delivery_status",
        CdpOutcomeFilter,
        ErrorCodeFilter,
        TrackingImportRunFilter,
        LockedFilter,
        PurgedFilter,
    )
    search_help_text = "Exact guest identity (provider:id or id), ref or database id."
    search_fields = ("guest_identity_key",)

    masked_guest_identity_key = masked_display("guest_identity_key", "guest identity")
    masked_identifiers = masked_display("identifiers", "identifiers")
    masked_uotr = masked_display("uotr", "uotr")
    masked_feedback = masked_display("feedback", "feedback")

    def base_fieldsets(self, obj):
        return [
            (
                None,
                {
                    "fields": (
                        "ref",
                        "guest_identity_key",
                        "review_status",
                        "validation_errors_display",
                        "delivery_status",
                        "delivered_at",
                        "purged_display",
                        "locked_display",
                    )
                },
            ),
            (
                "Event",
                {
                    "fields": (
                        "service_identifier",
                        "occurred_at",
                        "channel",
                        "type",
                        "uotr",
                        "utms",
                        "feedback",
                        "identifiers",
                    )
                },
            ),
            (
                "CDP value",
                {"fields": ("cdp_value_display", "value_hash", "delivered_hash", "mode")},
            ),
            (
                "Source",
                {"fields": ("import_run_display", "source_row", "created_at", "updated_at")},
            ),
            ("Delivery history", {"fields": ("delivery_history",)}),
        ]

    def search_q(self, term: str) -> Q:
        query = super().search_q(term)
        keys = [term] + [f"{p}:{term}" for p in identity_provider_names()]
        return query | Q(guest_identity_key__in=keys)

    def save_through_service(self, request, form, formsets, change):
        tracking_event_update(
            event=form.instance,
            fields=self.changed_fields(form, change),
            user=request.user,
        )
