"""Review screens for guests and tracking events: masked lists, filters, actions, safe edits.

Personal data is shown only to users with `records.view_pii` (records.masking decides); everyone
else gets masked columns and read-only masked fields, and search still matches for them. Change
lists stay fast at millions of rows: no full COUNT(*) per page (CappedCountPaginator), joins
via list_select_related, index-backed ordering and filters. Every write goes through
records.services.review, one service call per action.
"""

import contextlib
import json
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.postgres.forms import SimpleArrayField
from django.core.cache import cache
from django.db import connection, models
from django.db.models import Q
from django.db.models.functions import Upper
from django.http import FileResponse, HttpResponseRedirect, StreamingHttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from cdpstage.admin import paginator as counting
from cdpstage.admin.paginator import CappedCountPaginator
from cdpstage.errors import ApplicationError
from records import masking
from records.exporting import csv_chunks, export_header, export_lines, write_xlsx
from records.masking import PERSONAL_FIELD_NAMES, can_view_pii, mask_value
from records.models import (
    DeliveryStatus,
    Extension,
    Guest,
    GuestMode,
    Identifier,
    ReviewStatus,
    Subscription,
    TrackingEvent,
)
from records.rules import COUNTRY_CODES, GENDERS, LANGUAGE_CODES, problem_label
from records.selectors import (
    guest_countries,
    guests_with_identity,
    identity_provider_names,
    import_runs_for_schema,
    in_live_batch,
    live_batch_of,
    with_live_batch,
)
from records.services.review import (
    GUEST_EDITABLE_FIELDS,
    TRACKING_EDITABLE_FIELDS,
    guest_update,
    records_delete,
    records_hold,
    records_mark_new,
    records_mark_ready,
    tracking_event_update,
)

# ---------------------------------------------------------------------------------------------
# Delivery history hook: the batches app (which may import records, never the reverse)
# registers a renderer per model; the guest and tracking pages show its HTML in their
# "Delivery history" section.

DeliveryHistoryRenderer = Callable[[Any], str]
_delivery_history_renderers: dict[type, DeliveryHistoryRenderer] = {}


def register_delivery_history(model: type, renderer: DeliveryHistoryRenderer) -> None:
    """Show `renderer(record)` (safe HTML, no personal data) as the record's delivery history."""
    _delivery_history_renderers[model] = renderer


def render_delivery_history(record: Any) -> str:
    renderer = _delivery_history_renderers.get(type(record))
    if renderer is None or record.pk is None:
        return "No deliveries yet."
    return renderer(record)


# ---------------------------------------------------------------------------------------------
# CDP outcome hook: what CDP last answered about a record lives in the batches app, which
# registers how to read it (a filter by kind of answer, and the answer per listed record).


@dataclass(frozen=True)
class CdpOutcomes:
    """How the record lists read CDP's answers (supplied by batches.admin)."""

    # (key, title) of each kind of answer CDP gives for a rejected record.
    groups: Callable[[], list[tuple[str, str]]]
    # The refs of the records whose rejection is of this kind (a subquery).
    refs_in_group: Callable[[str], Any]
    # An expression: CDP's latest rejection of the record at OuterRef("ref"), or NULL.
    latest_rejection: Callable[[], Any]


_cdp_outcomes: list[CdpOutcomes] = []


def register_cdp_outcomes(outcomes: CdpOutcomes) -> None:
    """Give the record lists their CDP-outcome filter and the answer in the delivery column."""
    _cdp_outcomes[:] = [outcomes]


class CdpOutcomeFilter(admin.SimpleListFilter):
    """Records CDP rejected, by what its answer means (batches.cdpcodes' groups)."""

    title = "CDP rejected it for"
    parameter_name = "cdp_rejected"

    def lookups(self, request, model_admin):
        return _cdp_outcomes[0].groups() if _cdp_outcomes else []

    def queryset(self, request, queryset):
        if self.value() and _cdp_outcomes:
            refs = _cdp_outcomes[0].refs_in_group(self.value())
            return queryset.filter(delivery_status=DeliveryStatus.REJECTED, ref__in=refs)
        return queryset


