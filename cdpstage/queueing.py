"""The one way jobs are enqueued: after commit, by dotted path, ids only, deterministic job id."""

import logging
import time
from collections.abc import Callable
from datetime import timedelta

import django_rq
from django.db import connections, transaction
from django.db.utils import InterfaceError, OperationalError
from rq import Callback
from rq.exceptions import DuplicateJobError

logger = logging.getLogger(__name__)


def enqueue_after_commit(
    queue_name: str,
    func_path: str,
    *args: int | str,
    job_id: str,
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


# A failure callback's database work is retried this often when the connection is down.
CALLBACK_ATTEMPTS = 5


def run_failure_callback(action: Callable[[], None], *, job_id: str) -> None:
    """Run an on_failure callback's database work on a fresh connection, retrying blips.

    The job often failed *because* the database dropped its connection; that dead connection
    is still the thread's, so the callback reconnects first (closing makes Django open a new
    one), and tries again a few times while the database comes back. Otherwise the row would
    wait out its whole lease instead of its short back-off. The connection is closed at the
    end: the callback may run in the worker's main process, whose socket must not leak into
    the next fork.
    """
    try:
        for attempt in range(1, CALLBACK_ATTEMPTS + 1):
            connections.close_all()
            try:
                action()
                return
            except (OperationalError, InterfaceError):
                if attempt == CALLBACK_ATTEMPTS:
                    logger.exception(
                        "Failure callback of job %s gave up: no database; the reconciler "
                        "will pick the work up when its lease runs out",
                        job_id,
                    )
                    return
                logger.warning("Failure callback of job %s: database unavailable, retrying", job_id)
                time.sleep(attempt)
    finally:
        connections.close_all()
