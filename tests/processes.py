"""Real RQ worker processes for integration tests, pointed at the test database and Redis."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def worker_env(**extra: str) -> dict[str, str]:
    """The environment a worker needs to see what the test sees: the test database, same Redis."""
    db = connection.settings_dict
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    auth = quote(db["USER"], safe="") + (
        f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    )
    # The test's own role (the app role): workers never connect as anything else.
    url = f"postgres://{auth}@{host}:{port}/{db['NAME']}"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="cdpstage.settings",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DJANGO_MEDIA_ROOT=str(settings.MEDIA_ROOT),
        RQ_MAINTENANCE_INTERVAL="2",
    )
    env.update(extra)
    return env


def worker_command(queue: str, *, burst: bool) -> list[str]:
    command = [sys.executable, "manage.py", "worker", queue]
    if burst:
        command.append("--burst")
    return command


def run_worker_burst(
    queue: str, *, timeout: float = 240, **env: str
) -> subprocess.CompletedProcess:
    """Run `rqworker --burst` on one queue until the queue is empty; return its output."""
    return subprocess.run(
        worker_command(queue, burst=True),
        cwd=ROOT,
        env=worker_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def running_worker(queue: str, log_path: Path, **env: str) -> Iterator[subprocess.Popen]:
    """A long-running worker (with its scheduler) for the duration of the block."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            worker_command(queue, burst=False),
            cwd=ROOT,
            env=worker_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill takes the horse too
        )
    try:
        yield process
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen, *, sig: int = signal.SIGTERM) -> None:
    """Stop a worker and every process it forked (work horse, scheduler)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