# Search: terms at least this long match by prefix (email, identifier id, name); shorter ones
# exactly. At most SEARCH_MAX_IDS guests are found through their identifiers.
PREFIX_MIN_LENGTH = 3
SEARCH_MAX_IDS = 1000

# The change form's "Save and mark ready" button (templates/admin/records/submit_line.html).
SAVE_AND_MARK_READY = "_save_mark_ready"

# Rows read from the database at a time by an export (two passes; memory holds one chunk).
EXPORT_CHUNK_ROWS = 2_000

# ---------------------------------------------------------------------------------------------
# Filters.


# The distinct codes cost one pass over the invalid rows (measured 280-370 ms with 20,000
# invalid among 1M guests), so they are computed at most once per process every few minutes.
ERROR_CODES_CACHE_SECONDS = 300


def _error_codes(model: type) -> list[str]:
    # Only invalid records carry problems, so the review_status index narrows the scan.
    key = f"records-review-error-codes-{model._meta.model_name}"
    codes = cache.get(key)
    if codes is None:
        table = model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT DISTINCT e->>'code' FROM {table}, "  # noqa: S608 - model table name
                "jsonb_array_elements(validation_errors) AS e "
                "WHERE review_status = %s ORDER BY 1",
                [ReviewStatus.INVALID],
            )
            codes = [row[0] for row in cursor.fetchall() if row[0]]
        cache.set(key, codes, ERROR_CODES_CACHE_SECONDS)
    return codes


class ErrorCodeFilter(admin.SimpleListFilter):
    """Records with a validation problem of this code (GIN index on validation_errors)."""

    title = "error code"
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        codes = _error_codes(model_admin.model)
        if self.value() and self.value() not in codes:
            codes = [*codes, self.value()]
        return [(code, problem_label(code)) for code in codes]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(validation_errors__contains=[{"code": self.value()}])
        return queryset


class ImportRunFilter(admin.SimpleListFilter):
    """Records staged (or last updated) by one import run; lists the latest runs."""

    title = "import run"
    parameter_name = "import_run"
    schema = "guest"

    def lookups(self, request, model_admin):
        runs = list(import_runs_for_schema(schema=self.schema))
        choices = [(str(run.pk), f"#{run.pk} {run.original_name}") for run in runs]
        if self.value() and self.value() not in {value for value, _ in choices}:
            choices.append((self.value(), f"#{self.value()}"))
        return choices

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(import_run_id=int(value))
        return queryset


class TrackingImportRunFilter(ImportRunFilter):
    schema = "tracking"


class CountryFilter(admin.SimpleListFilter):
    """Guests of one country; the choices come from a loose index scan, not SELECT DISTINCT."""

    title = "country"
    parameter_name = "country"

    def lookups(self, request, model_admin):
        return [(code, code) for code in guest_countries()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(country=self.value())
        return queryset


class YesNoFilter(admin.SimpleListFilter):
    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in {"yes", "no"}:
            return self.apply(queryset, present=self.value() == "yes")
        return queryset

    def apply(self, queryset, *, present: bool):
        raise NotImplementedError


class HasIdentifierFilter(YesNoFilter):
    """Guests with an identifier of a configured provider (an identity key), or without."""

    title = "has identifier"
    parameter_name = "has_identifier"

    def apply(self, queryset, *, present: bool):
        return guests_with_identity(queryset, present=present)


class LockedFilter(YesNoFilter):
    title = "in a live batch"
    parameter_name = "locked"

    def apply(self, queryset, *, present: bool):
        return in_live_batch(queryset, present=present)


def live_batch(obj) -> int | None:
    """The live batch holding a record: the admin's queryset annotates it (with_live_batch);
    an object loaded otherwise is looked up once."""
    if not hasattr(obj, "live_batch"):
        obj.live_batch = live_batch_of(model=type(obj), record_id=obj.pk) if obj.pk else None
    return obj.live_batch


class PurgedFilter(YesNoFilter):
    title = "personal data purged"
    parameter_name = "purged"

    def apply(self, queryset, *, present: bool):
        return queryset.filter(purged_at__isnull=not present)


# ---------------------------------------------------------------------------------------------
# Form fields that read and write the way people type.


class LinesArrayField(SimpleArrayField):
    """A list of texts edited one per line (street lines may contain commas)."""

    widget = forms.Textarea(attrs={"rows": 3})

    def __init__(self, base_field, **kwargs):
        kwargs.pop("delimiter", None)
        super().__init__(base_field, delimiter="\n", **kwargs)

    def to_python(self, value):
        if isinstance(value, str):
            value = "\n".join(line.strip() for line in value.splitlines() if line.strip())
        return super().to_python(value)


class PrettyJSONField(forms.JSONField):
    """JSON shown indented, so attributes and objects are readable and editable."""

    widget = forms.Textarea(attrs={"rows": 6, "cols": 60, "style": "font-family: monospace"})

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def _pretty_json(value: Any) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, ensure_ascii=False, indent=2))


