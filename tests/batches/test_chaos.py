"""Crash test: SIGKILL a random worker at random moments during import → build → send.

Bounded in `make test` (CHAOS_KILLS, default 3); `make chaos` runs it longer and prints the
figures (kills survived, time to resume after each kill by step, duplicates). After the run,
the sandbox's inspection endpoint must show every record accepted exactly once under one
processed ref per file, and every import row staged once.
"""

from __future__ import annotations

import csv
import io
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from django.core.files.base import ContentFile
from django.db import connections

from batches import services
from batches.models import BATCHFILE_IN_FLIGHT_STATUSES, Batch, BatchFile
from records.models import Guest, ImportRun
from records.services.imports import import_run_create
from records.services.review import records_mark_ready
from tests.batches.conftest import descendants, wait_for, worker_settings
from tests.processes import running_worker, stop_process_group

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

KILLS = int(os.environ.get("CHAOS_KILLS", "3"))
ROWS = int(os.environ.get("CHAOS_ROWS", "2000"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.randrange(1_000_000))))
LEASE_SECONDS = 6


def _guests_csv(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["identifiers.0.provider", "identifiers.0.id", "email", "firstName"])
    for i in range(rows):
        writer.writerow(["email", f"c{i}@example.com", f"c{i}@example.com", f"name{i}"])
    return out.getvalue().encode()


def _active_rows() -> dict[tuple[str, int], tuple[int, str]]:
    """The work rows being worked on now, with attempt and status: what a kill can interrupt."""
    rows: dict[tuple[str, int], tuple[int, str]] = {}
    for pk, attempt in ImportRun.objects.filter(status="running").values_list("pk", "attempt"):
        rows[("import", pk)] = (attempt, "running")
    for pk, status, attempt in Batch.objects.filter(status__in=("draft", "building")).values_list(
        "pk", "status", "attempt"
    ):
        rows[("build", pk)] = (attempt, status)
    for pk, status, attempt in BatchFile.objects.filter(
        status__in=(*BATCHFILE_IN_FLIGHT_STATUSES, "pending"), dispatched_at__isnull=False
    ).values_list("pk", "status", "attempt"):
        step = {"pending": "allocate", "allocated": "upload"}.get(status, "poll")
        rows[(step, pk)] = (attempt, status)
    return rows


def _moved_on(kind: str, pk: int, seen: tuple[int, str]) -> bool:
    """A later attempt took the row, or its status moved: the work goes on."""
    model = {"import": ImportRun, "build": Batch}.get(kind, BatchFile)
    row = model.objects.filter(pk=pk).values("attempt", "status").first()
    return row is None or row["attempt"] > seen[0] or row["status"] != seen[1]


@dataclass
class Chaos:
    """Kills workers from a thread while the test drives the flow; records what happened."""

    workers: dict[str, object]
    restart: object
    rng: random.Random
    kills: list[dict] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            while len(self.kills) < KILLS and not self.stop.wait(self.rng.uniform(0.5, 3.0)):
                active = _active_rows()
                if not active:
                    continue
                queue = self.rng.choice(sorted(self.workers))
                process = self.workers[queue]
                for pid in descendants(process.pid):
                    os.kill(pid, signal.SIGKILL)
                os.killpg(process.pid, signal.SIGKILL)
                stop_process_group(process)
                killed_at = time.monotonic()
                self.workers[queue] = self.restart(queue)
                self.kills.append(
                    {"queue": queue, "active": active, "at": killed_at, "resumed": {}}
                )
                self._time_resumes(self.kills[-1])
        finally:
            connections.close_all()

    def _time_resumes(self, kill: dict) -> None:
        """Wait (bounded) until every row the kill interrupted moved on; note how long."""
        deadline = kill["at"] + 120
        pending = dict(kill["active"])
        while pending and time.monotonic() < deadline and not self.stop.is_set():
            for (kind, pk), seen in list(pending.items()):
                if _moved_on(kind, pk, seen):
                    kill["resumed"][f"{kind} {pk}"] = round(time.monotonic() - kill["at"], 1)
                    del pending[(kind, pk)]
            time.sleep(0.5)


