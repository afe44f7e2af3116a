"""What every review screen shares (StagedRecordAdmin): masked lists, search, actions, safe
edits, export. The guest and tracking screens (guests.py, tracking.py) build on it.

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
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q
from django.http import FileResponse, HttpResponseRedirect, StreamingHttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from cdpstage.admin import paginator as counting
from cdpstage.admin.paginator import CappedCountPaginator
from cdpstage.errors import ApplicationError
from records import masking
from records.admin.delivery import registered_cdp_outcomes, render_delivery_history
from records.admin.formfields import pretty_json
from records.exporting import csv_chunks, export_header, export_lines, write_xlsx
from records.masking import PERSONAL_FIELD_NAMES, can_view_pii, mask_value
from records.models import (
    DeliveryStatus,
)
from records.selectors import (
    live_batch_of,
    with_live_batch,
)
from records.services.review import (
    records_delete,
    records_hold,
    records_mark_new,
    records_mark_ready,
)

# Search: terms at least this long match by prefix (email, identifier id, name); shorter ones
# exactly. At most SEARCH_MAX_IDS guests are found through their identifiers.
PREFIX_MIN_LENGTH = 3


SEARCH_MAX_IDS = 1000


# The change form's "Save and mark ready" button (templates/admin/records/submit_line.html).
SAVE_AND_MARK_READY = "_save_mark_ready"


# Rows read from the database at a time by an export (two passes; memory holds one chunk).
EXPORT_CHUNK_ROWS = 2_000


def live_batch(obj) -> int | None:
    """The live batch holding a record: the admin's queryset annotates it (with_live_batch);
    an object loaded otherwise is looked up once."""
    if not hasattr(obj, "live_batch"):
        obj.live_batch = live_batch_of(model=type(obj), record_id=obj.pk) if obj.pk else None
    return obj.live_batch


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
        cdp_outcomes = registered_cdp_outcomes()
        if cdp_outcomes:
            queryset = queryset.annotate(cdp_rejection=cdp_outcomes.latest_rejection())
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
        return pretty_json(value)

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
