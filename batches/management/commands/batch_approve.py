"""`manage.py batch_approve ID --user NAME`: four eyes, the same service as the admin button."""

from django.core.management.base import BaseCommand, CommandError

from batches import services
from batches.management.commands._common import ACTOR_LABEL, get_batch, get_user
from cdpstage.errors import ApplicationError


class Command(BaseCommand):
    help = "Approve a built batch (someone other than its creator, with approve_batch)."

    def add_arguments(self, parser):
        parser.add_argument("batch_id", type=int)
        parser.add_argument("--user", required=True, help="the approver")

    def handle(self, *args, **options):
        user = get_user(options["user"])
        batch = get_batch(options["batch_id"])
        try:
            services.batch_approve(batch=batch, user=user, actor_label=ACTOR_LABEL)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        files = batch.files.count()
        self.stdout.write(
            f"Batch {batch.pk} approved ({files} file(s), {batch.records_total} records)."
        )
