"""Fixtures for the batches tests: ready guests in bulk, the four-eyes users, one sandbox per
session, and a real worker pointed at it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from cdpsandbox.process import SandboxProcess, run_sandbox
from records.models import DeliveryStatus, Guest, ReviewStatus, TrackingEvent
from records.serializing import dump_value, value_hash
from tests.processes import running_worker

APPROVE = "batches.approve_batch"
CREATE = "batches.add_batch"


def guest_value(n: int, *, prefix: str = "g") -> dict[str, Any]:
    """A canonical guest value the sandbox accepts (identified by email)."""
    email = f"{prefix}{n}@example.com"
    return {
        "guestType": "customer",
        "firstName": f"Name{n}",
        "lastName": "Example",
        "email": email,
        "country": "IE",
        "identifiers": [{"provider": "email", "id": email}],
    }


def make_ready_guests(count: int, *, prefix: str = "g", start: int = 0) -> list[Guest]:
    """`count` ready, valid guests with their stored value and hash (bulk, no children).

    The build only reads `cdp_value`, `value_hash`, `identity_key`, `ref` and `mode`, so the
    typed columns are filled only where the admin shows them.
    """
    guests = []
    for n in range(start, start + count):
        value = guest_value(n, prefix=prefix)
        text = dump_value(value)
        guests.append(
            Guest(
                mode="upsert",
                review_status=ReviewStatus.READY,
                identity_key=f"email:{value['email']}",
                email=value["email"],
                first_name=value["firstName"],
                last_name=value["lastName"],
                country="IE",
                cdp_value=text,
                value_hash=value_hash(text),
                delivery_status=DeliveryStatus.NOT_SENT,
            )
        )
    return copy_rows(guests)


def copy_rows(objects: list) -> list:
    """Insert model instances with COPY (bulk_create's client-side binding takes ~1 ms a row
    at this width); returns them with their primary keys."""
    from django.db import connection, models

    model = type(objects[0])
    fields = [f for f in model._meta.concrete_fields if not isinstance(f, models.AutoField)]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {model._meta.db_table} ({columns}) FROM STDIN") as copy:
            for obj in objects:
                copy.write_row(
                    [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
                )
        refs = [obj.ref for obj in objects]
        ids = dict(model.objects.filter(ref__in=refs).values_list("ref", "pk"))
    for obj in objects:
        obj.pk = ids[obj.ref]
        obj._state.adding = False
    return objects


def make_ready_tracking(count: int) -> list[TrackingEvent]:
    """`count` ready tracking events with their stored value."""
    events = []
    for n in range(count):
        value = {
            "serviceIdentifier": "TEST_PROVIDER",
            "occurredAt": "2025-03-07T14:15:00.000Z",
            "channel": "EMAIL",
            "type": "SENT",
            "identifiers": [{"provider": "email", "id": f"t{n}@example.com"}],
        }
        text = dump_value(value)
        events.append(
            TrackingEvent(
                mode="insert",
                review_status=ReviewStatus.READY,
                service_identifier="TEST_PROVIDER",
                channel="EMAIL",
                type="SENT",
                identifiers=value["identifiers"],
                cdp_value=text,
                value_hash=value_hash(text),
            )
        )
    return copy_rows(events)


@pytest.fixture
def stager(user_factory):
    return user_factory("stager", perms=(CREATE, "batches.view_batch"), email="stager@example.com")


@pytest.fixture
def approver(user_factory):
    return user_factory(
        "approver",
        perms=(APPROVE, "batches.view_batch", "batches.change_batch"),
        email="approver@example.com",
    )


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 60, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def cdp_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One HTTPS sandbox process for the whole session (reset by the tests that use it)."""
    state_dir: Path = tmp_path_factory.mktemp("batches-sandbox")
    with run_sandbox(
        state_dir, processing_delay=0.05, identity_providers=["email", "CRM_ID"]
    ) as process:
        yield process


@pytest.fixture
def sandbox(cdp_sandbox: SandboxProcess, settings, monkeypatch) -> SandboxProcess:
    """The session sandbox, reset, with this process's settings pointed at it."""
    cdp_sandbox.control.reset()
    settings.CDP_BASE_URL = cdp_sandbox.base_url
    settings.CDP_CLIENT_KEY = cdp_sandbox.client_key
    settings.CDP_API_TOKEN = cdp_sandbox.api_token
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cdp_sandbox.ca_bundle)
    return cdp_sandbox


def worker_settings(sandbox: SandboxProcess, **extra: str) -> dict[str, str]:
    """Environment of a batches worker talking to the sandbox, with fast polls and leases."""
    env = {
        "CDP_BASE_URL": sandbox.base_url,
        "CDP_CLIENT_KEY": sandbox.client_key,
        "CDP_API_TOKEN": sandbox.api_token,
        "REQUESTS_CA_BUNDLE": sandbox.ca_bundle,
        "CDP_POLL_INTERVALS": "1,1,2",
        "CDP_RETRY_INTERVALS": "1,1,2",
        "CDP_LEASE_SECONDS": "5",
        "CDP_HTTP_TIMEOUT": "10",
        "CDP_MAX_FILE_BYTES": str(django_settings.CDP_MAX_FILE_BYTES),
        "RQ_MAINTENANCE_INTERVAL": "1",
    }
    env.update(extra)
    return env


@pytest.fixture
def _forget_old_jobs() -> None:
    """Forget batch jobs left in Redis by earlier test sessions and killed workers.

    Job ids name rows (`batchfile-1-upload-a1`) and the test database starts its ids again
    every session, so an old job hash would make the new enqueue a duplicate. Also empties
    the started-job registry, which tests/conftest.py's clean_queues cannot (RQ 3 does not
    implement StartedJobRegistry.remove).
    """
    import django_rq
    from rq.scheduler import RQScheduler

    queue = django_rq.get_queue("batches")
    redis = queue.connection
    registries = (
        queue.started_job_registry,
        queue.scheduled_job_registry,
        queue.failed_job_registry,
        queue.finished_job_registry,
    )
    redis.delete(queue.key, f"{queue.key}:intermediate", *(r.key for r in registries))
    # A worker killed by an earlier test keeps the queue's scheduler lock for 61 s, and the
    # next worker then runs no scheduled job (polls) until its maintenance takes the lock over.
    redis.delete(RQScheduler.get_locking_key("batches"))
    for pattern in ("rq:job:batch-*", "rq:job:batchfile-*"):
        for key in redis.scan_iter(match=pattern, count=1000):
            redis.delete(key)


@pytest.fixture
def batches_worker(
    _forget_old_jobs, sandbox, tmp_path, clean_queues
) -> Iterator[Callable[..., Any]]:
    """Start a real `rqworker batches --with-scheduler` against the sandbox: `start(**env)`."""
    stack = []

    def start(**extra: str):
        log_path = tmp_path / f"worker-{len(stack) + 1}.log"
        context = running_worker("batches", log_path, **worker_settings(sandbox, **extra))
        process = context.__enter__()
        stack.append(context)
        process.log_path = log_path
        return process

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)
    # Shown by pytest only when the test failed: what the workers said.
    for log in sorted(tmp_path.glob("worker-*.log")):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-80:])
        sys.stdout.write(f"--- {log.name} (last 80 lines) ---\n{tail}\n")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the RQ work horse leaves its parent's process group)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
