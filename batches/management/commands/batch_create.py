"""`manage.py batch_create --schema guest --user NAME`: the admin's "Create a batch"."""

from django.core.management.base import BaseCommand, CommandError

from batches import services
from batches.management.commands._common import (
    ACTOR_LABEL,
    DATABASE_ERRORS,
    EXIT_ERROR,
    follow,
    get_user,
)
from batches.models import Batch, BatchSchema
from cdpstage.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Create a batch of the ready records of one schema and build it in the background; "
        "prints the batch id. --wait follows the build until the batch is built."
    )

    def add_arguments(self, parser):
        parser.add_argument("--schema", required=True, choices=BatchSchema.values)
        parser.add_argument("--user", required=True, help="who creates it (cannot approve it)")
        parser.add_argument("--note", default="", help="what the batch is for")
        parser.add_argument(
            "--include-unchanged",
            action="store_true",
            help="a full send: also records CDP already has with exactly their current value "
            "(default: a delta send of new and changed records only)",
        )
        parser.add_argument("--wait", action="store_true", help="wait until it is built")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait")

    def handle(self, *args, **options):
        try:
            self._create(options)
        except DATABASE_ERRORS as exc:
            raise CommandError(
                f"The database is unreachable ({type(exc).__name__}); run the command again "
                "once it is back (a batch already printed above carries on in the background).",
                returncode=EXIT_ERROR,
            ) from None

    def _create(self, options) -> None:
        user = get_user(options["user"])
        try:
            batch = services.batch_create(
                schema=options["schema"],
                user=user,
                note=options["note"],
                actor_label=ACTOR_LABEL,
                include_unchanged=options["include_unchanged"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(str(batch.pk))
        if options["wait"]:
            batch = follow(
                batch,
                until=lambda b: b.status not in (Batch.Status.DRAFT, Batch.Status.BUILDING),
                timeout=options["timeout"],
                report=self.stderr.write,
            )
            if batch.status != Batch.Status.BUILT:
                raise CommandError(f"Batch {batch.pk} was not built: {batch.message}")
