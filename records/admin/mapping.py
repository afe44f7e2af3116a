"""Admin for column mappings: the mapping step of an import, saved mappings, identity providers.

The mapping step (an import run waiting for its mapping) shows the file's header with a few
sample values per column (masked without view_pii), the suggested or saved target of each
column and its transforms, every problem of the mapping at once, and a preview of the first
rows as CDP values with what the rules say of them. "Import" saves the mapping under its name
(when given) and starts the run; each step is one service call.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from cdpstage.errors import ApplicationError
from records.importing import FileProblem
from records.importing.preview import SourcePreview, preview_mapped, source_preview
from records.mapping import MappingError, known_columns
from records.mapping.documents import (
    CASES,
    EXCEL_SERIAL,
    IGNORE,
    MappingDocument,
    MappingDocumentError,
    normalise_header,
    parse_document,
    to_json,
)
from records.mapping.suggestion import DATE_FORMATS, suggest_mapping
from records.masking import can_view_pii, mask_text, mask_value
from records.models import IdentityProvider, ImportRun, Mapping
from records.selectors import identity_provider_names, mapping_for_header
from records.services.identity import identity_provider_add, identity_provider_remove
from records.services.imports import import_run_fail, import_run_start_mapped
from records.services.mappings import mapping_document_parse, mapping_save

SAMPLE_VALUES = 3  # per column on the page
PREVIEW_ROWS = 5
EMPTY_CONSTANTS = 3  # blank constant rows offered for new ones


def _targets(schema: str) -> list[str]:
    """The targets offered in the page's list (templates written with their first index)."""
    out = []
    for name in known_columns(schema):
        out.append(name.replace("<n>", "0").replace("<attribute>", "attribute"))
        if name.startswith(("street.", "phoneNumbers.")):
            out.append(name.split(".")[0] + "[]")
        if "<n>" in name and name.startswith("identifiers."):
            out.append(name.replace("<n>", "1"))
    return [IGNORE, *dict.fromkeys(out)]


def _values_text(values: dict[str, str]) -> str:
    return "\n".join(f"{k} = {v}" for k, v in values.items())


