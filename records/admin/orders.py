"""Review screen for orders: a masked list, filters, the review actions, and the order's page
with its items inline; every write through records.services.review (order_update).

The contact and consumers are people: without `records.view_pii` they are shown masked (the
rules of records.masking) and the page is read-only, as a guest's is. The items and the
order's own fields (reference, amounts, codes) are not personal and stay readable.
"""

from django import forms
from django.contrib import admin
from django.db.models import Q

from records import masking
from records.admin.delivery import CdpOutcomeFilter
from records.admin.filters import ErrorCodeFilter, ImportRunFilter, LockedFilter, PurgedFilter
from records.admin.formfields import PrettyJSONField, choices_with_current, pretty_json
from records.admin.guests import ParentLockMixin
from records.admin.review import StagedRecordAdmin
from records.models import Order, OrderItem
from records.rules import (
    ACCEPTED_CURRENCY_CODES,
    CARD_TYPES,
    ORDER_CHANNELS,
    ORDER_STATUSES,
    PAYMENT_TYPES,
)
from records.selectors import identity_provider_names
from records.services.review import ORDER_EDITABLE_FIELDS, order_update


class OrderImportRunFilter(ImportRunFilter):
    schema = "order"


class _CodeChoices:
    """Selects for the fields with a fixed list of valid values (records.rules holds them)."""

    CHOICE_FIELDS: dict[str, tuple[str, ...]] = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, values in self.CHOICE_FIELDS.items():
            if name in self.fields:
                self.fields[name].widget = forms.Select(
                    choices=choices_with_current(values, getattr(self.instance, name, None))
                )


CURRENCIES = tuple(sorted(ACCEPTED_CURRENCY_CODES))


class OrderForm(_CodeChoices, forms.ModelForm):
    CHOICE_FIELDS = {
        "channel": ORDER_CHANNELS,
        "status": ORDER_STATUSES,
        "currency_code": CURRENCIES,
        "payment_type": PAYMENT_TYPES,
        "card_type": CARD_TYPES,
    }

    class Meta:
        model = Order
        fields = sorted(ORDER_EDITABLE_FIELDS)
        field_classes = {
            "contact": PrettyJSONField,
            "consumers": PrettyJSONField,
            "extensions": PrettyJSONField,
        }


class OrderItemForm(_CodeChoices, forms.ModelForm):
    CHOICE_FIELDS = {
        "currency_code": CURRENCIES,
        "original_currency_code": CURRENCIES,
        "status": ORDER_STATUSES,
    }

    class Meta:
        model = OrderItem
        fields = (
            "position", "reference_id", "type", "product_id", "name", "description", "vendor",
            "ordered_at", "quantity", "price", "currency_code", "original_price",
            "original_currency_code", "status", "extensions", "flight_segments",
        )  # fmt: skip
        field_classes = {"extensions": PrettyJSONField, "flight_segments": PrettyJSONField}


class OrderItemInline(ParentLockMixin, admin.StackedInline):
    """The order's items, editable while the order is (an item holds no personal data)."""

    model = OrderItem
    form = OrderItemForm
    extra = 0
    ordering = ("position",)
    fieldsets = (
        (None, {"fields": (("position", "reference_id", "type", "status"),)}),
        (None, {"fields": (("product_id", "name", "vendor"), "description")}),
        (
            None,
            {
                "fields": (
                    ("ordered_at", "quantity"),
                    ("price", "currency_code"),
                    ("original_price", "original_currency_code"),
                    "extensions",
                    "flight_segments",
                )
            },
        ),
    )


def _masked_json(value, *, as_list: bool):
    """A contact (object) or consumers (list) as JSON with every personal key masked."""
    if as_list:
        masked = masking.mask_value({"consumers": value or []}, "order")["consumers"]
    else:
        masked = masking.mask_value(value or {}, "order")
    return pretty_json(masked)


@admin.register(Order)
class OrderAdmin(StagedRecordAdmin):
    schema = "order"
    editable_fields = ORDER_EDITABLE_FIELDS
    form = OrderForm
    inlines = (OrderItemInline,)
    # No export: the re-importable layouts of records.exporting are the guest's and tracking's.
    actions = ("mark_ready", "hold", "mark_new")
    list_display = (
        "id",
        "reference_id",
        "ordered_at",
        "contact_identity_key",
        "status",
        "channel",
        "price",
        "currency_code",
        "review_status",
        "error_count",
        "delivery_display",
        "import_run_display",
    )
    list_display_links = ("id", "reference_id")
    list_filter = (
        "review_status",
        "delivery_status",
        CdpOutcomeFilter,
        ErrorCodeFilter,
        OrderImportRunFilter,
        LockedFilter,
        PurgedFilter,
    )
    search_help_text = (
        "Exact order reference id, contact identity (provider:id or id), ref or database id."
    )
    search_fields = ("reference_id",)

    @admin.display(description="contact identity")
    def masked_contact_identity_key(self, obj):
        return masking.mask_identity_key(obj.contact_identity_key) or "-"

    @admin.display(description="contact")
    def masked_contact(self, obj):
        return _masked_json(obj.contact, as_list=False)

    @admin.display(description="consumers")
    def masked_consumers(self, obj):
        return _masked_json(obj.consumers, as_list=True)

    def base_fieldsets(self, obj):
        return [
            (
                None,
                {
                    "fields": (
                        "ref",
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
                "Order",
                {
                    "fields": (
                        "reference_id",
                        "ordered_at",
                        "status",
                        "channel",
                        "point_of_sale",
                        ("price", "currency_code"),
                        ("payment_type", "card_type"),
                        "extensions",
                    )
                },
            ),
            ("Contact and consumers", {"fields": ("contact_identity_key", "contact", "consumers")}),
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

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "contact_identity_key"]

    def search_q(self, term: str) -> Q:
        query = super().search_q(term) | Q(reference_id=term)
        keys = [term] + [f"{p}:{term}" for p in identity_provider_names()]
        return query | Q(contact_identity_key__in=keys)

    def save_through_service(self, request, form, formsets, change):
        def save_items():
            for formset in formsets:
                self.save_formset(request, form, formset, change=change)

        order_update(
            order=form.instance,
            fields=self.changed_fields(form, change),
            user=request.user,
            save_items=save_items,
        )
