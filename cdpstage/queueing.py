"""The one way jobs are enqueued: after commit, by dotted path, ids only, deterministic job id."""

import logging
from datetime import timedelta

import django_rq
from django.db import transaction
from rq import Callback, Retry
from rq.exceptions import DuplicateJobError

logger = logging.getLogger(__name__)


def enqueue_after_commit(
    queue_name: str,
    func_path: str,
    *args: int | str,
    job_id: str,
    retry: Retry | None = None,
    delay_seconds: float = 0,
    on_failure: str | None = None,
) -> None:
    """Enqueue `func_path(*args)` once the surrounding transaction commits.

    The job id names the unit of work and its attempt (`importrun-7-a1`), and `unique=True`
    makes a racing second enqueue of the same attempt a no-op. A Redis failure after the commit
    is logged, not raised: the row is committed and the reconciler will enqueue it again.
    """

    def push() -> None:
        queue = django_rq.get_queue(queue_name)
        kwargs = {
            "job_id": job_id,
            "retry": retry,
            "unique": True,
            "on_failure": Callback(on_failure) if on_failure else None,
        }
        try:
            if delay_seconds > 0:
                queue.enqueue_in(timedelta(seconds=delay_seconds), func_path, *args, **kwargs)
            else:
                queue.enqueue(func_path, *args, **kwargs)
        except DuplicateJobError:
            logger.info("Job %s is already queued", job_id)
        except Exception:
            logger.exception("Could not enqueue job %s; the reconciler will retry", job_id)

    transaction.on_commit(push)
