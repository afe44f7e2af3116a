"""Thread-safe board of pending faults, set at start (`--fault`) or via POST /_sandbox/faults."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict
from typing import Any

from cdpsandbox.config import FAULT_TARGETS, FaultSpec


class FaultBoard:
    """Holds queued call faults, forced corruptions, URL lifetime override and record failures."""

    def __init__(self, initial: tuple[FaultSpec, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[list[Any]]] = {}
        self._corrupt_next = 0
        self._corrupt_refs: set[str] = set()
        self._fail_records: dict[str, dict[str, str]] = {}
        self._url_lifetime: int | None = None
        self._url_base: str | None = None
        self.clear()
        for spec in initial:
            self.add(spec)

    def clear(self) -> None:
        """Forget every pending fault (the start-up `--fault` list included)."""
        with self._lock:
            self._queues = {target: deque() for target in FAULT_TARGETS}
            self._corrupt_next = 0
            self._corrupt_refs = set()
            self._fail_records = {}
            self._url_lifetime = None
            self._url_base = None

    def add(self, spec: FaultSpec) -> None:
        """Queue `spec`; faults on one target fire in the order they were added."""
        spec.validate()
        with self._lock:
            self._queues[spec.target].append([spec, spec.count])

    def take(self, target: str) -> FaultSpec | None:
        """Consume one occurrence of the oldest fault queued for `target`, if any."""
        with self._lock:
            queue = self._queues.get(target)
            if not queue:
                return None
            entry = queue[0]
            entry[1] -= 1
            if entry[1] <= 0:
                queue.popleft()
            return entry[0]

    def corrupt_next(self, count: int) -> None:
        """Force the next `count` batches that receive a file to end as `corrupted`."""
        with self._lock:
            self._corrupt_next += count

    def corrupt_ref(self, batch_ref: str) -> None:
        """Force one batch to `corrupted` when its file is (or was) received."""
        with self._lock:
            self._corrupt_refs.add(batch_ref)

    def take_corruption(self, batch_ref: str) -> bool:
        """True when `batch_ref` must be corrupted; consumes the matching order."""
        with self._lock:
            if batch_ref in self._corrupt_refs:
                self._corrupt_refs.discard(batch_ref)
                return True
            if self._corrupt_next > 0:
                self._corrupt_next -= 1
                return True
            return False

    def fail_records(self, failures: dict[str, dict[str, str]]) -> None:
        """Make each record ref fail once with the given `code` and `message`."""
        with self._lock:
            self._fail_records.update(failures)

    def take_record_failure(self, record_ref: str) -> dict[str, str] | None:
        """Return and consume the forced outcome for one record ref."""
        with self._lock:
            return self._fail_records.pop(record_ref, None)

    def set_url_lifetime(self, seconds: int | None) -> None:
        """Override the lifetime of URLs signed from now on; None restores the start value."""
        with self._lock:
            self._url_lifetime = seconds

    def url_lifetime(self, default: int) -> int:
        """The lifetime to use for the next signed URL."""
        with self._lock:
            return default if self._url_lifetime is None else self._url_lifetime

    def set_url_base(self, base: str | None) -> None:
        """Sign the URLs handed out from now on under another origin (a foreign host, another
        port, http://), as a compromised reply would; None restores the sandbox's own."""
        with self._lock:
            self._url_base = base

    def url_base(self, default: str) -> str:
        """The origin of the next signed URL."""
        with self._lock:
            return default if self._url_base is None else self._url_base

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready view of everything pending."""
        with self._lock:
            return {
                "calls": {
                    target: [dict(asdict(spec), remaining=left) for spec, left in queue]
                    for target, queue in self._queues.items()
                },
                "corrupt_next": self._corrupt_next,
                "corrupt_refs": sorted(self._corrupt_refs),
                "fail_records": dict(self._fail_records),
                "url_lifetime": self._url_lifetime,
                "url_base": self._url_base,
            }
