"""`manage.py batch_fetch_log ID [--user NAME]`: fetch CDP's error log again for the files of a
batch whose log could not be fetched, and give their records the outcomes it names."""

from django.core.management.base import BaseCommand, CommandError

from batches import services
from batches.management.commands._common import ACTOR_LABEL, get_batch, get_user
from batches.models import BatchFile
from cdpstage.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Fetch CDP's error log again for each file of the batch whose log could not be "
        "fetched (outcomes unknown); prints each file's new summary."
    )

    def add_arguments(self, parser):
        parser.add_argument("batch_id", type=int)
        parser.add_argument("--user", help="recorded in the audit trail as who asked")

    def handle(self, *args, **options):
        batch = get_batch(options["batch_id"])
        user = get_user(options["user"]) if options["user"] else None
        files = list(
            BatchFile.objects.select_related("batch")
            .filter(batch=batch, status=BatchFile.Status.LOG_UNAVAILABLE)
            .order_by("sequence")
        )
        if not files:
            raise CommandError(f"Batch {batch.pk} has no file whose error log is missing.")
        problems = []
        for batch_file in files:
            try:
                summary = services.batchfile_log_fetch(
                    batch_file=batch_file, user=user, actor_label=ACTOR_LABEL
                )
            except ApplicationError as exc:
                problems.append(exc.message)
                self.stderr.write(exc.message)
            else:
                self.stdout.write(f"File {batch_file.sequence}: {summary}")
        if problems:
            raise CommandError(
                f"{len(problems)} of {len(files)} error log(s) could not be fetched; "
                "try again later."
            )
