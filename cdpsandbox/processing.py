"""Asynchronous batch processing after an upload: gunzip, parse JSON lines, validate, apply, log.

Status walk (§1.4): `uploading` → `file_uploaded` (inspect only) → `processing` → `success`
| `error`; or `uploading` → `corrupted` when the received MD5/size differ from the declared ones.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdpsandbox.config import SandboxConfig
from cdpsandbox.faults import FaultBoard
from cdpsandbox.profiles import ProfileStore
from cdpsandbox.store import (
    CORRUPTED,
    ERROR,
    FILE_UPLOADED,
    MAX_RECORDS_KEPT,
    PROCESSING,
    SUCCESS,
    Batch,
    BatchStore,
)
from cdpsandbox.validation import (
    PARSE_FAILED,
    Envelope,
    Rejected,
    check_envelope,
    check_guest,
    check_migration,
    check_order,
    check_tracking,
    invalid,
    log_ref,
)

logger = logging.getLogger("cdpsandbox.processing")

# Decompressed bytes we are willing to hold: 50 MB of gzip can inflate a lot (gzip bombs).
MAX_DECOMPRESSED = 256 * 1024 * 1024
# S-GDEL / S-ODEL document per-record 200 results for deletes, so they appear in the log.
MODES_LOGGED_ON_SUCCESS = frozenset({"delete", "gdpr_delete"})

Operation = Callable[[], tuple[str, str]]


class FileRejectedError(Exception):
    """The file as a whole cannot be processed: the batch ends `error` with no log (S-STATUS)."""


def gunzip(body: bytes, limit: int = MAX_DECOMPRESSED) -> bytes:
    """Decompress all gzip members of `body`, refusing non-gzip, zip, tar and oversize input."""
    if body[:4] == b"PK\x03\x04":
        raise FileRejectedError("zip archives are not supported, only .gz (S-FORMAT)")
    if body[:2] != b"\x1f\x8b":
        raise FileRejectedError("the file is not gzip-compressed")
    out = bytearray()
    data = body
    try:
        while data:
            inflater = zlib.decompressobj(wbits=31)
            pending = data
            while True:
                chunk = inflater.decompress(pending, limit + 1 - len(out))
                out += chunk
                if len(out) > limit:
                    raise FileRejectedError("the decompressed file is too large")
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
                if not chunk and not pending:
                    raise FileRejectedError("the gzip stream is truncated")
            data = inflater.unused_data
            if not data.strip(b"\x00"):  # trailing padding after the last member
                break
    except zlib.error as exc:
        raise FileRejectedError("the gzip stream is corrupt") from exc
    if len(out) >= 262 and out[257:262] == b"ustar":
        # §1.6: the 2015 tarball format is history; today the .gz holds exactly one file.
        raise FileRejectedError("the gzip holds a tar archive, not one JSON-lines file")
    return bytes(out)


def split_lines(data: bytes) -> list[tuple[int, bytes]]:
    """Non-blank lines with 1-based numbers; CRLF and a missing final newline are tolerated."""
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line.strip():
            lines.append((number, line))
    return lines


@dataclass
class Result:
    """Everything processing learned about one file."""

    status: str
    records: list[dict[str, Any]] = field(default_factory=list)
    records_truncated: bool = False
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    note: str | None = None
    log_bytes: bytes | None = None
    total: int = 0


def build_log(outcomes: list[dict[str, Any]], *, all_lines: bool) -> bytes:
    """Gzipped JSON Lines of `{ref, code, message}` with `code` as a string (S-LOG, B-KEZHAN)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as stream:
        for outcome in outcomes:
            if all_lines or not outcome["code"].startswith("2") or outcome.get("log_success"):
                line = {
                    "ref": outcome["ref"],
                    "code": outcome["code"],
                    "message": outcome["message"],
                }
                stream.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
    return buffer.getvalue()


