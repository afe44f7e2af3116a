"""The CDP Batch API side: allocate, status and inspect endpoints (§1.2, §1.4)."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import time
from datetime import UTC
from typing import Any

from cdpsandbox.handler import BodyError, SandboxHandler
from cdpsandbox.store import (
    ERROR,
    FILE_UPLOADED,
    PROCESSING,
    STATUSES,
    TERMINAL,
    UPLOADING,
    AllocationConflictError,
    Batch,
    iso_ms,
)
from cdpsandbox.validation import is_uuid, parse_datetime

HEX_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}$")
MORE_INFO = "https://doc.sitecore.com/cdp/en/developers/api/batch-api.html"
# S-INSPECT shows offset/limit but no maximum; the sandbox caps the page size.
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
RETENTION_SECONDS = 30 * 24 * 3600  # S-INSPECT: the list covers the last 30 days


def write_json_error(
    handler: SandboxHandler, status: int, code: str, message: str, headers: dict[str, str]
) -> None:
    """CDP REST error body: status, code, message, developerMessage, moreInfo (S-P-RESPCODES).

    `code` is numeric, as the C-X3M `ErrorResponse` model expects; the textual code goes into
    `developerMessage` so a human can still tell errors apart.
    """
    handler.send_json(
        status,
        {
            "status": status,
            "code": status,
            "message": message,
            "developerMessage": f"{code}: {message}",
            "moreInfo": MORE_INFO,
        },
        headers,
    )


def _authorized(handler: SandboxHandler) -> bool:
    """HTTP Basic with Client Key as user and API Token as password (S-AUTH)."""
    header = handler.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    config = handler.sandbox.config
    user_ok = hmac.compare_digest(user.encode(), config.client_key.encode())
    password_ok = hmac.compare_digest(password.encode(), config.api_token.encode())
    return bool(sep) and user_ok and password_ok


def _require_auth(handler: SandboxHandler) -> bool:
    if _authorized(handler):
        return True
    handler.error(
        401,
        "Unauthorized",
        "Bad credentials: use the Client Key and API Token as Basic auth",
        {"WWW-Authenticate": 'Basic realm="Sitecore CDP"'},
    )
    return False


def _require_uuid(handler: SandboxHandler, ref: str) -> bool:
    if is_uuid(ref):
        return True
    handler.error(400, "ValidationError", "batchRef must be a UUID (S-ALLOC)")
    return False


def render_batch(handler: SandboxHandler, batch: Batch, *, inspect: bool) -> dict[str, Any]:
    """The allocate/status response (S-ALLOC, S-STATUS); call with the store lock held."""
    base = handler.sandbox.base_url
    status_code = batch.status
    if status_code == FILE_UPLOADED and not inspect:
        status_code = PROCESSING  # only the inspect endpoint reports file_uploaded (§1.4)
    status: dict[str, Any] = {"code": status_code}
    if batch.status == ERROR and batch.log_bytes is not None:
        # A fresh signature on every read, so a client can re-read status for a new URL.
        status["log"], _ = handler.sandbox.signed_url("GET", batch.log_path)
    if batch.stats is not None and batch.status in TERMINAL:
        status["stats"] = dict(batch.stats)
    path = f"/v2/batches/inspect/{batch.ref}" if inspect else f"/v2/batches/{batch.ref}"
    return {
        "href": base + path,
        "ref": batch.ref,
        "checksum": batch.checksum,
        "size": batch.size,
        "location": {"href": batch.location_url, "expiry": iso_ms(batch.location_expires)},
        "status": status,
        "createdAt": iso_ms(batch.created_at),
        "modifiedAt": iso_ms(batch.modified_at),
    }


def _parse_allocation(handler: SandboxHandler) -> tuple[str, int] | None:
    """Read and check `{"checksum", "size"}`; replies and returns None when it is wrong."""
    content_type = handler.headers.get("Content-Type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        handler.error(415, "UnsupportedMediaType", "Content-Type must be application/json")
        return None
    try:
        raw = handler.read_body(64 * 1024)
    except BodyError as exc:
        handler.error(exc.status, exc.code, exc.message)
        return None
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        handler.error(400, "ValidationError", "The request body is not valid JSON")
        return None
    if not isinstance(body, dict):
        handler.error(400, "ValidationError", "The request body must be a JSON object")
        return None
    checksum = body.get("checksum")
    if not isinstance(checksum, str) or not HEX_MD5_RE.match(checksum):
        handler.error(400, "ValidationError", "checksum must be the hex MD5 of the gzip file")
        return None
    size = body.get("size")
    # §7: the docs say integer, but C-AGEHLOT and the 2015 template send a digit string.
    if isinstance(size, str) and size.isdigit():
        size = int(size)
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        handler.error(400, "ValidationError", "size must be a positive integer (bytes)")
        return None
    limit = handler.sandbox.config.max_file_size
    if size > limit:
        # BX15: a file over the limit gets 400; split it into several batches.
        handler.error(
            400,
            "FileTooLarge",
            f"size {size} exceeds the {limit} byte limit; split the file into several batches",
        )
        return None
    return checksum, size


def allocate(handler: SandboxHandler, match: re.Match[str]) -> None:
    """PUT /v2/batches/{batchRef}: 201 first time, 200 on an identical repeat, 409 on change."""
    ref = match["ref"]
    if not _require_auth(handler) or not _require_uuid(handler, ref):
        return
    parsed = _parse_allocation(handler)
    if parsed is None:
        return
    checksum, size = parsed
    sandbox = handler.sandbox
    with sandbox.batches.lock:
        try:
            batch, created = sandbox.batches.allocate(ref.lower(), checksum, size)
        except AllocationConflictError:
            handler.error(
                409,
                "Conflict",
                "This batchRef already exists with a different checksum or size; "
                "use a new batchRef",
            )
            return
        if batch.status == UPLOADING:
            # Each allocation hands out a freshly signed URL (valid one hour, S-ALLOC).
            batch.location_url, batch.location_expires = sandbox.signed_url(
                "PUT", batch.upload_path
            )
        payload = render_batch(handler, batch, inspect=False)
    handler.send_json(201 if created else 200, payload)


def _show(handler: SandboxHandler, ref: str, *, inspect: bool) -> None:
    if not _require_auth(handler) or not _require_uuid(handler, ref):
        return
    sandbox = handler.sandbox
    with sandbox.batches.lock:
        batch = sandbox.batches.get(ref.lower())
        payload = render_batch(handler, batch, inspect=inspect) if batch else None
    if payload is None:
        handler.error(404, "NotFound", f"Batch {ref} not found")
        return
    handler.send_json(200, payload)


def get_status(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET /v2/batches/{batchRef} (S-STATUS)."""
    _show(handler, match["ref"], inspect=False)


