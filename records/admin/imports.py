"""Import screens: background import runs ("Import a file", the mapping step, progress, the
error report), and the lists of guests' children.

Every file comes in the one way: "Import a file" (the lists link to it with their schema
chosen); every write goes through records.services.imports.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import content_disposition_header

from cdpstage.admin.paginator import CappedCountPaginator
from cdpstage.admin.readonly import ReadOnlyAdmin
from cdpstage.errors import ApplicationError
from records import masking
from records.admin.mapping import MappingStep
from records.admin.review import ImportFileLink
from records.importing import ENCODINGS, FileProblem
from records.importing.preview import source_preview
from records.importing.report import report_for_viewer
from records.mapping import MappingError, compile_header
from records.models import Extension, ImportRun, Schema, Subscription
from records.selectors import mapping_for_header
from records.services.imports import import_run_create

DELIMITER_CHOICES = (
    ("", "Detect"),
    ("comma", "Comma (,)"),
    ("semicolon", "Semicolon (;)"),
    ("tab", "Tab"),
    ("pipe", "Pipe (|)"),
)
DELIMITER_VALUES = {"": "", "comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}


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


def _progress_payload(run: ImportRun) -> dict:
    """What the progress bar shows; no personal data (counts and a sentence)."""
    now = timezone.now()
    elapsed = ((run.finished_at or now) - run.started_at).total_seconds() if run.started_at else 0.0
    rate = run.rows_read / elapsed if elapsed > 0 else 0.0
    if run.is_finished:
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
    return {
        "status": run.status,
        "status_display": run.get_status_display(),
        "finished": run.is_finished,
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
    fieldsets = (
        (None, {"fields": ("original_name", "schema", "format", "status", "message")}),
        (
            "Rows",
            {
                "fields": (
                    "progress_display",
                    "rows_read",
                    "rows_total",
                    "rows_created",
                    "rows_updated",
                    "rows_unchanged",
                    "rows_invalid",
                    "rows_bad",
                    "error_report_link",
                )
            },
        ),
        (
            "Options",
            {
                "fields": (
                    "encoding",
                    "delimiter",
                    "sheet",
                    "header_row",
                    "on_error",
                    "ignore_unknown_columns",
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
                    "bytes_read",
                    "bytes_total",
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
        "status",
        "message",
        "progress_display",
        "rows_read",
        "rows_total",
        "rows_created",
        "rows_updated",
        "rows_unchanged",
        "rows_invalid",
        "rows_bad",
        "error_report_link",
        "encoding",
        "delimiter",
        "on_error",
        "ignore_unknown_columns",
        "sheet",
        "header_row",
        "mapping_display",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "bytes_read",
        "bytes_total",
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
        payload = _progress_payload(obj)
        total = f" / {obj.rows_total:,}" if obj.rows_total else ""
        return format_html(
            '<span class="importrun-progress-text">{} %</span> ({}{} rows)',
            payload["percent"],
            f"{obj.rows_read:,}",
            total,
        )

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

    def progress_view(self, request, pk: int):
        """The progress bar's JSON, polled by the change page while the run is not finished."""
        return JsonResponse(_progress_payload(self._visible_run(request, pk)))

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
        extra_context = {
            **(extra_context or {}),
            "progress_url": reverse("admin:records_importrun_progress", args=[object_id]),
        }
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