class Processor:
    """Runs one short-lived thread per uploaded batch; `generation` changes on reset."""

    def __init__(
        self,
        *,
        config: SandboxConfig,
        batches: BatchStore,
        profiles: ProfileStore,
        faults: FaultBoard,
        stopping: threading.Event,
    ) -> None:
        self.config = config
        self.batches = batches
        self.profiles = profiles
        self.faults = faults
        self.stopping = stopping
        self.generation = 0

    def file_received(self, batch: Batch) -> None:
        """Called with `batches.lock` held once the S3 PUT stored the body."""
        if batch.received_checksum != batch.checksum or batch.received_size != batch.size:
            # S-INSPECT: the MD5 or the size does not match what was declared. The checksum is
            # compared as sent, so an upper-case hex checksum ends here too (B-KEZHAN).
            batch.note = "received MD5 or size differs from the declared checksum/size"
            self._corrupt(batch)
            return
        if self.faults.take_corruption(batch.ref):
            batch.note = "forced to corrupted by a sandbox fault"
            self._corrupt(batch)
            return
        batch.touch(FILE_UPLOADED)
        thread = threading.Thread(
            target=self._run, args=(batch.ref, self.generation), daemon=True, name="processor"
        )
        thread.start()

    @staticmethod
    def _corrupt(batch: Batch) -> None:
        batch.body = None
        batch.stats = None  # a corrupted file is never processed, so it has no stats or log
        batch.log_bytes = None
        batch.touch(CORRUPTED)
        logger.info("batch %s corrupted", batch.ref)

    def force_corrupt(self, batch: Batch) -> None:
        """Control endpoint: corrupt a batch that already has its file (lock held)."""
        batch.note = "forced to corrupted by a sandbox fault"
        self._corrupt(batch)

    def _run(self, batch_ref: str, generation: int) -> None:
        delay = self.config.processing_delay
        if self.stopping.wait(delay):
            return
        with self.batches.lock:
            batch = self.batches.get(batch_ref)
            if batch is None or generation != self.generation or batch.status != FILE_UPLOADED:
                return
            batch.touch(PROCESSING)
            body = batch.body or b""
        started = time.monotonic()
        try:
            result = self.process(batch_ref, body, generation)
        except Exception:  # never let one bad file kill the sandbox
            logger.exception("batch %s: processing failed unexpectedly", batch_ref)
            result = Result(status=ERROR, note="internal sandbox error while processing")
        # Keep `processing` visible for at least `delay`, as a real queue would.
        if self.stopping.wait(max(0.0, delay - (time.monotonic() - started))):
            return
        duration_ms = int((time.monotonic() - started) * 1000)
        self._finish(batch_ref, generation, result, duration_ms)

    def _finish(self, batch_ref: str, generation: int, result: Result, duration_ms: int) -> None:
        with self.batches.lock:
            batch = self.batches.get(batch_ref)
            if batch is None or generation != self.generation or batch.status != PROCESSING:
                return
            failed = sum(1 for o in result.outcomes if not o["code"].startswith("2"))
            batch.records = result.records
            batch.records_truncated = result.records_truncated
            batch.outcomes = result.outcomes
            batch.warnings = result.warnings
            batch.note = result.note
            # Q1: the key names of `status.stats` are unknown; these are the sandbox's guess.
            batch.stats = {
                "duration": duration_ms,
                "totalCount": result.total,
                "successCount": result.total - failed,
                "errorCount": failed,
            }
            batch.log_bytes = result.log_bytes
            batch.body = None
            batch.touch(result.status)
            logger.info(
                "batch %s %s: %d records, %d failed", batch_ref, result.status, result.total, failed
            )

    # --- the work itself ----------------------------------------------------------------

    def process(self, batch_ref: str, body: bytes, generation: int) -> Result:
        """Turn one uploaded body into a Result, applying valid records to the profile store."""
        try:
            data = gunzip(body)
        except FileRejectedError as exc:
            # S-STATUS: `error` with no log URI means the file could not be read at all.
            return Result(status=ERROR, note=str(exc))
        lines = split_lines(data)
        result = Result(status=SUCCESS, total=len(lines))
        planned: list[tuple[dict[str, Any], Operation]] = []
        seen_refs: set[str] = set()
        seen_identities: dict[tuple[str, str], str] = {}
        for number, raw in lines:
            outcome: dict[str, Any] = {"line": number, "ref": "null"}
            result.outcomes.append(outcome)
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                outcome.update(code="400", message=PARSE_FAILED, detail="not valid UTF-8 JSON")
                continue
            if isinstance(obj, dict):
                if len(result.records) < MAX_RECORDS_KEPT:
                    result.records.append({"line": number, **obj})
                else:
                    result.records_truncated = True
            outcome["ref"] = log_ref(obj)
            forced = self.faults.take_record_failure(outcome["ref"])
            if forced is not None:
                outcome.update(code=forced["code"], message=forced["message"], detail="forced")
                continue
            try:
                envelope = check_envelope(obj)
                if envelope.ref in seen_refs:
                    raise invalid("the same record ref appears twice in this file")
                seen_refs.add(envelope.ref)
                operation = self._plan(batch_ref, envelope, seen_identities, result.warnings)
            except Rejected as rejected:
                outcome.update(code=rejected.code, message=rejected.message, detail=rejected.detail)
                continue
            outcome["mode"] = envelope.mode
            planned.append((outcome, operation))
        with self.profiles.lock:
            if generation != self.generation:
                return Result(status=ERROR, note="sandbox was reset while processing")
            for outcome, operation in planned:
                try:
                    code, message = operation()
                except Rejected as rejected:
                    outcome.update(code=rejected.code, message=rejected.message)
                    outcome["detail"] = rejected.detail
                    continue
                outcome.update(code=code, message=message, detail="")
        for outcome in result.outcomes:
            outcome["log_success"] = outcome.pop("mode", None) in MODES_LOGGED_ON_SUCCESS
        if any(not o["code"].startswith("2") for o in result.outcomes):
            result.status = ERROR
            result.log_bytes = build_log(result.outcomes, all_lines=self.config.log_success_lines)
        for outcome in result.outcomes:
            outcome.pop("log_success")
        return result

    def _plan(
        self,
        batch_ref: str,
        envelope: Envelope,
        seen_identities: dict[tuple[str, str], str],
        warnings: list[str],
    ) -> Operation:
        """Validate one record and return the store operation that applies it."""
        providers = self.config.identity_providers
        ref, mode, value = envelope.ref, envelope.mode, envelope.value
        profiles = self.profiles
        if envelope.schema == "guest":
            keys = check_guest(envelope, providers)
            if mode in ("delete", "gdpr_delete"):
                return lambda: profiles.delete_guest(keys, gdpr=mode == "gdpr_delete")
            for key in keys:
                if key in seen_identities:
                    # S-FORMAT: the same guest twice in one file produces duplicate profiles.
                    warnings.append(
                        f"records {seen_identities[key]} and {ref} share a {key[0]} identifier; "
                        "real CDP may create duplicate profiles"
                    )
                seen_identities.setdefault(key, ref)
            if mode == "create":
                return lambda: profiles.create_guest(ref, batch_ref, value, keys)
            return lambda: profiles.upsert_guest(ref, batch_ref, value, keys)  # upsert, merge
        if envelope.schema == "migration":
            source, target = check_migration(envelope, providers)
            return lambda: profiles.migrate_guest(ref, batch_ref, source, target)
        if envelope.schema == "order":
            keys = check_order(envelope, providers)
            if mode == "delete":
                return lambda: profiles.delete_order(value)
            return lambda: profiles.put_order(ref, batch_ref, mode, value, keys)
        check_tracking(envelope)
        return lambda: profiles.add_event(ref, batch_ref, value)