def _parse_values(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        source, sep, target = line.partition("=")
        if sep and source.strip():
            values[source.strip()] = target.strip()
    return values


def document_from_post(
    post: Any, header: list[str], schema: str, *, spelled: dict[str, str] | None = None
) -> dict[str, Any]:
    """The mapping document the page's fields describe (checked by parse_document).

    `spelled`: normalised column name -> the saved mapping's spelling, in its order, kept so
    that a file of the same layout in other case, spacing or order is the same mapping.
    """
    columns = []
    spelled = spelled or {}
    for index, source in enumerate(header):
        if not source.strip():
            continue
        source = spelled.get(normalise_header(source), source)
        raw = post.get(f"target_{index}", IGNORE).strip() or IGNORE
        targets = [t.strip() for t in raw.split(",") if t.strip()]
        column: dict[str, Any] = {"source": source, "target": targets or IGNORE}
        if post.get(f"date_format_{index}", "").strip():
            column["date_format"] = post.get(f"date_format_{index}").strip()
        if post.get(f"case_{index}", ""):
            column["case"] = post.get(f"case_{index}")
        if post.get(f"split_{index}", ""):
            column["split"] = post.get(f"split_{index}")
        values = _parse_values(post.get(f"values_{index}", ""))
        if values:
            column["values"] = values
        columns.append(column)
    if spelled:
        # In the saved mapping's order: `street[]` appends by name, not by where a later
        # export happens to put the column, and the same mapping stays the same document.
        order = {name: position for position, name in enumerate(spelled)}
        columns.sort(key=lambda c: order.get(normalise_header(c["source"]), len(order)))
    constants = {}
    for index in range(int(post.get("constant_count", 0) or 0)):
        target = post.get(f"constant_target_{index}", "").strip()
        value = post.get(f"constant_value_{index}", "").strip()
        if target or value:
            constants[target] = value
    return {
        "schema": schema,
        "columns": columns,
        "constants": constants,
        "unmapped_columns": "ignore" if post.get("ignore_unmapped") else "refuse",
    }


def _column_rows(data: dict[str, Any], preview: SourcePreview, pii: bool) -> list[dict]:
    """The page's column rows from a document's data (as posted, so a steward's edits stay on
    the page even while the document has problems)."""
    by_source = {
        normalise_header(str(c.get("source", ""))): c
        for c in data.get("columns", [])
        if isinstance(c, dict)
    }
    rows = []
    for index, source in enumerate(preview.header):
        if not source.strip():
            continue
        column = by_source.get(normalise_header(source), {})
        target = column.get("target", IGNORE)
        samples = [r[index] for r in preview.rows if r[index].strip()][:SAMPLE_VALUES]
        values = column.get("values") or {}
        rows.append(
            {
                "index": index,
                "source": source,
                "samples": samples if pii else [mask_text(s) for s in samples],
                "target": ", ".join(target) if isinstance(target, list) else str(target),
                "date_format": column.get("date_format") or "",
                "case": column.get("case") or "",
                "split": column.get("split") or "",
                "values": _values_text(values) if isinstance(values, dict) else "",
            }
        )
    return rows


def _preview_text(value: dict[str, Any]) -> str:
    return "\n".join(
        f'"{key}": {json.dumps(item, ensure_ascii=False, separators=(", ", ": "))}'
        for key, item in value.items()
    )


def _without_name(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "name"}


class MappingStep:
    """The mapping step of one import run (called by ImportRunAdmin's URL)."""

    template = "admin/records/importrun/mapping.html"

    def __init__(self, model_admin: admin.ModelAdmin) -> None:
        self.model_admin = model_admin

    def __call__(self, request, pk: int):
        run = ImportRun.objects.filter(pk=pk).first()
        if run is None:
            raise Http404("No such import run.")
        if not self.model_admin.has_add_permission(request):
            raise PermissionDenied
        change_url = reverse("admin:records_importrun_change", args=[run.pk])
        if run.status != ImportRun.Status.MAPPING:
            return HttpResponseRedirect(change_url)
        try:
            with run.source_file.open("rb") as raw:
                preview = source_preview(raw, name=run.original_name, **run.read_options)
        except FileProblem as problem:
            import_run_fail(import_run_id=run.pk, reason=problem.message)
            self.model_admin.message_user(request, problem.message, messages.ERROR)
            return HttpResponseRedirect(change_url)
        if request.method == "POST" and request.POST.get("action") == "cancel":
            import_run_fail(import_run_id=run.pk, reason="Cancelled at the mapping step.")
            return HttpResponseRedirect(change_url)
        saved, problems, document_data = self._document(request, run, preview)
        document = None
        try:
            document = parse_document(document_data, schema=run.schema)
        except MappingDocumentError as exc:
            problems.extend(exc.problems)
        providers = identity_provider_names()
        preview_rows = []
        if document is not None:
            try:
                preview_rows = preview_mapped(document, preview, providers=providers,
                                              limit=PREVIEW_ROWS)  # fmt: skip
            except MappingError as exc:
                problems.extend(exc.problems)
        if request.method == "POST" and request.POST.get("action") == "import" and not problems:
            return self._start(request, run, document, saved)
        pii = can_view_pii(request.user)
        constants = list(document_data.get("constants", {}).items())
        constants += [("", "")] * EMPTY_CONSTANTS
        context = {
            **self.model_admin.admin_site.each_context(request),
            "opts": self.model_admin.opts,
            "title": f"Map the columns of {run.original_name}",
            "run": run,
            "columns": _column_rows(document_data, preview, pii),
            "constants": constants,
            "constant_count": len(constants),
            "targets": _targets(run.schema),
            "date_formats": [*DATE_FORMATS, EXCEL_SERIAL],
            "cases": CASES,
            "problems": problems,
            "preview_rows": [
                {
                    "number": row.number,
                    # One line a top-level field: short enough to read five rows at a glance.
                    "value": _preview_text(row.value if pii else mask_value(row.value, run.schema)),
                    "problems": row.problems,
                }
                for row in preview_rows
            ],
            "saved": saved,
            "saved_mappings": Mapping.objects.filter(schema=run.schema).order_by("name"),
            "mapping_name": request.POST.get("mapping_name", saved.name if saved else ""),
            "ignore_unmapped": document_data.get("unmapped_columns") == "ignore",
            "providers": providers,
        }
        request.current_app = self.model_admin.admin_site.name
        return TemplateResponse(request, self.template, context)

    def _document(self, request, run: ImportRun, preview: SourcePreview):
        """(saved mapping in use, problems, document data) for this request: the posted fields,
        a saved mapping chosen (or preselected for the same layout), or the suggestion."""
        problems: list[str] = []
        chosen = request.GET.get("mapping") or request.POST.get("saved_mapping")
        saved = None
        if chosen:
            saved = (
                Mapping.objects.filter(pk=chosen, schema=run.schema).first()
                if chosen.isdigit()
                else None
            )
        if request.method == "POST" and request.POST.get("action") in ("preview", "import"):
            spelled = {}
            if saved is not None:
                spelled = {
                    normalise_header(c["source"]): c["source"] for c in saved.document["columns"]
                }
            data = document_from_post(request.POST, preview.header, run.schema, spelled=spelled)
            return saved, problems, data
        if saved is None and request.method == "GET" and "mapping" not in request.GET:
            saved = mapping_for_header(schema=run.schema, header=preview.header)
        if saved is not None:
            return saved, problems, saved.document
        return None, problems, to_json(suggest_mapping(run.schema, preview.header, preview.rows))

    def _start(self, request, run: ImportRun, document: MappingDocument, saved: Mapping | None):
        name = request.POST.get("mapping_name", "").strip()
        try:
            if name:
                saved = mapping_save(name=name, document=document, user=request.user)
            elif saved is not None and to_json(document) != _without_name(saved.document):
                saved = None  # changed and not saved: the run keeps its own copy only
            import_run_start_mapped(import_run_id=run.pk, mapping=document, saved_mapping=saved)
        except ApplicationError as exc:
            self.model_admin.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.path)
        saved_note = f" with the mapping {saved.name!r} (version {saved.version})" if saved else ""
        self.model_admin.message_user(
            request, f"Import run {run.pk} started{saved_note}.", messages.SUCCESS
        )
        return HttpResponseRedirect(reverse("admin:records_importrun_change", args=[run.pk]))


