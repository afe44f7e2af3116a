"""The guest review screens: list, masked form with identifiers, subscriptions and extensions
inline, actions and export.
"""

from collections.abc import Callable

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper
from django.utils.html import format_html

from records import masking
from records.admin.delivery import CdpOutcomeFilter
from records.admin.filters import (
    CountryFilter,
    ErrorCodeFilter,
    HasIdentifierFilter,
    ImportRunFilter,
    LockedFilter,
    PurgedFilter,
)
from records.admin.formfields import (
    LinesArrayField,
    PrettyJSONField,
    choices_with_current,
    pretty_json,
)
from records.admin.review import (
    PREFIX_MIN_LENGTH,
    SEARCH_MAX_IDS,
    StagedRecordAdmin,
    live_batch,
    masked_display,
)
from records.masking import can_view_pii, mask_value
from records.models import Extension, Guest, GuestMode, Identifier, Subscription
from records.rules import COUNTRY_CODES, GENDERS, LANGUAGE_CODES
from records.selectors import identity_provider_names
from records.services.review import GUEST_EDITABLE_FIELDS, guest_update


def guest_email_identity(obj, *, email: Callable[[str], str], key: Callable[[str], str]):
    """The email, and below it the identity key when it is not just that email (for most
    guests it is "email:<the email>", which would say the same thing twice)."""
    shown = email(obj.email) if obj.email else "-"
    identity = obj.identity_key or ""
    if not identity or identity.partition(":")[2] == obj.email:
        return shown
    return format_html("{}<br><small>{}</small>", shown, key(identity))


class GuestForm(forms.ModelForm):
    # Fields with a fixed list of valid values (records.rules holds the lists).
    CHOICE_FIELDS: dict[str, tuple[str, ...]] = {
        "gender": GENDERS,
        "country": tuple(sorted(COUNTRY_CODES)),
        "language": tuple(sorted(LANGUAGE_CODES)),
    }

    class Meta:
        model = Guest
        fields = sorted(GUEST_EDITABLE_FIELDS)
        field_classes = {"phone_numbers": LinesArrayField, "street": LinesArrayField}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, values in self.CHOICE_FIELDS.items():
            if name not in self.fields:
                continue
            field = self.fields[name]
            field.widget = forms.Select(
                choices=choices_with_current(values, getattr(self.instance, name, None))
            )


