"""In-memory batches and request log, guarded by one re-entrant lock."""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cdpsandbox.signing import BUCKET_PREFIX

# §1.4 status values. `file_uploaded` is only shown by the inspect endpoints.
UPLOADING = "uploading"
FILE_UPLOADED = "file_uploaded"
PROCESSING = "processing"
SUCCESS = "success"
ERROR = "error"
CORRUPTED = "corrupted"
STATUSES = (UPLOADING, FILE_UPLOADED, PROCESSING, SUCCESS, ERROR, CORRUPTED)
TERMINAL = frozenset({SUCCESS, ERROR, CORRUPTED})

# Parsed records kept per batch for inspection; a 50 MB file can hold millions of lines.
MAX_RECORDS_KEPT = 10_000
REQUEST_LOG_SIZE = 5_000


def iso_ms(epoch: float) -> str:
    """ISO-8601 UTC with milliseconds, the format of the inspect list (S-INSPECT)."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Batch:
    """One allocated batch: what was declared, what arrived, what processing made of it."""

    ref: str
    checksum: str
    size: int
    created_at: float
    modified_at: float
    object_prefix: str
    location_url: str = ""
    location_expires: int = 0
    status: str = UPLOADING
    allocate_count: int = 1
    upload_count: int = 0
    received_checksum: str | None = None
    received_size: int | None = None
    upload_headers: dict[str, str] | None = None
    upload_attempts: list[dict[str, Any]] = field(default_factory=list)
    body: bytes | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    records_truncated: bool = False
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, int] | None = None
    log_bytes: bytes | None = None
    note: str | None = None

    @property
    def upload_path(self) -> str:
        """Unsigned path of the S3 object the client uploads to."""
        return f"{self.object_prefix}/{self.ref}/import.gz"

    @property
    def log_path(self) -> str:
        """Unsigned path of the gzipped error log (S-LOG: a pre-signed S3 GET)."""
        return f"{self.object_prefix}/{self.ref}/log/import.gz"

    def touch(self, status: str | None = None) -> None:
        """Record a change; `modifiedAt` moves with every status change."""
        if status is not None:
            self.status = status
        self.modified_at = time.time()

    def inspection(self, *, full: bool) -> dict[str, Any]:
        """JSON for GET /_sandbox/batches[/{ref}] (`full` adds records and outcomes)."""
        data: dict[str, Any] = {
            "ref": self.ref,
            "status": self.status,
            "declared_checksum": self.checksum,
            "declared_size": self.size,
            "received_checksum": self.received_checksum,
            "received_size": self.received_size,
            "allocate_count": self.allocate_count,
            "upload_count": self.upload_count,
            "created_at": iso_ms(self.created_at),
            "modified_at": iso_ms(self.modified_at),
            "stats": self.stats,
            "note": self.note,
            "record_count": len(self.records),
            "failed_count": sum(1 for o in self.outcomes if not str(o["code"]).startswith("2")),
        }
        if full:
            data["upload_headers"] = self.upload_headers
            data["upload_attempts"] = self.upload_attempts
            data["records"] = self.records
            data["records_truncated"] = self.records_truncated
            data["outcomes"] = self.outcomes
            data["warnings"] = self.warnings
            data["has_log"] = self.log_bytes is not None
        return data


class AllocationConflictError(Exception):
    """A batch ref was re-allocated with a different checksum or size (BX15: 409)."""


class BatchStore:
    """All batches by ref; callers hold `lock` while reading or changing a Batch."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._batches: dict[str, Batch] = {}

    def clear(self) -> None:
        """Forget every batch."""
        with self.lock:
            self._batches.clear()

    def allocate(self, ref: str, checksum: str, size: int) -> tuple[Batch, bool]:
        """Create the batch, or return the existing identical one; (batch, created)."""
        with self.lock:
            batch = self._batches.get(ref)
            if batch is not None:
                if batch.checksum != checksum or batch.size != size:
                    raise AllocationConflictError(ref)
                batch.allocate_count += 1
                return batch, False
            now = time.time()
            batch = Batch(
                ref=ref,
                checksum=checksum,
                size=size,
                created_at=now,
                modified_at=now,
                # S-ALLOC shows a random path segment before the batch ref.
                object_prefix=f"{BUCKET_PREFIX}/{secrets.token_hex(8)}",
            )
            self._batches[ref] = batch
            return batch, True

    def get(self, ref: str) -> Batch | None:
        """The batch with this ref, or None (hold `lock` while using it)."""
        with self.lock:
            return self._batches.get(ref)

    def all(self) -> list[Batch]:
        """Every batch, newest first."""
        with self.lock:
            return sorted(self._batches.values(), key=lambda b: b.created_at, reverse=True)


class RequestLog:
    """Bounded log of API and S3 requests (no query strings, no secrets, no bodies)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    def add(self, entry: dict[str, Any]) -> None:
        """Append one entry."""
        with self._lock:
            self._entries.append(entry)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def entries(self) -> list[dict[str, Any]]:
        """A copy, oldest first."""
        with self._lock:
            return list(self._entries)