class MappingForm(forms.ModelForm):
    """A saved mapping, its document edited as JSON (checked like a loaded file)."""

    document_text = forms.CharField(
        label="Document",
        widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "class": "vLargeTextField"}),
        help_text="The mapping as JSON (docs/mapping.md); saving a changed one adds a version.",
    )

    class Meta:
        model = Mapping
        fields = ("name",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["document_text"].initial = json.dumps(
                self.instance.document, indent=2, ensure_ascii=False
            )

    def clean_document_text(self):
        try:
            data = json.loads(self.cleaned_data["document_text"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        try:
            self.parsed = mapping_document_parse(data)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from None
        other = Mapping.objects.filter(name=self.cleaned_data.get("name") or self.instance.name)
        if other.exclude(schema=self.parsed.schema).exists():
            raise forms.ValidationError("A mapping of this name reads another schema.")
        return data


@admin.register(Mapping)
class MappingAdmin(admin.ModelAdmin):
    """Saved mappings: what layout each reads, its version, who saved it; edited as JSON."""

    form = MappingForm
    list_display = ("name", "schema", "version", "columns_display", "updated_by", "updated_at")
    list_filter = ("schema",)
    search_fields = ("name",)
    list_select_related = ("updated_by",)
    readonly_fields = ("schema", "version", "header_fingerprint", "created_by", "updated_by",
                       "created_at", "updated_at")  # fmt: skip
    fields = ("name", "document_text", *readonly_fields)

    @admin.display(description="Columns")
    def columns_display(self, obj: Mapping) -> int:
        return len(obj.document.get("columns", []))

    def get_readonly_fields(self, request, obj=None):
        # A rename would be a new mapping (names identify them in commands and runs).
        return ("name", *self.readonly_fields) if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        saved = mapping_save(name=obj.name, document=form.parsed, user=request.user)
        obj.pk = saved.pk
        obj.refresh_from_db()


class IdentityProviderForm(forms.ModelForm):
    class Meta:
        model = IdentityProvider
        fields = ("name", "priority")


@admin.register(IdentityProvider)
class IdentityProviderAdmin(admin.ModelAdmin):
    """Identity providers and their priority (CDP's ordered identity rules)."""

    form = IdentityProviderForm
    list_display = ("name", "priority", "updated_at")
    list_editable = ("priority",)
    ordering = ("priority", "name")

    def get_readonly_fields(self, request, obj=None):
        return ("name",) if obj else ()

    def save_model(self, request, obj, form, change):
        identity_provider_add(name=obj.name, priority=obj.priority)

    def delete_model(self, request, obj):
        try:
            identity_provider_remove(name=obj.name)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    def delete_queryset(self, request, queryset):
        for provider in queryset:
            self.delete_model(request, provider)