class ParentLockMixin:
    """Inline rows follow the guest: read-only whenever the guest's page is (in a live batch,
    or for a user who may not change guests or see their personal data)."""

    def _parent_frozen(self, request, obj) -> bool:
        if obj is None:
            return False
        parent = obj._meta
        return (
            live_batch(obj) is not None
            or obj.is_purged
            or not can_view_pii(request.user)
            or not request.user.has_perm(f"{parent.app_label}.change_{parent.model_name}")
        )

    def has_add_permission(self, request, obj=None):
        return not self._parent_frozen(request, obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return not self._parent_frozen(request, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not self._parent_frozen(request, obj) and super().has_delete_permission(request, obj)


class IdentifierInline(ParentLockMixin, admin.TabularInline):
    model = Identifier
    extra = 0
    fields = ("position", "provider", "identifier", "expiry_date")
    ordering = ("position",)

    masked_identifier = masked_display("identifier", "id")

    def get_fields(self, request, obj=None):
        if can_view_pii(request.user):
            return self.fields
        return ("position", "provider", "masked_identifier", "expiry_date")

    def get_readonly_fields(self, request, obj=None):
        if can_view_pii(request.user):
            return ()
        return ("position", "provider", "masked_identifier", "expiry_date")

    # Without view_pii nobody may add or change an identifier they cannot see.
    def has_add_permission(self, request, obj=None):
        return can_view_pii(request.user) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return can_view_pii(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return can_view_pii(request.user) and super().has_delete_permission(request, obj)


class SubscriptionInline(ParentLockMixin, admin.TabularInline):
    model = Subscription
    extra = 0
    fields = ("position", "name", "point_of_sale", "channel", "status", "effective_date")
    ordering = ("position",)
    # The admin's full-width text inputs put six columns past 1280 px; these fit.
    formfield_overrides = {models.CharField: {"widget": forms.TextInput(attrs={"size": 16})}}


class ExtensionForm(forms.ModelForm):
    class Meta:
        model = Extension
        fields = ("name", "key", "attributes")
        field_classes = {"attributes": PrettyJSONField}


class ExtensionInline(ParentLockMixin, admin.StackedInline):
    model = Extension
    form = ExtensionForm
    extra = 0
    fields = ("name", "key", "attributes")
    readonly_when_masked = ("name", "key", "attributes_display")
    # Inline instances are made per request (get_inline_instances), so this is per request.
    show_pii = False

    @admin.display(description="attributes")
    def attributes_display(self, obj):
        value = {"name": obj.name, "key": obj.key, **(obj.attributes or {})}
        if not self.show_pii:
            value = mask_value({"extensions": [value]}, "guest")["extensions"][0]
        value.pop("name", None)
        value.pop("key", None)
        return pretty_json(value)

    def get_formset(self, request, obj=None, **kwargs):
        self.show_pii = can_view_pii(request.user)
        return super().get_formset(request, obj, **kwargs)

    def _editable(self, request, obj) -> bool:
        return can_view_pii(request.user) and self.has_change_permission(request, obj)

    def get_fields(self, request, obj=None):
        return self.fields if self._editable(request, obj) else self.readonly_when_masked

    def get_readonly_fields(self, request, obj=None):
        return () if self._editable(request, obj) else self.readonly_when_masked

    # Without view_pii nobody may change attributes they cannot see.
    def has_add_permission(self, request, obj=None):
        return can_view_pii(request.user) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return can_view_pii(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return can_view_pii(request.user) and super().has_delete_permission(request, obj)


@admin.register(Guest)
class GuestAdmin(StagedRecordAdmin):
    schema = "guest"
    editable_fields = GUEST_EDITABLE_FIELDS
    # Child files (subscriptions, extensions) have their own admins in records.admin.imports.
    form = GuestForm
    inlines = (IdentifierInline, SubscriptionInline, ExtensionInline)
    # What a reviewer needs to decide, narrow enough for 1280 px beside the filters; the
    # identity key only where it says more than the email (guest_email_identity).
    list_display = (
        "id",
        "email_identity",
        "full_name",
        "country",
        "review_status",
        "mode_display",
        "error_count",
        "delivery_display",
        "import_run_display",
    )
    list_display_links = ("id",)
    list_filter = (
        "review_status",
        "mode",
        "delivery_status",
        CdpOutcomeFilter,
        ErrorCodeFilter,
        ImportRunFilter,
        CountryFilter,
        HasIdentifierFilter,
        LockedFilter,
        PurgedFilter,
    )
    search_help_text = (
        f"Starts with (at least {PREFIX_MIN_LENGTH} characters): email, identifier id, last name, "
        "or first and last name (“liam kel”). Exact: identity key (provider:id), ref, "
        "database id."
    )
    search_fields = ("identity_key",)  # shows the search box; matching is search_q's

    masked_identity_key = masked_display("identity_key", "identity key")
    masked_email = masked_display("email", "email")
    masked_first_name = masked_display("first_name", "first name")
    masked_last_name = masked_display("last_name", "last name")
    masked_date_of_birth = masked_display("date_of_birth", "date of birth")
    masked_phone_numbers = masked_display("phone_numbers", "phone numbers")
    masked_street = masked_display("street", "street")
    masked_city = masked_display("city", "city")
    masked_post_code = masked_display("post_code", "post code")
    masked_passport_number = masked_display("passport_number", "passport number")
    masked_passport_expiry = masked_display("passport_expiry", "passport expiry")

    @admin.display(description="mode")
    def mode_display(self, obj):
        # One word in the list (the column stays narrow); the page explains the mode.
        return "insert" if obj.mode == GuestMode.INSERT else "upsert"

    @admin.display(description="name")
    def full_name(self, obj):
        return " ".join(p for p in (obj.first_name, obj.last_name) if p) or "-"

    @admin.display(description="name")
    def masked_full_name(self, obj):
        return " ".join(masking.mask_text(p) for p in (obj.first_name, obj.last_name) if p) or "-"

    @admin.display(description="email / identity")
    def email_identity(self, obj):
        return guest_email_identity(obj, email=lambda v: v, key=lambda v: v)

    @admin.display(description="email / identity")
    def masked_email_identity(self, obj):
        return guest_email_identity(obj, email=masking.mask_email, key=masking.mask_identity_key)

    def get_list_display(self, request):
        names = super().get_list_display(request)
        if can_view_pii(request.user):
            return names
        masked = {"full_name": "masked_full_name", "email_identity": "masked_email_identity"}
        return tuple(masked.get(n, n) for n in names)

    def base_fieldsets(self, obj):
        return [
            (
                None,
                {
                    "fields": (
                        "ref",
                        "identity_key",
                        "mode",
                        "review_status",
                        "validation_errors_display",
                        "delivery_status",
                        "delivered_at",
                        "purged_display",
                        "locked_display",
                    )
                },
            ),
            # Near the top: what CDP was sent and said. The batches app fills it in via
            # register_delivery_history().
            ("Delivery history", {"fields": ("delivery_history",)}),
            (
                "Person",
                {
                    "fields": (
                        "email",
                        "title",
                        "first_name",
                        "last_name",
                        "gender",
                        "date_of_birth",
                        "nationality",
                        "language",
                        "guest_type",
                    )
                },
            ),
            (
                "Address and phone",
                {"fields": ("phone_numbers", "street", "city", "state", "post_code", "country")},
            ),
            ("Passport", {"fields": ("passport_number", "passport_expiry")}),
            ("Activity", {"fields": ("first_seen", "last_seen")}),
            (
                "CDP value",
                {
                    "fields": ("cdp_value_display", "value_hash", "delivered_hash"),
                    # Long JSON: open on demand, below what a reviewer reads first.
                    "classes": ("collapse",),
                },
            ),
            (
                "Source",
                {"fields": ("import_run_display", "source_row", "created_at", "updated_at")},
            ),
        ]

    def get_readonly_fields(self, request, obj=None):
        # A guest's mode is the steward's choice (insert or upsert), not a lifecycle field.
        return [n for n in super().get_readonly_fields(request, obj) if n != "mode"]

    def search_q(self, term: str) -> Q:
        query = super().search_q(term)
        providers = identity_provider_names()
        keys = [term] + [f"{provider}:{term}" for provider in providers]
        query |= Q(identity_key__in=keys)
        # Shorter prefixes would match a large part of a big table: exact matches only.
        prefix = len(term) >= PREFIX_MIN_LENGTH
        # Identifiers (the identity key's and lower-priority ones): resolved first through the
        # (provider, identifier) index, so the OR below stays a bitmap of index scans.
        identifiers = Identifier.objects.filter(provider__in=providers)
        if prefix:
            identifiers = identifiers.filter(identifier__startswith=term)
        else:
            identifiers = identifiers.filter(identifier=term)
        guest_ids = list(identifiers.values_list("guest_id", flat=True)[:SEARCH_MAX_IDS])
        if guest_ids:
            query |= Q(pk__in=guest_ids)
        # Emails are stored normalised to lower case by the rules.
        if prefix:
            query |= Q(email__startswith=term.lower())
        elif "@" in term:
            query |= Q(email=term.lower())
        if prefix:
            # Names as given (no case normalisation): matched upper-cased, through the
            # guest_last_name_prefix index; "first last" narrows by last name first.
            upper = term.upper()
            query |= Q(last_name_upper__startswith=upper)
            first, _, last = upper.partition(" ")
            if last.strip():
                query |= Q(first_name_upper__startswith=first) & Q(
                    last_name_upper__startswith=last.strip()
                )
        return query

    def get_search_results(self, request, queryset, search_term):
        if search_term.strip():
            # The search_q lookups on names compare upper-cased (the index's expression).
            queryset = queryset.alias(
                last_name_upper=Upper("last_name"), first_name_upper=Upper("first_name")
            )
        return super().get_search_results(request, queryset, search_term)

    def save_through_service(self, request, form, formsets, change):
        def save_children():
            for formset in formsets:
                self.save_formset(request, form, formset, change=change)

        guest_update(
            guest=form.instance,
            fields=self.changed_fields(form, change),
            user=request.user,
            save_children=save_children,
        )
