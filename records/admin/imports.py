"""Import screens: background import runs ("Import a file", the mapping step, progress, the
error report), and the lists of guests' children.

Every file comes in the one way: "Import a file" (the lists link to it with their schema
chosen); every write goes through records.services.imports.
"""

import codecs

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import content_disposition_header

from cdpstage.admin.paginator import CappedCountPaginator
from cdpstage.admin.readonly import ReadOnlyAdmin
from cdpstage.errors import ApplicationError
from cdpstage.templatetags.humanize_units import duration_text, size_text
from records import masking
from records.admin.mapping import MappingStep
from records.admin.review import ImportFileLink
from records.importing import DELIMITER_BY_NAME, DELIMITERS, ENCODINGS, FileProblem
from records.importing.preview import source_preview
from records.importing.report import report_for_viewer
from records.mapping import MappingError, compile_header
from records.models import GUEST_MODE_HELP, Extension, GuestMode, ImportRun, Schema, Subscription
from records.selectors import import_run_events, mapping_for_header
from records.services.imports import CANCELLABLE, import_run_cancel, import_run_create

# The form posts a delimiter by name; "" is "detect".
DELIMITER_VALUES = {"": "", **DELIMITER_BY_NAME}
DELIMITER_CHOICES = tuple(
    (name, f"{DELIMITERS[char]} ({char})" if char not in ("", "\t") else DELIMITERS[char])
    for name, char in DELIMITER_VALUES.items()
)


def _codec(name: str) -> str:
    """An encoding's canonical codec name ("latin-1" and "iso8859-1" are one), UTF-8 with or
    without a byte-order mark as one."""
    try:
        name = codecs.lookup(name).name if name else ""
    except LookupError:
        return name
    return "utf-8" if name == "utf-8-sig" else name


ENCODING_LABELS = {_codec(name): label for name, label in ENCODINGS.items() if name}


def _chosen_and_detected(labels: dict[str, str], chosen: str, detected: str) -> str:
    """ "Detect: found Semicolon" or "Semicolon (chosen)": what the user asked for and what the
    reader used, so a detection that went wrong shows."""
    found = labels.get(detected, detected) if detected else ""
    if not chosen:
        return f"Detect: found {found}" if found else "Detect (the file has not been opened yet)"
    label = labels.get(chosen, chosen)
    if found and detected != chosen:
        return f"{label} (chosen; the reader used {found})"
    return f"{label} (chosen)"


class ImportFileForm(forms.Form):
    """The "Import a file" form: the file and how to read it."""

    file = forms.FileField(help_text="CSV, XLSX, JSON or NDJSON, of any size.")
    schema = forms.ChoiceField(label="The file holds", choices=Schema.choices)
    format = forms.ChoiceField(
        choices=(("", "Detect from the name and content"), *ImportRun.Format.choices),
        required=False,
    )
    encoding = forms.ChoiceField(
        choices=list(ENCODINGS.items()),
        required=False,
        help_text="Text files only. A byte-order mark (BOM) is always honoured.",
    )
    delimiter = forms.ChoiceField(choices=DELIMITER_CHOICES, required=False)
    sheet = forms.CharField(
        required=False,
        max_length=100,
        help_text="XLSX with several sheets: the name of the one to import.",
    )
    header_row = forms.IntegerField(
        required=False,
        min_value=1,
        label="Header row",
        help_text="XLSX: the row holding the column names (empty: found after any notes rows).",
    )
    on_error = forms.ChoiceField(
        label="If some rows are refused",
        help_text="Refused: rows that cannot be staged at all (e.g. a cell too many). Rows that "
        "break a CDP rule are always staged, as invalid, for a steward to fix.",
        choices=ImportRun.OnError.choices,
        initial=ImportRun.OnError.ABORT,
        widget=forms.RadioSelect,
    )
    ignore_unknown_columns = forms.BooleanField(
        required=False,
        help_text="Drop columns (or JSON fields) CDP Stage does not know instead of refusing "
        "the file.",
    )
    guest_mode = forms.ChoiceField(
        label="Guests are sent as",
        required=False,  # not given: upsert, the default
        choices=GuestMode.choices,
        initial=GuestMode.UPSERT,
        widget=forms.RadioSelect,
        help_text=f"Guest files only; a row's own mode column wins. {GUEST_MODE_HELP}",
    )