def _report(chaos: Chaos, duplicates: int, elapsed: float) -> None:
    by_step: dict[str, list[float]] = {}
    for kill in chaos.kills:
        for name, seconds in kill["resumed"].items():
            by_step.setdefault(name.split()[0], []).append(seconds)
    lines = [
        f"chaos: seed {SEED}, {len(chaos.kills)} kills survived, {ROWS} rows, "
        f"{elapsed:.0f} s, duplicates at CDP {duplicates}",
        *(
            f"chaos: {step}: resumed after max {max(times):.1f} s "
            f"(mean {sum(times) / len(times):.1f} s, {len(times)} interruptions)"
            for step, times in sorted(by_step.items())
        ),
    ]
    sys.stdout.write("\n".join(lines) + "\n")


@pytest.mark.timeout(900)
@pytest.mark.usefixtures("_forget_old_jobs", "clean_queues")
def test_random_worker_kills_lose_nothing_and_send_nothing_twice(
    sandbox, stager, approver, user_factory, tmp_path, settings, capsys
):
    settings.CDP_MAX_FILE_BYTES = 8_000
    env = worker_settings(
        sandbox,
        CDP_MAX_FILE_BYTES="8000",
        CDP_LEASE_SECONDS=str(LEASE_SECONDS),
        CDP_MAX_ATTEMPTS="50",
        RQ_MAINTENANCE_INTERVAL="1",
    )
    contexts = []

    def start(queue: str):
        context = running_worker(queue, tmp_path / f"{queue}-{len(contexts)}.log", **env)
        contexts.append(context)
        return context.__enter__()

    rng = random.Random(SEED)
    chaos = Chaos(workers={q: start(q) for q in ("imports", "batches")}, restart=start, rng=rng)
    killer = threading.Thread(target=chaos.run, name="chaos", daemon=True)
    started = time.monotonic()
    killer.start()
    try:
        run = import_run_create(
            uploaded_file=ContentFile(_guests_csv(ROWS), name="chaos.csv"),
            schema="guest",
            user=stager,
        )
        wait_for(
            lambda: ImportRun.objects.get(pk=run.pk).is_finished, timeout=300, what="the import"
        )
        run.refresh_from_db()
        assert run.status == ImportRun.Status.SUCCEEDED, run.message
        reviewer = user_factory("reviewer", perms=("records.view_guest", "records.review_guest"))
        records_mark_ready(model=Guest, queryset=Guest.objects.all(), user=reviewer)
        batch = services.batch_create(schema="guest", user=stager)
        wait_for(
            lambda: Batch.objects.get(pk=batch.pk).status not in ("draft", "building"),
            timeout=300,
            what="the build",
        )
        batch.refresh_from_db()
        assert batch.status == Batch.Status.BUILT, batch.message
        services.batch_approve(batch=batch, user=approver)
        services.batch_send(batch=batch, user=approver)
        wait_for(lambda: Batch.objects.get(pk=batch.pk).is_finished, timeout=600, what="the send")
        batch.refresh_from_db()
    finally:
        chaos.stop.set()
        killer.join(timeout=130)
        for context in reversed(contexts):
            context.__exit__(None, None, None)
    elapsed = time.monotonic() - started

    # Every import row staged once.
    assert Guest.objects.count() == ROWS
    assert batch.status == Batch.Status.SUCCEEDED, batch.message
    # At CDP: every record accepted exactly once, each file processed under one ref.
    accepted: Counter = Counter()
    processed: Counter = Counter()
    for batch_file in BatchFile.objects.filter(batch=batch):
        try:
            seen = sandbox.control.batch(str(batch_file.batch_ref))
        except Exception:  # the ref never reached CDP
            continue
        if seen["status"] in ("success", "error"):
            processed[batch_file.sequence] += 1
            accepted.update(o["ref"] for o in seen["outcomes"] if str(o["code"]).startswith("2"))
    duplicates = sum(count - 1 for count in accepted.values())
    with capsys.disabled():
        _report(chaos, duplicates, elapsed)
    assert set(accepted) == {str(ref) for ref in Guest.objects.values_list("ref", flat=True)}
    assert duplicates == 0
    assert set(processed.values()) == {1}
    assert len(processed) == batch.file_count
    assert chaos.kills, "the flow ended before any worker was killed"
    for kill in chaos.kills:
        assert len(kill["resumed"]) == len(kill["active"]), f"not resumed: {kill}"
        for name, seconds in kill["resumed"].items():
            assert seconds <= 60, f"{name} resumed only after {seconds} s"
