"""Run an RQ worker for one queue with the project's worker options (their one definition)."""

from django.conf import settings
from django.core.management import BaseCommand, call_command

# Short, so a dead worker's job is noticed in about 1.5 min instead of RQ's 13.5
# (docs/design/rq-crash-semantics.md); the leases and reconcilers rely on it.
WORKER_TTL_SECONDS = 30


class Command(BaseCommand):
    help = (
        "Run a worker for one queue (imports or batches) with the scheduler, a 30 s TTL and the "
        "JSON serializer. Start as many as you like on as many hosts as share PostgreSQL and Redis."
    )

    def add_arguments(self, parser):
        parser.add_argument("queue", choices=sorted(settings.RQ_QUEUES))
        parser.add_argument(
            "--burst", action="store_true", help="Stop once the queue is empty (tests, benchmarks)."
        )

    def handle(self, *args, queue: str, burst: bool, **options):
        call_command(
            "rqworker",
            queue,
            with_scheduler=True,
            worker_ttl=WORKER_TTL_SECONDS,
            serializer=settings.RQ_JSON_SERIALIZER,
            burst=burst,
            verbosity=options["verbosity"],
        )
