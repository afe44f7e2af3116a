"""`manage.py records_mark_ready`: the admin's "Mark ready" action for automation and cron."""

from collections.abc import Iterator

from django.core.management.base import BaseCommand, CommandError

from cdpstage.commandline import get_user
from cdpstage.errors import ApplicationError
from records.models import (
    Guest,
    GuestMigration,
    ImportRun,
    Order,
    ReviewStatus,
    Schema,
    TrackingEvent,
)
from records.services.review import records_mark_ready

# One service call (one transaction) per chunk: at 1M records a single UPDATE holds its row
# locks for minutes (measured 7,000-12,000 rows/s here, each update touching every index),
# blocking batch builds; chunks keep each transaction short and show progress.
CHUNK_ROWS = 10_000
PROGRESS_EVERY = 100_000


def _chunks(queryset, size: int) -> Iterator[list[int]]:
    """Primary keys of the queryset in ascending chunks (keyset pagination, no OFFSET)."""
    last = 0
    while True:
        ids = list(queryset.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return
        yield ids
        last = ids[-1]


MODELS = {
    Schema.GUEST.value: Guest,
    Schema.TRACKING.value: TrackingEvent,
    Schema.ORDER.value: Order,
    Schema.MIGRATION.value: GuestMigration,
}
# Import runs whose rows end up on the schema's records (child files update their guests).
RUN_SCHEMAS = {
    Schema.GUEST.value: {Schema.GUEST, Schema.SUBSCRIPTION, Schema.EXTENSION},
    Schema.TRACKING.value: {Schema.TRACKING},
    Schema.ORDER.value: {Schema.ORDER},
    Schema.MIGRATION.value: {Schema.MIGRATION},
}


class Command(BaseCommand):
    help = (
        "Mark valid staged records ready for a batch, as the admin action does. Invalid "
        "records and records in a live batch are skipped and counted; held records stay held "
        "unless --include-held is given."
    )

    def add_arguments(self, parser):
        parser.add_argument("--schema", required=True, choices=sorted(MODELS))
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--all-valid", action="store_true", help="Every valid record of the schema."
        )
        which.add_argument(
            "--import-run", type=int, metavar="ID", help="The records of one import run."
        )
        parser.add_argument(
            "--user",
            required=True,
            metavar="NAME",
            help="Who does it (recorded in the log); needs the change permission on the records.",
        )
        parser.add_argument(
            "--include-held",
            action="store_true",
            help="Also mark ready records a reviewer has held back.",
        )

    def handle(self, *args, **options):
        schema = options["schema"]
        model = MODELS[schema]
        user = get_user(options["user"])
        queryset = model.objects.all()
        if options["import_run"] is not None:
            queryset = queryset.filter(import_run=self._import_run(options["import_run"], schema))
        else:
            # Valid and not yet reviewed (records already ready need nothing).
            queryset = queryset.filter(review_status__in=[ReviewStatus.NEW, ReviewStatus.HELD])
        held = 0
        if not options["include_held"]:
            held = queryset.filter(review_status=ReviewStatus.HELD).count()
            queryset = queryset.exclude(review_status=ReviewStatus.HELD)
        noun = str(model._meta.verbose_name_plural)
        next_report = PROGRESS_EVERY
        try:
            # An empty first call checks the user's permission even when nothing matches.
            result = records_mark_ready(model=model, ids=[], user=user)
            for ids in _chunks(queryset, CHUNK_ROWS):
                result += records_mark_ready(model=model, ids=ids, user=user)
                if result.selected >= next_report:
                    next_report += PROGRESS_EVERY
                    self.stdout.write(f"... {result.selected} {noun} looked at")
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(result.message(singular=str(model._meta.verbose_name), plural=noun))
        if held:
            self.stdout.write(
                f"{held} held records left held (use --include-held to include them)."
            )

    def _import_run(self, run_id: int, schema: str) -> ImportRun:
        try:
            run = ImportRun.objects.get(pk=run_id)
        except ImportRun.DoesNotExist:
            raise CommandError(f"There is no import run {run_id}.") from None
        if run.schema not in RUN_SCHEMAS[schema]:
            raise CommandError(
                f"Import run {run_id} imported {run.get_schema_display().lower()}, "
                f"not the {schema} schema."
            )
        return run