def _needs_mapping(data: dict) -> bool:
    """Whether an upload goes through the mapping step: a CSV or XLSX file whose layout has a
    saved mapping, or whose header is not CDP's own column names (a CDP-shaped file, or a
    file that is not flat, is imported at once as before)."""
    upload = data["file"]
    try:
        preview = source_preview(
            upload,
            name=upload.name,
            format=data["format"] or None,
            encoding=data["encoding"],
            delimiter=DELIMITER_VALUES[data["delimiter"]],
            sheet=data["sheet"],
            header_row=data["header_row"],
        )
    except FileProblem:
        return False  # not flat, or unreadable: the run says why, as for any file
    finally:
        upload.seek(0)
    if mapping_for_header(schema=data["schema"], header=preview.header) is not None:
        return True
    try:
        compile_header(
            data["schema"], preview.header, ignore_unknown=data["ignore_unknown_columns"]
        )
    except MappingError:
        return True
    return False


def _clock(moment) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}" if moment else ""


def _times_text(run: ImportRun, now) -> str:
    """When the run started and finished, and how long it took (or has taken so far)."""
    if not run.started_at:
        return f"Created {_clock(run.created_at)}; not started yet."
    text = f"Started {_clock(run.started_at)}"
    if run.finished_at:
        took = duration_text(run.finished_at - run.started_at)
        return f"{text}, finished {_clock(run.finished_at)}: took {took}."
    return f"{text}; running for {duration_text(now - run.started_at)}."


def _counts_text(run: ImportRun) -> str:
    """What the finished run did with its rows; "" while running (the counts are written when
    the run ends, in the same transaction as its rows)."""
    if not run.is_finished or not run.started_at:
        return ""
    if run.status == ImportRun.Status.FAILED:
        bad = f"; {run.rows_bad:,} refused" if run.rows_bad else ""
        return f"Nothing imported ({run.rows_read:,} rows read{bad})."
    parts = [
        f"{run.rows_created:,} created",
        f"{run.rows_updated:,} updated",
        f"{run.rows_unchanged:,} unchanged",
        f"{run.rows_invalid:,} staged as invalid",
    ]
    if run.rows_bad:
        parts.append(f"{run.rows_bad:,} refused and skipped")
    return ", ".join(parts) + "."


def import_run_progress(run: ImportRun, *, can_cancel: bool = False) -> dict:
    """Everything the run page's progress box shows, as texts and numbers: the page renders it
    and its script polls it, so the two never disagree. No personal data."""
    now = timezone.now()
    elapsed = ((run.finished_at or now) - run.started_at).total_seconds() if run.started_at else 0.0
    rate = run.rows_read / elapsed if elapsed > 0 else 0.0
    failed = run.status == ImportRun.Status.FAILED
    if run.is_finished and not failed:
        percent = 100.0
    elif run.rows_total:
        percent = min(99.0, 100.0 * run.rows_read / run.rows_total)
    elif run.bytes_total:
        percent = min(99.0, 100.0 * run.bytes_read / run.bytes_total)
    else:
        percent = 0.0
    eta = None
    if not run.is_finished and rate > 0 and run.rows_total > run.rows_read:
        eta = round((run.rows_total - run.rows_read) / rate)
    rows = f"{run.rows_read:,}" + (f" of about {run.rows_total:,}" if run.rows_total else "")
    detail = [f"{rows} rows read ({percent:.0f} %)"]
    if run.bytes_total and not run.is_finished:
        detail.append(f"{size_text(run.bytes_read)} of {size_text(run.bytes_total)}")
    if rate and run.status == ImportRun.Status.RUNNING:
        detail.append(f"{rate:,.0f} rows/s")
    if eta is not None:
        detail.append(f"about {duration_text(eta)} left")
    return {
        "status": run.status,
        "status_display": run.get_status_display(),
        "finished": run.is_finished,
        "failed": failed,
        "can_cancel": can_cancel and run.status in CANCELLABLE,
        "rows_read": run.rows_read,
        "rows_total": run.rows_total,
        "bytes_read": run.bytes_read,
        "bytes_total": run.bytes_total,
        "rows_created": run.rows_created,
        "rows_updated": run.rows_updated,
        "rows_unchanged": run.rows_unchanged,
        "rows_invalid": run.rows_invalid,
        "rows_bad": run.rows_bad,
        "percent": round(percent, 1),
        "rows_per_second": round(rate),
        "eta_seconds": eta,
        "detail_text": " · ".join(detail),
        "counts_text": _counts_text(run),
        "times_text": _times_text(run, now),
        "message": run.message,
    }


