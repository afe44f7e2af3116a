"""Admin for batches: create, inspect, approve, send, cancel, re-send; files, events, items.

Nothing here can edit or delete a batch, a file, an item or an event (not even a superuser):
every change is a button that calls one service, which enforces the rules (four eyes,
states). The record pages get their delivery history through the hook in
records/admin/delivery.py.
"""

import csv
import io
import os
from dataclasses import replace
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import default_storage
from django.http import (
    FileResponse,
    Http404,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import pluralize
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from batches import selectors, services
from batches.models import Batch, BatchEvent, BatchFile, BatchItem, BatchSchema
from batches.services.allowance import LIMITED_SCHEMAS, allowance_notes, allowance_summary
from cdpstage.admin.paginator import CappedCountPaginator
from cdpstage.admin.pii import ViewerPiiMixin
from cdpstage.admin.readonly import ReadOnlyAdmin
from cdpstage.errors import ApplicationError
from cdpstage.templatetags.humanize_units import duration_text, size_text
from records.admin.delivery import CdpOutcomes, register_cdp_outcomes, register_delivery_history
from records.masking import can_view_pii, mask_message
from records.models import Guest, GuestMigration, Order, ReviewStatus, TrackingEvent
from records.rules import problem_label

# The states in which a batch changes without anyone clicking: its page polls its progress.
REFRESH_STATUSES = frozenset(
    {Batch.Status.DRAFT, Batch.Status.BUILDING, Batch.Status.UPLOADING, Batch.Status.PROCESSING}
)
CANCELLABLE_STATUSES = frozenset(
    {Batch.Status.DRAFT, Batch.Status.BUILDING, Batch.Status.BUILT, Batch.Status.APPROVED}
)
# Statuses that end a batch badly: the progress box is styled as a failure.
FAILED_STATUSES = frozenset({Batch.Status.FAILED, Batch.Status.PARTIALLY_FAILED})
RESENDABLE_STATUSES = FAILED_STATUSES
# The batch page lists this many rejected records; the CSV has them all.
REJECTED_ON_PAGE = 100
REJECTED_CSV_CHUNK = 2000
REJECTED_CSV_HEADER = (
    "file", "batch_ref", "line", "record_ref", "record_id", "record", "code", "meaning", "message",
)  # fmt: skip
# The admin page of a batch schema's records (a rejected record links to it).
RECORD_ADMIN = {
    "guest": "admin:records_guest_change",
    "tracking": "admin:records_trackingevent_change",
    "order": "admin:records_order_change",
}


def can_cancel(user, batch: Batch) -> bool:
    """Whether the page offers Cancel: its creator or an approver, before it is sent."""
    return batch.status in CANCELLABLE_STATUSES and (
        user.pk == batch.created_by_id or user.has_perm("batches.approve_batch")
    )


def can_resend_unconfirmed(user, batch: Batch) -> bool:
    """The explicit re-send of unknown outcomes: only upserted schemas (never tracking)."""
    return (
        batch.status in (Batch.Status.PARTIALLY_FAILED, Batch.Status.FAILED)
        and batch.records_unconfirmed > 0
        and services.SCHEMAS[batch.schema].default_mode != "insert"
        and user.has_perm("batches.add_batch")
    )


def file_status_label(batch: Batch, batch_file: BatchFile) -> str:
    """A file's status as the batch page shows it: a cancelled batch's files were not sent,
    so "Failed (we gave up)" would misstate what happened."""
    if batch.status == Batch.Status.CANCELLED and not batch_file.dispatched_at:
        return "Not sent (batch cancelled)"
    return batch_file.get_status_display()


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{pluralize(count)}"


def batch_progress_box(batch: Batch) -> dict:
    """What the batch page's progress box says, as texts and numbers: the page renders it and
    its script polls it (no full-page reload), so the two never disagree. No personal data.

    One sentence per state; a bar only where something moves (or has moved) by itself; the
    retries CDP is going through, with their reason, at the top.
    """
    progress = selectors.batch_progress(batch)
    contents = (
        f"{_plural(batch.records_total, 'record')} in {_plural(batch.file_count, 'file')} "
        f"({size_text(batch.bytes_total)})"
    )
    bar = False
    status = batch.status
    if status == Batch.Status.DRAFT:
        text = "Waiting for a worker to start the build."
    elif status == Batch.Status.BUILDING and not progress.total:
        text = "Selecting the ready records…"
    elif status == Batch.Status.BUILT:
        took = (
            f" in {duration_text(batch.built_at - batch.build_started_at)}"
            if batch.built_at and batch.build_started_at
            else ""
        )
        text = f"{contents}, built{took}; waiting for approval."
    elif status == Batch.Status.APPROVED:
        text = f"{contents}, approved by {batch.approved_by}; not sent yet."
    elif status == Batch.Status.CANCELLED:
        before = "" if batch.sent_at else " before anything was sent to CDP"
        text = f"Cancelled{before}; its records are free for another batch."
    else:
        bar = True
        noun = "file" if progress.unit == "files" else "record"
        what = "finished at CDP" if progress.unit == "files" else "written"
        parts = [
            f"{progress.done:,} of {progress.total:,} {noun}{pluralize(progress.total)} {what}"
        ]
        if status in REFRESH_STATUSES:  # a rate or ETA means nothing once it ended
            if progress.rate:
                parts.append(f"{progress.rate:,.0f} {progress.unit}/s")
            if progress.eta_seconds:
                parts.append(f"about {duration_text(progress.eta_seconds)} left")
        text = " · ".join(parts)
    if status in (Batch.Status.BUILT, Batch.Status.APPROVED) and batch.schema in LIMITED_SCHEMAS:
        text += " " + allowance_summary()  # what the approver is about to send into
    retries = [
        f"File {f.sequence}: {f.last_error} (try {f.failures + 1} of "
        f"{settings.CDP_MAX_ATTEMPTS}; the next one starts by itself)."
        for f in selectors.batch_files(batch).filter(next__isnull=True)
        if f.failures and not f.is_finished and f.last_error
    ] + allowance_notes(batch)
    return {
        "status": status,
        "phase": progress.phase,
        "text": text,
        "bar": bar,
        "percent": progress.percent,
        "failed": status in FAILED_STATUSES,
        "retries": retries,
        "message": batch.message,
        "live": status in REFRESH_STATUSES,
        "records_delivered": batch.records_delivered,
        "records_rejected": batch.records_rejected,
        "records_failed": batch.records_failed,
    }


def can_resend(user, batch: Batch) -> bool:
    """Whoever may create batches may re-send one that ended with undelivered records."""
    return batch.status in RESENDABLE_STATUSES and user.has_perm("batches.add_batch")


def resend_consequences(batch: Batch) -> list[str]:
    """What "Re-send" takes and what it leaves out, in numbers (the confirm page)."""
    preview = selectors.batch_resend_preview(batch)
    lines = [
        f"A new batch is created and built with {_plural(preview.takes, 'record')} of batch "
        f"{batch.pk}; it needs approval like any batch (not by you).",
        f"It takes: {_plural(preview.not_delivered, 'record')} whose file failed or that CDP "
        f"did not confirm, {_plural(preview.cdp_side, 'record')} CDP failed on its side (5xx) "
        f"as they are, and {_plural(preview.fixed, 'rejected record')} fixed since.",
    ]
    if preview.unfixed:
        lines.append(
            f"It leaves out {_plural(preview.unfixed, 'rejected record')} not changed since CDP "
            "rejected them: CDP would reject them again. Fix them and mark them ready first."
        )
    if preview.not_ready:
        lines.append(
            f"It leaves out {_plural(preview.not_ready, 'record')} that are not ready now "
            "(held, invalid, or in another live batch)."
        )
    lines.append("Delivered records are never sent again.")
    return lines


def _rejected_csv_lines(batch: Batch, items, user):
    """The CSV's lines, a chunk of items (and one label query) at a time."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(REJECTED_CSV_HEADER)
    chunk: list[BatchItem] = []

    def flush():
        for row in selectors.batch_rejected_rows(batch, chunk, user=user):
            writer.writerow(
                (row.file_sequence, row.batch_ref, row.line, row.record_ref, row.record_id,
                 row.record_label, row.code, row.group.title, row.message)
            )  # fmt: skip
        chunk.clear()

    yield out.getvalue()
    for item in items.iterator(chunk_size=REJECTED_CSV_CHUNK):
        chunk.append(item)
        if len(chunk) >= REJECTED_CSV_CHUNK:
            out.seek(0)
            out.truncate()
            flush()
            yield out.getvalue()
    out.seek(0)
    out.truncate()
    flush()
    yield out.getvalue()


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "schema",
        "status",
        "note",
        "records_total",
        "file_count",
        "records_delivered",
        "records_rejected",
        "created_by",
        "approved_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "schema")
    list_select_related = ("created_by", "approved_by")
    search_fields = ("note",)
    fieldsets = (
        (None, {"fields": ("status", "schema", "note", "message", "resend_of")}),
        ("People", {"fields": ("created_by", "approved_by", "approved_at", "sent_at")}),
        (
            "Records",
            {
                "fields": (
                    "records_total",
                    "file_count",
                    "size_display",
                    "records_delivered",
                    "records_rejected",
                    "records_failed",
                    "records_unconfirmed",
                )
            },
        ),
        (
            "Times",
            {
                "fields": (
                    "created_at",
                    "build_started_at",
                    "built_at",
                    "build_duration",
                    "finished_at",
                    "delivery_duration",
                )
            },
        ),
    )
    readonly_fields = ("size_display", "build_duration", "delivery_duration")
    change_form_template = "admin/batches/batch/change_form.html"

    @admin.display(description="Size")
    def size_display(self, obj):
        return format_html(
            '<span title="{} bytes">{}</span>', f"{obj.bytes_total:,}", size_text(obj.bytes_total)
        )

    @admin.display(description="Build took")
    def build_duration(self, obj):
        if obj.build_started_at and obj.built_at:
            return duration_text(obj.built_at - obj.build_started_at)
        return "-"

    @admin.display(description="Sending took")
    def delivery_duration(self, obj):
        if obj.sent_at and obj.finished_at:
            return duration_text(obj.finished_at - obj.sent_at)
        return "-"

    def has_add_permission(self, request):
        # "Add" is the create-a-batch form (a service call), not a model form.
        return request.user.has_perm("batches.add_batch")

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/approve/", view(self.approve_view), name="batches_batch_approve"),
            path("<int:pk>/send/", view(self.send_view), name="batches_batch_send"),
            path("<int:pk>/cancel/", view(self.cancel_view), name="batches_batch_cancel"),
            path("<int:pk>/resend/", view(self.resend_view), name="batches_batch_resend"),
            path("<int:pk>/progress/", view(self.progress_view), name="batches_batch_progress"),
            path(
                "<int:pk>/rejected.csv",
                view(self.rejected_csv_view),
                name="batches_batch_rejected_csv",
            ),
            path(
                "<int:pk>/resend-unconfirmed/",
                view(self.resend_unconfirmed_view),
                name="batches_batch_resend_unconfirmed",
            ),
            path(
                "file/<int:pk>/fetch-log/",
                view(self.fetch_log_view),
                name="batches_batchfile_fetch_log",
            ),
            path(
                "file/<int:pk>/download/",
                view(self.download_view),
                name="batches_batchfile_download",
            ),
            path("file/<int:pk>/log/", view(self.log_view), name="batches_batchfile_log"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            try:
                batch = services.batch_create(
                    schema=request.POST.get("schema", ""),
                    user=request.user,
                    note=request.POST.get("note", ""),
                    include_unchanged=request.POST.get("include_unchanged") == "on",
                )
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(
                    request, f"Batch {batch.pk} created; it is being built.", messages.SUCCESS
                )
                return HttpResponseRedirect(reverse("admin:batches_batch_change", args=[batch.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Create a batch",
            "schemas": BatchSchema.choices,
            "candidates": selectors.batch_candidates(),
            "candidates_cap": selectors.CANDIDATES_COUNT_CAP,
        }
        return TemplateResponse(request, "admin/batches/batch/add_form.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        batch = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if batch is not None:
            files = list(selectors.batch_files(batch).select_related("previous"))
            for batch_file in files:
                batch_file.status_label = file_status_label(batch, batch_file)
            samples = {}
            if batch.status in (Batch.Status.BUILT, Batch.Status.APPROVED):
                for batch_file in files[:1]:
                    samples[batch_file.pk] = selectors.batch_sample_lines(
                        batch_file, user=request.user
                    )
            summary = batch.validation_summary or {}
            group = request.GET.get("rejected", "")
            rejected = selectors.batch_rejected_items(batch, group=group)
            extra.update(
                rejection_groups=selectors.batch_rejection_groups(batch, user=request.user),
                rejected_group=group,
                rejected_rows=selectors.batch_rejected_rows(
                    batch, rejected[:REJECTED_ON_PAGE], user=request.user
                ),
                rejected_shown=REJECTED_ON_PAGE,
                rejected_count=rejected.count(),
                rejected_masked=not can_view_pii(request.user),
                record_admin=RECORD_ADMIN.get(batch.schema, ""),
                batch=batch,
                files=files,
                box=batch_progress_box(batch),
                samples=samples,
                samples_masked=not can_view_pii(request.user),
                events=selectors.batch_events(batch),
                review_statuses=[
                    (ReviewStatus(status).label if status in ReviewStatus.values else status, n)
                    for status, n in summary.get("by_review_status", {}).items()
                ],
                top_problems=[
                    (problem_label(p["code"]), p["count"]) for p in summary.get("top_problems", [])
                ],
                can_approve=services.can_approve(request.user, batch),
                can_send=services.can_send(request.user, batch),
                can_cancel=can_cancel(request.user, batch),
                can_resend=can_resend(request.user, batch),
                can_resend_unconfirmed=can_resend_unconfirmed(request.user, batch),
                can_fetch_log=request.user.has_perm("batches.send_batch"),
                can_download=can_view_pii(request.user),
            )
        return super().change_view(request, object_id, form_url, extra)

    def progress_view(self, request, pk):
        """The progress box's JSON, polled by the batch page while the batch moves by itself."""
        batch = get_object_or_404(Batch.objects.select_related("approved_by"), pk=pk)
        if not self.has_view_permission(request, batch):
            raise PermissionDenied
        return JsonResponse(batch_progress_box(batch))

    def _post_action(self, request, pk, action, done):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        batch = get_object_or_404(Batch, pk=pk)
        if not self.has_view_permission(request, batch):
            raise PermissionDenied
        try:
            result = action(batch)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            result = batch
        else:
            self.message_user(request, done(result), messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:batches_batch_change", args=[result.pk]))

    def _confirm(self, request, pk, *, allowed, verb, button, consequences):
        """GET: a page that says what the action does and asks for a second click (no JS)."""
        batch = get_object_or_404(Batch, pk=pk)
        if not self.has_view_permission(request, batch):
            raise PermissionDenied
        if not allowed(batch):
            self.message_user(
                request,
                f"Batch {batch.pk} cannot be {verb} by you now "
                f"(it is {batch.get_status_display()}).",
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:batches_batch_change", args=[batch.pk]))
        files = list(selectors.batch_files(batch).filter(next__isnull=True))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{button}?",
            "batch": batch,
            "files": files,
            "button": button,
            "consequences": consequences(batch),
        }
        return TemplateResponse(request, "admin/batches/batch/confirm.html", context)

    def approve_view(self, request, pk):
        if request.method == "GET":
            return self._confirm(
                request,
                pk,
                allowed=lambda batch: services.can_approve(request.user, batch),
                verb="approved",
                button="Approve this batch",
                consequences=lambda batch: [
                    f"You approve these {batch.records_total:,} records in "
                    f"{batch.file_count} file{pluralize(batch.file_count)} "
                    f"({size_text(batch.bytes_total)}) with the checksums below.",
                    "Before each file is sent its bytes are checked against these checksums.",
                    "After approval, anyone who may send batches can send it to CDP.",
                ],
            )
        return self._post_action(
            request,
            pk,
            lambda batch: services.batch_approve(batch=batch, user=request.user) or batch,
            lambda batch: f"Batch {batch.pk} approved.",
        )

    def send_view(self, request, pk):
        if request.method == "GET":
            return self._confirm(
                request,
                pk,
                allowed=lambda batch: services.can_send(request.user, batch),
                verb="sent",
                button="Send to CDP",
                consequences=lambda batch: [
                    f"{batch.records_total:,} records in {batch.file_count} "
                    f"file{pluralize(batch.file_count)} go to CDP at "
                    f"{urlsplit(settings.CDP_BASE_URL).hostname}, one file at a time.",
                    "This cannot be undone: CDP keeps what it receives.",
                ],
            )
        return self._post_action(
            request,
            pk,
            lambda batch: services.batch_send(batch=batch, user=request.user) or batch,
            lambda batch: f"Batch {batch.pk} is being sent to CDP.",
        )

    def cancel_view(self, request, pk):
        if request.method == "GET":
            return self._confirm(
                request,
                pk,
                allowed=lambda batch: can_cancel(request.user, batch),
                verb="cancelled",
                button="Cancel this batch",
                consequences=lambda batch: [
                    "Nothing is sent to CDP.",
                    f"Its {batch.records_total:,} records are freed: a new batch can take them.",
                    "The batch, its files and its timeline stay in the audit trail; "
                    "a cancelled batch cannot be restarted.",
                ],
            )
        return self._post_action(
            request,
            pk,
            lambda batch: services.batch_cancel(batch=batch, user=request.user) or batch,
            lambda batch: f"Batch {batch.pk} cancelled; its records are free again.",
        )

    def rejected_csv_view(self, request, pk):
        """Every rejected record of the batch (or of one group) as CSV, masked as on the page."""
        batch = get_object_or_404(Batch, pk=pk)
        if not self.has_view_permission(request, batch):
            raise PermissionDenied
        items = selectors.batch_rejected_items(batch, group=request.GET.get("rejected", ""))
        response = StreamingHttpResponse(
            _rejected_csv_lines(batch, items, request.user), content_type="text/csv"
        )
        response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}-rejected.csv"'
        return response

    def resend_view(self, request, pk):
        if request.method == "GET":
            return self._confirm(
                request,
                pk,
                allowed=lambda batch: can_resend(request.user, batch),
                verb="re-sent",
                button="Create the re-send batch",
                consequences=resend_consequences,
            )
        return self._post_action(
            request,
            pk,
            lambda batch: services.batch_resend(batch=batch, user=request.user),
            lambda batch: f"Batch {batch.pk} created with the records to send again.",
        )

    def resend_unconfirmed_view(self, request, pk):
        if request.method == "GET":
            return self._confirm(
                request,
                pk,
                allowed=lambda batch: can_resend_unconfirmed(request.user, batch),
                verb="re-sent with its records of unknown outcome",
                button="Re-send including records of unknown outcome",
                consequences=lambda batch: [
                    f"A new batch takes the records batch {batch.pk} did not deliver and its "
                    f"{batch.records_unconfirmed:,} records of unknown outcome.",
                    services.RESEND_UNCONFIRMED_WARNING,
                ],
            )
        return self._post_action(
            request,
            pk,
            lambda batch: services.batch_resend(
                batch=batch, user=request.user, include_unconfirmed=True
            ),
            lambda batch: f"Batch {batch.pk} created with the records to send again.",
        )

    def fetch_log_view(self, request, pk):
        """Fetch CDP's error log again for a file whose log could not be fetched."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        batch_file = get_object_or_404(BatchFile.objects.select_related("batch"), pk=pk)
        if not request.user.has_perm("batches.send_batch"):
            raise PermissionDenied
        try:
            summary = services.batchfile_log_fetch(batch_file=batch_file, user=request.user)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, f"File {batch_file.sequence}: {summary}", messages.SUCCESS)
        return HttpResponseRedirect(
            reverse("admin:batches_batch_change", args=[batch_file.batch_id])
        )

    def download_view(self, request, pk):
        """The exact file sent: personal data, so only for users who may see it."""
        batch_file = get_object_or_404(BatchFile, pk=pk)
        if not (self.has_view_permission(request) and can_view_pii(request.user)):
            raise PermissionDenied
        return self._file_response(batch_file.file.name)

    def log_view(self, request, pk):
        """CDP's error log as it was downloaded (refs, codes, messages that may quote records'
        values): for users who may see personal data."""
        batch_file = get_object_or_404(BatchFile, pk=pk)
        if not (self.has_view_permission(request) and can_view_pii(request.user)):
            raise PermissionDenied
        if not batch_file.error_log:
            raise PermissionDenied
        return self._file_response(batch_file.error_log.name)

    @staticmethod
    def _file_response(name):
        if not name or not default_storage.exists(name):
            raise Http404("The stored file is missing.")
        return FileResponse(
            default_storage.open(name, "rb"),
            as_attachment=True,
            filename=os.path.basename(name),
            content_type="application/gzip",
        )


@admin.register(BatchFile)
class BatchFileAdmin(ReadOnlyAdmin):
    list_display = (
        "batch_ref",
        "batch",
        "sequence",
        "status",
        "remote_status",
        "record_count",
        "size",
        "md5",
        "finished_at",
    )
    list_filter = ("status",)
    list_select_related = ("batch",)
    search_help_text = "A batch ref (UUID) or a batch number."
    search_fields = ("batch_ref",)
    exclude = ("status_json",)
    readonly_fields = ("status_json_display",)

    @admin.display(description="Last status reply")
    def status_json_display(self, obj):
        return format_html("<pre>{}</pre>", obj.status_json or "")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(batch_id=int(term)), False
        try:
            return queryset.filter(batch_ref=term), False
        except (ValueError, ValidationError):
            return queryset.none(), False


@admin.register(BatchEvent)
class BatchEventAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "batch",
        "file",
        "kind",
        "actor_display",
        "from_status",
        "to_status",
        "method",
        "path",
        "http_status",
        "duration_ms",
        "message",
    )
    list_filter = ("kind", "http_status")
    list_select_related = ("batch", "file", "actor")
    paginator = CappedCountPaginator
    show_full_result_count = False

    @admin.display(description="Who")
    def actor_display(self, obj):
        return obj.actor.get_username() if obj.actor else obj.actor_label


@admin.register(BatchItem)
class BatchItemAdmin(ViewerPiiMixin, ReadOnlyAdmin):
    """Search by record ref: which file, which line, what CDP said."""

    list_display = ("record_ref", "file", "line", "outcome", "code", "message_display")
    fields = (
        "file",
        "line",
        "record_ref",
        "record_id",
        "value_hash",
        "outcome",
        "code",
        "message_display",
    )
    readonly_fields = fields
    list_filter = ("outcome",)
    list_select_related = ("file",)
    search_help_text = "A record ref (UUID)."
    search_fields = ("record_ref",)
    paginator = CappedCountPaginator
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(record_ref=term), False
        except (ValueError, ValidationError):
            return queryset.none(), False

    @admin.display(description="message")
    def message_display(self, obj):
        # CDP's reason may quote the record's values (an email, a phone number).
        return obj.message if obj.viewer_sees_pii else mask_message(obj.message)


def render_delivery_history(record) -> str:
    """The record page's "Delivery history": batch, file, ref, line, outcome; CDP's messages
    masked unless the record page shows personal data (`_show_pii`, set by its admin)."""
    rows = selectors.delivery_history(record.ref)
    if not getattr(record, "_show_pii", False):
        rows = [replace(row, message=mask_message(row.message)) for row in rows]
    return render_to_string("admin/batches/delivery_history.html", {"rows": rows})


register_delivery_history(Guest, render_delivery_history)
register_delivery_history(TrackingEvent, render_delivery_history)
register_delivery_history(Order, render_delivery_history)
register_delivery_history(GuestMigration, render_delivery_history)
register_cdp_outcomes(
    CdpOutcomes(
        groups=selectors.rejection_group_choices,
        refs_in_group=selectors.refs_rejected_for,
        latest_rejection=selectors.latest_rejection,
    )
)
