"""`manage.py records_purge --delivered-before DAYS`: the retention purge, for cron or by hand."""

from django.core.management.base import BaseCommand, CommandError

from records.services.retention import records_purge, retention_cutoff


class Command(BaseCommand):
    help = (
        "Clear the personal data of records whose current value CDP confirmed more than DAYS "
        "days ago (refs, hashes, statuses, outcomes and the audit trail are kept), and delete "
        "the import and batch files of runs and batches that ended before then."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--delivered-before",
            type=int,
            required=True,
            metavar="DAYS",
            help="Purge what was delivered (or ended) more than DAYS days ago; 0 means now.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be purged; change nothing."
        )

    def handle(self, *args, **options):
        try:
            cutoff = retention_cutoff(options["delivered_before"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        result = records_purge(cutoff=cutoff, dry_run=options["dry_run"])
        self.stdout.write(result.summary())
