"""The flow's bulk statements keep linear plans when the statistics are stale.

The case of issue 11: statistics taken while no record was in a batch, then a 20,000-record
batch out of a 200,000-row table. Each bulk statement of the flow (selection, error-log
outcomes, record outcomes, release, re-send selection) is explained just before it runs, as
PostgreSQL plans it then, and once more with hash and merge joins forbidden (the planner's
worst choice): every nested loop must probe an index on its inner side, never re-scan a
relation per outer row ("Rows Removed by Join Filter: 399,980,000" was the quadratic one).
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone

from batches import services
from batches.models import Batch, BatchItem
from batches.services import building, outcomes
from cdpstage.dbroles import table_analyze
from records.models import Guest, ReviewStatus
from records.services import lifecycle
from tests.batches.conftest import make_ready_guests

pytestmark = pytest.mark.django_db(transaction=True)

TABLE_ROWS = 200_000
BATCH_ROWS = 20_000
REJECTED = 1_000

# Statements of the flow, by how they begin.
WATCHED = {
    "selection": "INSERT INTO records_batchmembership",
    "re-send candidates": "INSERT INTO batch_candidates",
    "error log": "UPDATE batches_batchitem i SET outcome",
    "record outcomes": "UPDATE records_guest t SET delivery_status",
    "release": "UPDATE records_batchmembership SET live",
}
# Inner sides of a nested loop that look rows up instead of scanning.
PROBES = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}
# Outer sides of a handful of constant rows.
CONSTANT = {"Result", "Values Scan"}


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch):
    """No Redis: this test runs the jobs itself."""
    monkeypatch.setattr(
        "batches.services.scheduling.enqueue_after_commit", lambda *args, **kw: None
    )


def _stale_table() -> None:
    """TABLE_ROWS guests, none ready, analysed; then BATCH_ROWS of them made ready unseen."""
    (template,) = make_ready_guests(1, prefix="template")
    columns = [
        f.column for f in Guest._meta.concrete_fields if f.column not in {"id", "ref", "email"}
    ]
    copied = ", ".join(c if c != "identity_key" else "'email:t' || n || '@example.com'"
                       for c in columns)  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO records_guest (ref, email, {', '.join(columns)})"
            f" SELECT gen_random_uuid(), 't' || n || '@example.com', {copied}"
            " FROM records_guest, generate_series(1, %s) AS n WHERE id = %s",
            [TABLE_ROWS - 1, template.pk],
        )
        cursor.execute("UPDATE records_guest SET review_status = %s", [ReviewStatus.NEW])
        # Earlier batches, all ended: what the membership table holds when nothing is live.
        cursor.execute(
            "INSERT INTO records_batchmembership (batch_id, kind, record_id, live)"
            " SELECT 0, 'guest', id, false FROM records_guest ORDER BY id LIMIT %s",
            [TABLE_ROWS - BATCH_ROWS],
        )
        for table in ("records_guest", "records_batchmembership", "batches_batchitem"):
            table_analyze(cursor, table)
        # After the statistics: what a reviewer's bulk action does, and nobody analyses.
        cursor.execute(
            "UPDATE records_guest SET review_status = %s"
            " WHERE id IN (SELECT id FROM records_guest ORDER BY id DESC LIMIT %s)",
            [ReviewStatus.READY, BATCH_ROWS],
        )


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child)


def _looked_up(node: dict[str, Any]) -> bool:
    """An index probe, possibly behind a Limit or Memoize."""
    while node["Node Type"] in {"Limit", "Memoize"}:
        (node,) = node["Plans"]
    return node["Node Type"] in PROBES


def _linear_problems(plan: dict[str, Any]) -> list[str]:
    problems = []
    for node in _nodes(plan):
        # A correlated subquery runs once per outer row: it must be a probe too.
        if node.get("Parent Relationship") == "SubPlan" and not _looked_up(node):
            problems.append(f"subquery per row runs {node['Node Type']}")
    for loop in (node for node in _nodes(plan) if node["Node Type"] == "Nested Loop"):
        outer, inner = loop["Plans"]
        if outer["Node Type"] in CONSTANT:
            continue
        if not _looked_up(inner) or "Join Filter" in loop:
            problems.append(
                f"nested loop over {outer['Node Type']} re-runs {inner['Node Type']}"
                f" ({loop.get('Join Filter', 'no join filter')})"
            )
    return problems


def _explain(cursor: Any, sql: str, params: Any) -> dict[str, Any]:
    cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
    plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return plan[0]["Plan"]


@contextmanager
def _plans_checked(found: dict[str, list[str]]) -> Iterator[None]:
    """Explain each watched statement before it runs, as planned and with the planner's
    hash and merge joins off; collect what is not linear."""

    def explain_first(execute, sql, params, many, context):
        name = next((n for n, start in WATCHED.items() if sql.lstrip().startswith(start)), None)
        if name is not None:
            cursor = context["cursor"]
            problems = _linear_problems(_explain(cursor, sql, params))
            cursor.execute("SET enable_hashjoin = off")
            cursor.execute("SET enable_mergejoin = off")
            try:
                problems += _linear_problems(_explain(cursor, sql, params))
            finally:
                cursor.execute("RESET enable_hashjoin")
                cursor.execute("RESET enable_mergejoin")
            found.setdefault(name, []).extend(problems)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(explain_first):
        yield


def _error_log(batch_file_id: int) -> str:
    """CDP's log for the file: REJECTED records refused with a 5xx, so they may be re-sent."""
    refs = BatchItem.objects.filter(file_id=batch_file_id).order_by("line")
    lines = [
        orjson.dumps({"ref": str(ref), "code": "503", "message": "Try again."})
        for ref in refs.values_list("record_ref", flat=True)[:REJECTED]
    ]
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as log:
        log.write(b"\n".join(lines) + b"\n")
    return default_storage.save("tests/linear-plans.log.gz", ContentFile(buffer.getvalue()))


def test_bulk_statements_stay_linear_with_stale_statistics(stager):
    _stale_table()
    found: dict[str, list[str]] = {}
    with _plans_checked(found):
        batch = services.batch_create(schema="guest", user=stager)
        batch.refresh_from_db()
        services.batch_build(batch_id=batch.pk, attempt=batch.attempt)
        batch.refresh_from_db()
        assert batch.records_total == BATCH_ROWS
        (batch_file,) = batch.files.all()
        # Sent (outcomes are written only for a batch that was: batches migration 0011).
        Batch.objects.filter(pk=batch.pk).update(status="processing", sent_at=timezone.now())
        with transaction.atomic():
            outcomes.apply_error_log(batch_file, _error_log(batch_file.pk))
            outcomes.apply_record_outcomes(batch_file)
        building.records_release(batch_id=batch.pk, schema="guest")
        spec = building.SCHEMAS["guest"]
        resent = lifecycle.records_lock(
            model=Guest,
            batch_id=batch.pk + 1,
            among=building._resend_candidates(spec, batch.pk, False),
        )
    assert set(found) == set(WATCHED), "every statement of the flow was explained"
    assert {name: problems for name, problems in found.items() if problems} == {}
    # And they did their work: outcomes written, records released, the rejected re-taken.
    assert Guest.objects.filter(delivery_status="delivered").count() == BATCH_ROWS - REJECTED
    assert Guest.objects.filter(delivery_status="rejected").count() == REJECTED
    assert resent == REJECTED
