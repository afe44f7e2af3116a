"""`manage.py batch_status ID [--json]`: where a batch stands, file by file (no personal data)."""

import json

from django.core.management.base import BaseCommand

from batches.management.commands._common import get_batch
from batches.selectors import batch_detail
from batches.services.allowance import LIMITED_SCHEMAS, allowance_summary


class Command(BaseCommand):
    help = "Show a batch's status, progress, outcome counts and files."

    def add_arguments(self, parser):
        parser.add_argument("batch_id", type=int)
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, **options):
        detail = batch_detail(get_batch(options["batch_id"]))
        if options["json"]:
            self.stdout.write(json.dumps(detail, indent=2, default=str))
            return
        progress = detail["progress"]
        counts = progress["counts"]
        self.stdout.write(
            f"Batch {detail['id']} ({detail['schema']}): {detail['status']}"
            + (f", {counts}" if counts else "")
        )
        self.stdout.write(
            f"Created by {detail['created_by']}, approved by {detail['approved_by'] or '-'}; "
            f"{detail['records']} records: {detail['delivered']} delivered, "
            f"{detail['rejected']} rejected, {detail['not_delivered']} not delivered"
            + (f", {detail['unconfirmed']} of unknown outcome." if detail["unconfirmed"] else ".")
        )
        if detail["message"]:
            self.stdout.write(detail["message"])
        if detail["schema"] in LIMITED_SCHEMAS:
            self.stdout.write(allowance_summary())
        for note in detail["waiting"]:
            self.stdout.write(note)
        for f in detail["files"]:
            self.stdout.write(
                f"  file {f['sequence']} ref {f['batch_ref']}: {f['status']}"
                f" ({f['remote_status'] or '-'}), {f['records']} records, {f['size']} bytes,"
                f" md5 {f['md5']}{' - ' + f['message'] if f['message'] else ''}"
            )