# ---------------------------------------------------------------------------------------------
# Masked displays.


def _list_mask(mask: Callable[[object], str]) -> Callable[[object], str]:
    return lambda items: ", ".join(mask(item) for item in items or [])


MASKERS: dict[str, Callable[[object], str]] = {
    "email": masking.mask_email,
    "identity_key": masking.mask_identity_key,
    "guest_identity_key": masking.mask_identity_key,
    "date_of_birth": masking.mask_date,
    "passport_expiry": masking.mask_date,
    "phone_numbers": _list_mask(masking.mask_phone),
    "street": _list_mask(masking.mask_text),
    "identifier": lambda value: masking.mask_identifier({"id": value})["id"],
    "identifiers": lambda items: json.dumps(
        [masking.mask_identifier(item) for item in items or [] if isinstance(item, dict)]
    ),
    "feedback": lambda value: json.dumps(mask_value(value or {}, "tracking")),
}


def masked_display(field_name: str, label: str):
    """An admin display method showing a personal field masked (for users without view_pii)."""
    mask = MASKERS.get(field_name, masking.mask_text)

    @admin.display(description=label)
    def display(self, obj):
        return mask(getattr(obj, field_name)) or "-"

    display.__name__ = f"masked_{field_name}"
    return display


def _masked_name(field_name: str) -> str:
    return f"masked_{field_name}"


# ---------------------------------------------------------------------------------------------
# Shared behaviour of the two review admins.


class ImportFileLink:
    """An "Import a file" button on a list, leading to the one import path (an import run,
    with the mapping step for files of another layout) with this list's schema chosen."""

    change_list_template = "admin/records/change_list_import_link.html"
    schema = "guest"

    def changelist_view(self, request, extra_context=None):
        import_url = None
        if request.user.has_perm("records.add_importrun"):
            import_url = f"{reverse('admin:records_importrun_add')}?schema={self.schema}"
        extra_context = {**(extra_context or {}), "import_url": import_url}
        return super().changelist_view(request, extra_context)


