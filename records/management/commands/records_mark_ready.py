"""`manage.py records_mark_ready`: the admin's "Mark ready" action for automation and cron."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cdpstage.errors import ApplicationError
from records.models import Guest, ImportRun, ReviewStatus, Schema, TrackingEvent
from records.services import records_mark_ready

MODELS = {Schema.GUEST.value: Guest, Schema.TRACKING.value: TrackingEvent}
# Import runs whose rows end up on the schema's records (child files update their guests).
RUN_SCHEMAS = {
    Schema.GUEST.value: {Schema.GUEST, Schema.SUBSCRIPTION, Schema.EXTENSION},
    Schema.TRACKING.value: {Schema.TRACKING},
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
        user = self._user(options["user"])
        queryset = model.objects.all()
        if options["import_run"] is not None:
            queryset = queryset.filter(import_run=self._import_run(options["import_run"], schema))
        else:
            queryset = queryset.exclude(review_status=ReviewStatus.INVALID)
        held = 0
        if not options["include_held"]:
            held = queryset.filter(review_status=ReviewStatus.HELD).count()
            queryset = queryset.exclude(review_status=ReviewStatus.HELD)
        try:
            result = records_mark_ready(model=model, queryset=queryset, user=user)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(result.message(str(model._meta.verbose_name_plural)))
        if held:
            self.stdout.write(
                f"{held} held records left held (use --include-held to include them)."
            )

    def _user(self, name: str):
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: name})
        except user_model.DoesNotExist:
            raise CommandError(f"There is no user named {name!r}.") from None
        if not user.is_active:
            raise CommandError(f"The user {name!r} is inactive.")
        return user

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