def inspect_one(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET /v2/batches/inspect/{batchRef}: like status, but may report file_uploaded."""
    _show(handler, match["ref"], inspect=True)


def _int_param(handler: SandboxHandler, name: str, default: int, low: int, high: int) -> int | None:
    raw = handler.query.get(name, [str(default)])[0]
    if not raw.isdigit() or not low <= int(raw) <= high:
        handler.error(400, "ValidationError", f"{name} must be an integer from {low} to {high}")
        return None
    return int(raw)


def inspect_list(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET /v2/batches/inspect?status=&createdBefore=&offset=&limit= (S-INSPECT)."""
    if not _require_auth(handler):
        return
    wanted: set[str] | None = None
    if handler.query.get("status", [""])[0]:
        wanted = {s.strip() for s in handler.query["status"][0].split(",") if s.strip()}
        unknown = wanted - set(STATUSES)
        if unknown:
            handler.error(400, "ValidationError", f"unknown status {', '.join(sorted(unknown))}")
            return
    before = None
    if handler.query.get("createdBefore", [""])[0]:
        moment = parse_datetime(handler.query["createdBefore"][0])
        if moment is None:
            handler.error(400, "ValidationError", "createdBefore must be an ISO-8601 UTC date")
            return
        before = moment.astimezone(UTC).timestamp()
    offset = _int_param(handler, "offset", 0, 0, 10**9)
    limit = offset is not None and _int_param(handler, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    if offset is None or limit is None or limit is False:
        return
    sandbox = handler.sandbox
    oldest = time.time() - RETENTION_SECONDS
    items = []
    with sandbox.batches.lock:
        for batch in sandbox.batches.all():  # newest first
            if batch.created_at < oldest or (wanted and batch.status not in wanted):
                continue
            if before is not None and batch.created_at >= before:
                continue
            item = {
                "href": f"{sandbox.base_url}/v2/batches/inspect/{batch.ref}",
                "ref": batch.ref,
                "status": batch.status,  # a plain string in list items (S-INSPECT)
                "createdAt": iso_ms(batch.created_at),
                "modifiedAt": iso_ms(batch.modified_at),
            }
            if batch.status == ERROR and batch.log_bytes is not None:
                # S-INSPECT: error items carry one more string (name truncated in the copy).
                item["log"], _ = sandbox.signed_url("GET", batch.log_path)
            items.append(item)
    page = items[offset : offset + limit]
    handler.send_json(
        200, {"totalCount": len(items), "offset": offset, "limit": limit, "items": page}
    )