class StagedRecordAdmin(ImportFileLink, admin.ModelAdmin):
    """What the guest and tracking-event admins share: counting, actions, saving, deleting."""

    editable_fields: frozenset[str] = frozenset()
    lifecycle_fields = (
        "ref",
        "mode",
        "review_status",
        "validation_errors_display",
        "delivery_status",
        "delivered_hash",
        "value_hash",
        "delivered_at",
        "purged_display",
        "locked_display",
        "import_run_display",
        "source_row",
        "created_at",
        "updated_at",
        "cdp_value_display",
        "delivery_history",
    )
    actions = ("mark_ready", "hold", "mark_new", "export_csv", "export_xlsx")
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    list_select_related = ("import_run",)
    ordering = ("-id",)
    # Only indexed columns: sorting 1M rows by anything else is a full sort on every page.
    sortable_by = ("id", "review_status", "delivery_status")

    # ---- permissions and visibility -------------------------------------------------------

    def personal_fields(self) -> frozenset[str]:
        return PERSONAL_FIELD_NAMES[self.schema]

    def get_queryset(self, request):
        # The live batch of each row shown: one probe of the membership index per row; and
        # CDP's latest rejection, likewise a subquery evaluated for the listed page only.
        queryset = with_live_batch(super().get_queryset(request))
        if _cdp_outcomes:
            queryset = queryset.annotate(cdp_rejection=_cdp_outcomes[0].latest_rejection())
        return queryset

    def has_change_permission(self, request, obj=None):
        # A record in a live batch is frozen: its page becomes read-only (with a banner). A
        # purged one has nothing left to edit (its value is what CDP holds).
        if obj is not None and (live_batch(obj) is not None or obj.is_purged):
            return False
        # A record's page is read-only for whoever cannot see all of it: editing half a record
        # (the non-personal fields around masked ones) is not a review. The list's actions
        # (obj is None) stay, so such a reviewer still marks records ready or holds them.
        if obj is not None and not can_view_pii(request.user):
            return False
        return super().has_change_permission(request, obj)

    def has_review_permission(self, request) -> bool:
        """Mark ready, hold, back to new: the Reviewer's `review_<model>` permission."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.review_{opts.model_name}")

    def render_change_form(self, request, context, *args, **kwargs):
        context["can_review"] = self.has_review_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and (
            live_batch(obj) is not None
            or obj.delivery_status == DeliveryStatus.DELIVERED
            or obj.delivered_hash
        ):
            return False
        return super().has_delete_permission(request, obj)

    def _visible(self, request, names):
        """Field names with personal ones swapped for their masked display, without view_pii."""
        if can_view_pii(request.user):
            return tuple(names)
        personal = self.personal_fields()
        return tuple(_masked_name(n) if n in personal else n for n in names)

    def get_fieldsets(self, request, obj=None):
        return [
            (title, {**options, "fields": self._visible(request, options["fields"])})
            for title, options in self.base_fieldsets(obj)
        ]

    def base_fieldsets(self, obj):
        raise NotImplementedError

    def get_readonly_fields(self, request, obj=None):
        readonly = list(self.lifecycle_fields)
        readonly += [n for n in ("guest_identity_key", "identity_key") if hasattr(self.model, n)]
        if not can_view_pii(request.user):
            readonly += [_masked_name(n) for n in self.personal_fields()]
        return readonly

    def get_list_display(self, request):
        return self._visible(request, self.list_display)

    # ---- displays -------------------------------------------------------------------------

    @admin.display(description="errors")
    def error_count(self, obj):
        return len(obj.validation_errors or []) or ""

    @admin.display(description="validation errors")
    def validation_errors_display(self, obj):
        errors = obj.validation_errors or []
        if not errors:
            return "None"
        # Flush left with the other values (a bare <ul> in a read-only row is indented far
        # right by the admin's form styles).
        return format_html(
            '<ul class="validation-errors" style="margin:0;padding:0;list-style:none">{}</ul>',
            format_html_join(
                "",
                "<li><strong>{}</strong>: {}</li>",
                ((e.get("field", ""), e.get("message", "")) for e in errors if isinstance(e, dict)),
            ),
        )

    @admin.display(description="import run")
    def import_run_display(self, obj):
        if obj.import_run_id is None:
            return "-"
        try:
            url = reverse("admin:records_importrun_change", args=[obj.import_run_id])
        except NoReverseMatch:
            return f"#{obj.import_run_id}"
        return format_html('<a href="{}">#{}</a>', url, obj.import_run_id)

    @admin.display(description="delivery / CDP outcome", ordering="delivery_status")
    def delivery_display(self, obj):
        """The delivery status, with the live batch holding the record (one column, not two)
        and, for a rejected record, what CDP answered."""
        status = obj.get_delivery_status_display()
        if live_batch(obj) is not None:
            return f"{status} ({obj.live_batch})"
        answer = getattr(obj, "cdp_rejection", None)
        if obj.delivery_status == DeliveryStatus.REJECTED and answer:
            return format_html("{}<br><small>{}</small>", status, answer)
        return status

    @admin.display(description="personal data")
    def purged_display(self, obj):
        if obj.purged_at is None:
            return "Kept"
        return (
            f"Purged on {obj.purged_at:%Y-%m-%d} under the retention policy (ref, hashes and "
            "delivery history kept)"
        )

    @admin.display(description="live batch")
    def locked_display(self, obj):
        if live_batch(obj) is None:
            return "-"
        return f"Batch {obj.live_batch}"

    @admin.display(description="CDP value (what the batch file will contain)")
    def cdp_value_display(self, obj):
        # Display methods get no request; get_object marks the instance with what to show.
        if obj.purged_at is not None:
            return "Purged under the retention policy."
        if not obj.cdp_value:
            return "Not computed yet."
        value = json.loads(obj.cdp_value)
        if not getattr(obj, "_show_pii", False):
            value = mask_value(value, self.schema)
        return _pretty_json(value)

    @admin.display(description="delivery history")
    def delivery_history(self, obj):
        return render_delivery_history(obj)

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # Read by cdp_value_display and inlines, which only receive the object.
            obj._show_pii = can_view_pii(request.user)
        return obj

    # ---- actions: one service call each ---------------------------------------------------

    def _review(self, request, service, queryset):
        noun = str(self.model._meta.verbose_name_plural)
        # At most the change list's exact-count limit (status updates ran 7,000-12,000 rows/s
        # at 1M guests here, so bigger selections would outlast a request): beyond it the list
        # says "about N" and so does the refusal.
        limit = counting.EXACT_COUNT_LIMIT
        if queryset.order_by().values("pk")[: limit + 1].count() > limit:
            self.message_user(
                request,
                f"This selection holds more than {limit:,} {noun}; changing "
                "them in one page request would time out. Narrow the filters, or mark them "
                f"ready from the command line: manage.py records_mark_ready --schema "
                f"{self.schema} (--all-valid | --import-run ID) --user NAME.",
                messages.ERROR,
            )
            return
        try:
            result = service(model=self.model, queryset=queryset, user=request.user)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        level = messages.SUCCESS if result.skipped == 0 else messages.WARNING
        message = result.message(singular=str(self.model._meta.verbose_name), plural=noun)
        self.message_user(request, message, level)

    @admin.action(description="Mark ready", permissions=["review"])
    def mark_ready(self, request, queryset):
        self._review(request, records_mark_ready, queryset)

    @admin.action(description="Hold", permissions=["review"])
    def hold(self, request, queryset):
        self._review(request, records_hold, queryset)

    @admin.action(description="Back to new", permissions=["review"])
    def mark_new(self, request, queryset):
        self._review(request, records_mark_new, queryset)

    # ---- export: the layout the import reads back ------------------------------------------

    def has_export_permission(self, request) -> bool:
        # An export holds the records' personal data unmasked.
        return can_view_pii(request.user)

    def _export_rows(self, queryset):
        ordered = queryset.order_by("id").values_list("ref", "cdp_value")
        return lambda: ordered.iterator(chunk_size=EXPORT_CHUNK_ROWS)

    def _export_name(self, extension: str) -> str:
        return f"{self.opts.model_name}-export-{timezone.now():%Y%m%d-%H%M%S}.{extension}"

    @admin.action(description="Export as CSV (re-importable)", permissions=["export"])
    def export_csv(self, request, queryset):
        rows = self._export_rows(queryset)
        header = export_header(self.schema, rows)
        response = StreamingHttpResponse(
            csv_chunks(export_lines(self.schema, header, rows)), content_type="text/csv"
        )
        response["Content-Disposition"] = f'attachment; filename="{self._export_name("csv")}"'
        return response

    @admin.action(description="Export as XLSX (re-importable)", permissions=["export"])
    def export_xlsx(self, request, queryset):
        rows = self._export_rows(queryset)
        header = export_header(self.schema, rows)
        # Write-only workbooks are written to a file; FileResponse closes (and so deletes) it.
        target = tempfile.TemporaryFile()  # noqa: SIM115
        write_xlsx(export_lines(self.schema, header, rows), target)
        target.seek(0)
        return FileResponse(target, as_attachment=True, filename=self._export_name("xlsx"))

    # ---- saving: through the review services ----------------------------------------------

    def save_model(self, request, obj, form, change):
        # Deliberately empty: save_related saves the record, its children and re-validates in
        # one service call, so a refused edit leaves nothing half-saved.
        pass

    def changed_fields(self, form, change) -> dict[str, Any]:
        names = form.changed_data if change else list(form.cleaned_data)
        return {n: getattr(form.instance, n) for n in names if n in self.editable_fields}

    def save_related(self, request, form, formsets, change):
        try:
            self.save_through_service(request, form, formsets, change)
        except ApplicationError as exc:
            request._review_save_error = exc.message
            self.message_user(request, exc.message, messages.ERROR)

    def save_through_service(self, request, form, formsets, change):
        raise NotImplementedError

    def log_change(self, request, obj, message):
        if getattr(request, "_review_save_error", None) is None:
            return super().log_change(request, obj, message)
        return None

    def log_addition(self, request, obj, message):
        if getattr(request, "_review_save_error", None) is None:
            return super().log_addition(request, obj, message)
        return None

    def response_change(self, request, obj):
        if getattr(request, "_review_save_error", None) is not None:
            return HttpResponseRedirect(request.path)
        if SAVE_AND_MARK_READY in request.POST:
            try:
                result = records_mark_ready(
                    model=self.model,
                    queryset=self.model.objects.filter(pk=obj.pk),
                    user=request.user,
                )
            except ApplicationError as exc:  # saved, but marking ready is the Reviewer's
                self.message_user(request, exc.message, messages.ERROR)
                return HttpResponseRedirect(request.path)
            singular = str(self.model._meta.verbose_name)
            noun = str(self.model._meta.verbose_name_plural)
            level = messages.SUCCESS if result.changed else messages.WARNING
            self.message_user(request, result.message(singular=singular, plural=noun), level)
            if not result.changed:
                return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    def response_add(self, request, obj, post_url_continue=None):
        if getattr(request, "_review_save_error", None) is not None:
            return HttpResponseRedirect(request.path)
        return super().response_add(request, obj, post_url_continue)

    # ---- deleting: never locked or delivered records --------------------------------------

    def delete_model(self, request, obj):
        self.delete_queryset(request, self.model.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        try:
            result = records_delete(model=self.model, queryset=queryset, user=request.user)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        if result.skipped:
            self.message_user(
                request,
                f"{result.skipped} records were not deleted: they are in a live batch or "
                "were delivered to CDP.",
                messages.WARNING,
            )

    # ---- search: exact, index-backed; matches for masked users too ------------------------

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(self.search_q(term)), False

    def search_q(self, term: str) -> Q:
        query = Q(pk__in=[])
        with contextlib.suppress(ValueError):
            query |= Q(ref=uuid.UUID(term))
        if term.isdigit() and len(term) < 18:
            query |= Q(pk=int(term))
        return query


# ---------------------------------------------------------------------------------------------
# Guests.


def guest_email_identity(obj, *, email: Callable[[str], str], key: Callable[[str], str]):
    """The email, and below it the identity key when it is not just that email (for most
    guests it is "email:<the email>", which would say the same thing twice)."""
    shown = email(obj.email) if obj.email else "-"
    identity = obj.identity_key or ""
    if not identity or identity.partition(":")[2] == obj.email:
        return shown
    return format_html("{}<br><small>{}</small>", shown, key(identity))


def _choices_with_current(values, current: str | None) -> list[tuple[str, str]]:
    """The valid values as select options, plus the record's current value if it is not one
    of them (an imported invalid value stays visible until the reviewer picks a valid one)."""
    choices = [("", "---------")] + [(v, v) for v in values]
    if current and current not in values:
        choices.insert(1, (current, f"{current} (not valid)"))
    return choices


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
                choices=_choices_with_current(values, getattr(self.instance, name, None))
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
        return _pretty_json(value)

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


# ---------------------------------------------------------------------------------------------
# Tracking events.


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
