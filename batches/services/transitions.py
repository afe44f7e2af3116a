"""The only place batch and file statuses change: conditional UPDATE + audit event, one transaction.

A transition names its target; the allowed sources come from the model's transition map.
The UPDATE is conditional on the status read just before (and optionally on the caller's
attempt), so of two racing callers exactly one wins; the loser gets False and must stop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from batches.client import CdpCall
from batches.models import (
    BATCH_TRANSITIONS,
    BATCHFILE_TRANSITIONS,
    Batch,
    BatchEvent,
    BatchFile,
)

__all__ = [
    "batch_event_create",
    "batch_transition",
    "batchfile_transition",
    "cdp_call_recorder",
    "sources_of",
]


def sources_of(transitions: dict[str, frozenset[str]], target: str) -> list[str]:
    """Every status from which `target` may be reached."""
    return [source for source, targets in transitions.items() if target in targets]


def batch_event_create(
    *,
    batch_id: int,
    kind: str,
    file_id: int | None = None,
    actor: AbstractBaseUser | None = None,
    actor_label: str = "",
    from_status: str = "",
    to_status: str = "",
    message: str = "",
    data: dict[str, Any] | None = None,
    method: str = "",
    path: str = "",
    http_status: int | None = None,
    duration_ms: int | None = None,
) -> BatchEvent:
    """Append one audit event (no secrets, no personal data: ids, statuses, codes, counts)."""
    return BatchEvent.objects.create(
        batch_id=batch_id,
        file_id=file_id,
        kind=kind,
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_label=actor_label or ("" if actor is not None else "worker"),
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data or {},
        method=method,
        path=path[:300],
        http_status=http_status,
        duration_ms=duration_ms,
    )


def _move(
    *,
    model: type[Batch] | type[BatchFile],
    transitions: dict[str, frozenset[str]],
    pk: int,
    target: str,
    sources: Iterable[str] | None,
    attempt: int | None,
    where: dict[str, Any] | None,
    fields: dict[str, Any] | None,
) -> str | None:
    """The conditional UPDATE both transitions share; the status moved from, or None if lost."""
    allowed = sources_of(transitions, target)
    if sources is not None:
        wanted = set(sources)
        allowed = [status for status in allowed if status in wanted]
    current = model.objects.filter(pk=pk).values_list("status", flat=True).first()
    if current is None or current not in allowed:
        return None
    rows = model.objects.filter(pk=pk, status=current)
    if attempt is not None:
        rows = rows.filter(attempt=attempt)
    if where:
        rows = rows.filter(**where)
    updated = rows.update(status=target, updated_at=timezone.now(), **(fields or {}))
    return current if updated else None


@transaction.atomic
def batch_transition(
    *,
    batch_id: int,
    target: str,
    sources: Iterable[str] | None = None,
    attempt: int | None = None,
    where: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
    actor_label: str = "",
    message: str = "",
    data: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
) -> bool:
    """Move a batch to `target` if its status allows it; True when this caller won.

    `sources` narrows the map's sources; `attempt` makes the change conditional on the
    caller still owning the work (a job whose attempt was superseded loses); `where` adds
    more conditions. `fields` are set in the same UPDATE.
    """
    current = _move(
        model=Batch,
        transitions=BATCH_TRANSITIONS,
        pk=batch_id,
        target=target,
        sources=sources,
        attempt=attempt,
        where=where,
        fields=fields,
    )
    if current is None:
        return False
    batch_event_create(
        batch_id=batch_id,
        kind=BatchEvent.Kind.TRANSITION,
        actor=actor,
        actor_label=actor_label,
        from_status=current,
        to_status=target,
        message=message,
        data=data,
    )
    return True


@transaction.atomic
def batchfile_transition(
    *,
    file_id: int,
    target: str,
    sources: Iterable[str] | None = None,
    attempt: int | None = None,
    where: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
    actor_label: str = "",
    message: str = "",
    data: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
) -> bool:
    """Move a batch file to `target` if its status allows it; True when this caller won."""
    current = _move(
        model=BatchFile,
        transitions=BATCHFILE_TRANSITIONS,
        pk=file_id,
        target=target,
        sources=sources,
        attempt=attempt,
        where=where,
        fields=fields,
    )
    if current is None:
        return False
    batch_event_create(
        batch_id=BatchFile.objects.values_list("batch_id", flat=True).get(pk=file_id),
        file_id=file_id,
        kind=BatchEvent.Kind.TRANSITION,
        actor=actor,
        actor_label=actor_label,
        from_status=current,
        to_status=target,
        message=message,
        data=data,
    )
    return True


def cdp_call_recorder(batch_id: int, file_id: int) -> Callable[[CdpCall], None]:
    """Record each CDP call as an audit event (committed at once: the call did happen)."""

    def record(call: CdpCall) -> None:
        batch_event_create(
            batch_id=batch_id,
            file_id=file_id,
            kind=BatchEvent.Kind.CDP_CALL,
            actor_label="worker",
            method=call.method,
            path=call.path,
            http_status=call.http_status,
            duration_ms=call.duration_ms,
            message=call.error,
            # Scheme and host too: where the bytes went (the path alone would not say).
            data={"target": call.target, "origin": call.origin},
        )

    return record
