"""`manage.py stage_import FILE --schema guest`: import a file in the foreground.

Creates an import run and carries it out through the same service the background job uses,
printing progress and a summary. Exit status: 0 when every row was staged (some possibly as
invalid, for a steward to fix), 1 when some rows were refused (with --skip-bad-rows the rest
were staged), 2 when nothing was imported, 130 when stopped with Ctrl-C.
"""

import json
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.db.utils import InterfaceError, OperationalError

from cdpstage.errors import ApplicationError
from records.importing import DELIMITER_BY_NAME, DELIMITERS, ENCODINGS, FileProblem
from records.importing.pipeline import import_process_tuning
from records.importing.preview import source_preview
from records.mapping.documents import MappingDocument, to_json
from records.mapping.suggestion import suggest_mapping
from records.models import ImportRun, Mapping, Schema
from records.rules import GUEST_MODE_WORDS
from records.selectors import mapping_for_header
from records.services.imports import (
    ImportProgress,
    import_run_create,
    import_run_execute,
    import_run_fail,
)
from records.services.mappings import mapping_document_parse


class Command(BaseCommand):
    help = "Import a CSV, XLSX, JSON or NDJSON file into staging, in the foreground."

    def add_arguments(self, parser):
        parser.add_argument("file", help="The file to import.")
        parser.add_argument("--schema", required=True, choices=Schema.values)
        parser.add_argument("--user", help="Username recorded as the run's creator.")
        parser.add_argument(
            "--skip-bad-rows",
            action="store_true",
            help="Stage the other rows when some are refused (default: all or nothing).",
        )
        parser.add_argument(
            "--format", choices=ImportRun.Format.values, help="Default: from name and content."
        )
        parser.add_argument(
            "--encoding",
            default="",
            help=f"Text encoding, e.g. {', '.join(e for e in ENCODINGS if e)} "
            "(default: UTF-8, or as the byte-order mark says).",
        )
        parser.add_argument(
            "--delimiter",
            default="",
            choices=["", *DELIMITER_BY_NAME, *[d for d in DELIMITERS if d]],
            help="CSV delimiter: comma, semicolon, tab or pipe (default: detect).",
        )
        parser.add_argument("--sheet", default="", help="XLSX: the worksheet to import.")
        parser.add_argument(
            "--mode",
            default="upsert",
            choices=sorted(GUEST_MODE_WORDS),
            help="Guests: how rows without a mode column are sent (default upsert; insert "
            "creates new guests only and goes to CDP as its mode create).",
        )
        parser.add_argument(
            "--header-row",
            type=int,
            help="XLSX: the row of the column names (default: found after any notes rows).",
        )
        mapping = parser.add_mutually_exclusive_group()
        mapping.add_argument(
            "--mapping",
            metavar="NAME_OR_JSON_FILE",
            help="Read a CSV/XLSX of another layout with a saved mapping (its name) or a "
            "mapping document (a .json file; docs/mapping.md).",
        )
        mapping.add_argument(
            "--suggest-mapping",
            action="store_true",
            help="Print the suggested mapping for the file as JSON and stage nothing.",
        )
        parser.add_argument(
            "--ignore-unknown-columns",
            action="store_true",
            help="Drop columns (or JSON fields) CDP Stage does not know instead of refusing.",
        )

    def handle(self, *args, **options):
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user named {options['user']!r}.")
        delimiter = DELIMITER_BY_NAME.get(options["delimiter"], options["delimiter"])
        if options["suggest_mapping"]:
            self.suggest(path, options, delimiter)
            return
        document, saved = None, None
        if options["mapping"]:
            document, saved = self.load_mapping(options["mapping"], options["schema"])
        try:
            with path.open("rb") as handle:
                run = import_run_create(
                    uploaded_file=File(handle, name=path.name),
                    schema=options["schema"],
                    format=options["format"],
                    encoding=options["encoding"],
                    delimiter=delimiter,
                    on_error=(
                        ImportRun.OnError.SKIP
                        if options["skip_bad_rows"]
                        else ImportRun.OnError.ABORT
                    ),
                    ignore_unknown_columns=options["ignore_unknown_columns"],
                    guest_mode=GUEST_MODE_WORDS[options["mode"]],
                    sheet=options["sheet"],
                    header_row=options["header_row"],
                    mapping=document,
                    saved_mapping=saved,
                    user=user,
                    enqueue=False,
                )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Import run {run.pk}: {run.original_name} ({run.format}, {run.schema})")
        self.started = time.monotonic()
        try:
            with import_process_tuning():  # this process does nothing else meanwhile
                finished = import_run_execute(
                    import_run_id=run.pk, attempt=run.attempt, on_progress=self.progress
                )
        except (OperationalError, InterfaceError) as exc:
            raise CommandError(
                f"Lost the database connection while importing run {run.pk} "
                f"({type(exc).__name__}); nothing of this attempt was kept. A running worker "
                "picks the run up again once its lease runs out, or run this command again.",
                returncode=3,
            ) from None
        except KeyboardInterrupt:
            import_run_fail(
                import_run_id=run.pk,
                reason="Stopped by the user before it finished; nothing was imported.",
            )
            raise CommandError("Stopped; nothing was imported.", returncode=130) from None
        if finished is None:
            raise CommandError(f"Import run {run.pk} was taken over by another process.")
        self.summary(finished)

    def load_mapping(self, given: str, schema: str) -> tuple[MappingDocument, Mapping | None]:
        """A saved mapping by name, or a mapping document from a JSON file."""
        saved = Mapping.objects.filter(name=given).first()
        if saved is None and not Path(given).is_file():
            raise CommandError(f"No saved mapping and no file named {given!r}.")
        try:
            data = saved.document if saved is not None else json.loads(Path(given).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"{given} is not a readable JSON file: {exc}") from None
        try:
            return mapping_document_parse(data, schema=schema), saved
        except ApplicationError as exc:
            raise CommandError(exc.message) from None

    def suggest(self, path: Path, options: dict, delimiter: str) -> None:
        """Print the suggested mapping (or the saved one made for this layout) as JSON."""
        schema = options["schema"]
        try:
            with path.open("rb") as raw:
                preview = source_preview(
                    raw,
                    name=path.name,
                    format=options["format"],
                    encoding=options["encoding"],
                    delimiter=delimiter,
                    sheet=options["sheet"],
                    header_row=options["header_row"],
                )
        except FileProblem as problem:
            raise CommandError(problem.message) from None
        saved = mapping_for_header(schema=schema, header=preview.header)
        if saved is not None:
            self.stderr.write(
                f"The saved mapping {saved.name!r} (v{saved.version}) fits this layout."
            )
            document = saved.document
        else:
            document = to_json(suggest_mapping(schema, preview.header, preview.rows))
        self.stdout.write(json.dumps(document, indent=2, ensure_ascii=False))

    def progress(self, p: ImportProgress) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        total = f" / {p.rows_total:,}" if p.rows_total else ""
        percent = ""
        if p.rows_total:
            percent = f" ({min(100, p.rows_read * 100 // max(p.rows_total, 1))}%)"
        self.stdout.write(
            f"  {p.rows_read:,}{total} rows{percent}, {p.bytes_read / 1e6:,.1f} MB, "
            f"{p.rows_read / elapsed:,.0f} rows/s"
        )

    def summary(self, run: ImportRun) -> None:
        elapsed = time.monotonic() - self.started
        self.stdout.write(
            f"{run.get_status_display()} in {elapsed:,.1f} s: {run.rows_read:,} read, "
            f"{run.rows_created:,} created, {run.rows_updated:,} updated, "
            f"{run.rows_unchanged:,} unchanged, {run.rows_invalid:,} staged as invalid, "
            f"{run.rows_bad:,} refused."
        )
        if run.message:
            self.stdout.write(run.message)
        if run.error_report:
            self.stdout.write(f"Error report: {run.error_report.name} (in the file storage)")
        if run.status == ImportRun.Status.FAILED:
            raise CommandError("Nothing was imported.", returncode=2)
        if run.status == ImportRun.Status.PARTIAL:
            raise CommandError(
                "Not every row was staged (refused rows skipped; see the error report).",
                returncode=1,
            )