@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
    """Import runs: start one with "Import a file", watch its progress, get its error report."""

    list_display = (
        "id",
        "original_name",
        "schema",
        "format",
        "status",
        "progress_display",
        "rows_created",
        "rows_updated",
        "rows_unchanged",
        "rows_invalid",
        "rows_bad",
        "created_by",
        "created_at",
    )
    list_display_links = ("id", "original_name")
    list_filter = ("status", "schema", "format", "on_error")
    search_fields = ("original_name",)
    list_select_related = ("created_by",)
    ordering = ("-id",)
    date_hierarchy = "created_at"
    # Status, progress and counts are in the progress box at the top (one source, kept live
    # by its script), not repeated as fields below it.
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "original_name",
                    "schema",
                    "format",
                    "size_display",
                    "error_report_link",
                )
            },
        ),
        (
            "How the file is read",
            {
                "fields": (
                    "encoding_display",
                    "delimiter_display",
                    "sheet",
                    "header_row",
                    "on_error",
                    "ignore_unknown_columns",
                    "guest_mode",
                    "mapping_display",
                )
            },
        ),
        (
            "Lifecycle",
            {
                "classes": ("collapse",),
                "fields": (
                    "created_by",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "attempt",
                    "job_id",
                    "lease_until",
                    "last_error",
                ),
            },
        ),
    )
    readonly_fields = (
        "original_name",
        "schema",
        "format",
        "size_display",
        "error_report_link",
        "encoding_display",
        "delimiter_display",
        "on_error",
        "ignore_unknown_columns",
        "guest_mode",
        "sheet",
        "header_row",
        "mapping_display",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "attempt",
        "job_id",
        "lease_until",
        "last_error",
    )
    add_form_template = "admin/records/importrun/add_form.html"
    change_form_template = "admin/records/importrun/change_form.html"

    # ---- permissions: runs are created by the service and never edited ---------------------

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    # ---- columns -------------------------------------------------------------------------

    @admin.display(description="Progress")
    def progress_display(self, obj: ImportRun) -> str:
        payload = import_run_progress(obj)
        total = f" / {obj.rows_total:,}" if obj.rows_total else ""
        return format_html(
            '<span class="importrun-progress-text">{} %</span> ({}{} rows)',
            payload["percent"],
            f"{obj.rows_read:,}",
            total,
        )

    @admin.display(description="Size")
    def size_display(self, obj: ImportRun) -> str:
        return format_html(
            '<span title="{} bytes">{}</span>', f"{obj.bytes_total:,}", size_text(obj.bytes_total)
        )

    @admin.display(description="Encoding")
    def encoding_display(self, obj: ImportRun) -> str:
        if obj.format == ImportRun.Format.XLSX:
            return "— (XLSX files carry their own)"
        return _chosen_and_detected(
            ENCODING_LABELS, _codec(obj.encoding), _codec(obj.detected_encoding)
        )

    @admin.display(description="Delimiter")
    def delimiter_display(self, obj: ImportRun) -> str:
        if obj.format != ImportRun.Format.CSV:
            return "— (not a CSV file)"
        return _chosen_and_detected(DELIMITERS, obj.delimiter, obj.detected_delimiter)

    @admin.display(description="Column mapping")
    def mapping_display(self, obj: ImportRun) -> str:
        if not obj.mapping_document:
            return "— (CDP's own column names)"
        if obj.mapping is None:
            return "A mapping made for this run (not saved)"
        url = reverse("admin:records_mapping_change", args=[obj.mapping.pk])
        return format_html('<a href="{}">{}</a> (version {})', url, obj.mapping.name,
                           obj.mapping_version)  # fmt: skip

    @admin.display(description="Error report")
    def error_report_link(self, obj: ImportRun) -> str:
        if not obj.error_report:
            return "—"
        url = reverse("admin:records_importrun_error_report", args=[obj.pk])
        return format_html('<a href="{}">Download the error report (CSV)</a>', url)

    # ---- extra pages -----------------------------------------------------------------------

    def get_urls(self):
        urls = super().get_urls()
        extra = [
            path(
                "<int:pk>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="records_importrun_progress",
            ),
            path(
                "<int:pk>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="records_importrun_cancel",
            ),
            path(
                "<int:pk>/mapping/",
                self.admin_site.admin_view(MappingStep(self)),
                name="records_importrun_mapping",
            ),
            path(
                "<int:pk>/error-report/",
                self.admin_site.admin_view(self.error_report_view),
                name="records_importrun_error_report",
            ),
        ]
        return extra + urls

    def _visible_run(self, request, pk: int) -> ImportRun:
        run = ImportRun.objects.filter(pk=pk).first()
        if run is None:
            raise Http404("No such import run.")
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        return run

    def can_cancel(self, request, run: ImportRun) -> bool:
        """Whoever started the run, or anyone who may import files (a colleague's stuck run)."""
        return run.created_by_id == request.user.pk or self.has_add_permission(request)

    def progress_view(self, request, pk: int):
        """The progress box's JSON, polled by the change page while the run is not finished."""
        run = self._visible_run(request, pk)
        return JsonResponse(import_run_progress(run, can_cancel=self.can_cancel(request, run)))

    def cancel_view(self, request, pk: int):
        """POST: stop a run that has not finished (nothing of it is imported)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run = self._visible_run(request, pk)
        if not self.can_cancel(request, run):
            raise PermissionDenied
        try:
            import_run_cancel(import_run_id=run.pk, user=request.user)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(
                request, f"Import run {run.pk} cancelled; nothing was imported.", messages.SUCCESS
            )
        return HttpResponseRedirect(reverse("admin:records_importrun_change", args=[run.pk]))

    def error_report_view(self, request, pk: int):
        """Download the error report (row, column, severity, code, reason, and the row's
        identity for viewers with view_pii; never a cell value)."""
        run = self._visible_run(request, pk)
        if not run.error_report:
            raise Http404("This import run has no error report.")
        view_pii = masking.can_view_pii(request.user)
        response = StreamingHttpResponse(
            report_for_viewer(run.error_report.open("rb"), view_pii=view_pii),
            content_type="text/csv",
        )
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=f"import-{run.pk}-errors.csv"
        )
        return response

    # ---- "Import a file" --------------------------------------------------------------------

    def add_view(self, request, form_url="", extra_context=None):
        """Upload a file and start a background import run (one service call)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        initial = {"schema": request.GET.get("schema")} if request.GET.get("schema") else None
        form = ImportFileForm(request.POST or None, request.FILES or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                await_mapping = _needs_mapping(data)
                run = import_run_create(
                    uploaded_file=data["file"],
                    schema=data["schema"],
                    format=data["format"] or None,
                    encoding=data["encoding"],
                    delimiter=DELIMITER_VALUES[data["delimiter"]],
                    on_error=data["on_error"],
                    ignore_unknown_columns=data["ignore_unknown_columns"],
                    guest_mode=data["guest_mode"] or GuestMode.UPSERT,
                    sheet=data["sheet"],
                    header_row=data["header_row"],
                    await_mapping=await_mapping,
                    user=request.user,
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                if await_mapping:
                    return HttpResponseRedirect(
                        reverse("admin:records_importrun_mapping", args=[run.pk])
                    )
                self.message_user(
                    request,
                    f"Import run {run.pk} started: {run.original_name} is being imported in "
                    "the background.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:records_importrun_change", args=[run.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Import a file",
            "form": form,
            "opts": self.opts,
            "has_view_permission": self.has_view_permission(request),
            "docs_hint": "docs/import-formats.md",
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.add_form_template, context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if run is not None:
            extra_context.update(
                progress_url=reverse("admin:records_importrun_progress", args=[run.pk]),
                progress=import_run_progress(run, can_cancel=self.can_cancel(request, run)),
                # A re-import of unchanged rows stages nothing new: the link would list no one.
                records_changed=run.rows_created + run.rows_updated + run.rows_invalid,
                events=import_run_events(run),
            )
        return super().change_view(request, object_id, form_url, extra_context)


class ChildRecordAdmin(ImportFileLink, ReadOnlyAdmin):
    """Children of staged guests: listed here (imported through "Import a file"), edited on
    the guest's page (an edit must recompute the guest's stored value, which the guest admin
    does)."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    list_select_related = ("guest",)
    ordering = ("-id",)
    raw_id_fields = ("guest",)


@admin.register(Subscription)
class SubscriptionAdmin(ChildRecordAdmin):
    schema = Schema.SUBSCRIPTION
    list_display = ("id", "guest", "name", "point_of_sale", "channel", "status", "effective_date")
    list_filter = ("channel", "status")
    search_fields = ("=name", "=point_of_sale")


@admin.register(Extension)
class ExtensionAdmin(ChildRecordAdmin):
    schema = Schema.EXTENSION
    list_display = ("id", "guest", "name", "key")
    list_filter = ("name",)
