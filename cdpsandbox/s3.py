"""The S3 side: PUT to the pre-signed upload URL (§1.3) and GET of the error log (§1.5)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from xml.sax.saxutils import escape

from cdpsandbox.handler import BodyError, SandboxHandler
from cdpsandbox.signing import BUCKET_PREFIX
from cdpsandbox.store import UPLOADING, Batch, iso_ms

OBJECT_RE = re.compile(
    "^" + re.escape(BUCKET_PREFIX) + r"/(?P<prefix>[0-9a-f]{16})/(?P<ref>[0-9a-f-]{36})"
    r"/(?P<kind>import\.gz|log/import\.gz)$"
)
SSE_HEADER = "x-amz-server-side-encryption"
# Headers never copied into the inspection view (secrets or noise).
HIDDEN_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def write_xml_error(
    handler: SandboxHandler,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str],
    extra: dict[str, str] | None = None,
) -> None:
    """S3-style XML error body (§1.3: S3 errors are XML, not JSON)."""
    parts = [f"<Code>{escape(code)}</Code>", f"<Message>{escape(message)}</Message>"]
    for name, value in (extra or {}).items():
        parts.append(f"<{name}>{escape(value)}</{name}>")
    request_id = secrets.token_hex(8).upper()
    parts.append(f"<RequestId>{request_id}</RequestId>")
    parts.append(f"<HostId>{base64.b64encode(secrets.token_bytes(24)).decode()}</HostId>")
    body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>"
    handler.send_bytes(
        status,
        body.encode(),
        "application/xml",
        {"x-amz-request-id": request_id, **headers},
    )


def _visible_headers(handler: SandboxHandler) -> dict[str, str]:
    seen = {
        name.lower(): value
        for name, value in handler.headers.items()
        if name.lower() not in HIDDEN_HEADERS
    }
    seen["authorization_present"] = "yes" if "authorization" in handler.headers else "no"
    return seen


def _batch_for(handler: SandboxHandler, match: re.Match[str]) -> Batch | None:
    batch = handler.sandbox.batches.get(match["ref"])
    if batch is None or not batch.object_prefix.endswith(match["prefix"]):
        return None
    return batch


def _query_auth_error(
    handler: SandboxHandler, method: str
) -> tuple[int, str, str, dict[str, str]] | None:
    """Refuse an Authorization header, then check the signed query (§1.1, §1.3)."""
    if "Authorization" in handler.headers:
        # S3 refuses a request that carries both query-string auth and an Authorization header.
        return (
            400,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
            {"ArgumentName": "Authorization", "ArgumentValue": "(withheld)"},
        )
    check = handler.sandbox.signer.verify(method, handler.url_path, handler.query)
    if check.error is None:
        return None
    extra = {}
    if check.message == "Request has expired" and check.expires is not None:
        extra = {"Expires": iso_ms(check.expires), "ServerTime": iso_ms(time.time())}
    elif check.error == "SignatureDoesNotMatch":
        extra = {"StringToSign": check.string_to_sign}
    return 403, check.error, check.message, extra


def _record_attempt(batch: Batch | None, handler: SandboxHandler, status: int, code: str) -> None:
    if batch is None:
        return
    batch.upload_attempts.append(
        {
            "at": iso_ms(time.time()),
            "status": status,
            "code": code,
            "headers": _visible_headers(handler),
        }
    )
    del batch.upload_attempts[:-20]  # bounded


def put_object(handler: SandboxHandler, match: re.Match[str]) -> None:
    """PUT <location.href>: S3 semantics, then hand the body to the processor."""
    sandbox = handler.sandbox
    batch = _batch_for(handler, match)

    def refuse(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
        with sandbox.batches.lock:
            _record_attempt(batch, handler, status, code)
        write_xml_error(handler, status, code, message, {}, extra)

    auth_error = _query_auth_error(handler, "PUT")
    if auth_error is not None:
        refuse(*auth_error)
        return
    if match["kind"] != "import.gz":
        refuse(403, "AccessDenied", "Access Denied")
        return
    if batch is None:
        refuse(403, "AccessDenied", "The batch behind this upload URL no longer exists")
        return
    if handler.headers.get(SSE_HEADER) != "AES256":
        # The URL is signed for `x-amz-server-side-encryption: AES256` (every source sends it);
        # a missing or different signed header is a signature mismatch in S3.
        refuse(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
            {"StringToSign": f"PUT\n{SSE_HEADER}:AES256\n{handler.url_path}"},
        )
        return
    try:
        length = handler.content_length()
    except BodyError as exc:
        refuse(exc.status, exc.code, exc.message)
        return
    if length is None:
        refuse(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        return
    limit = sandbox.config.max_file_size
    if length > limit:
        handler.close_connection = True
        refuse(
            400,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size",
            {"ProposedSize": str(length), "MaxSizeAllowed": str(limit)},
        )
        return
    content_md5 = handler.headers.get("Content-MD5")
    if content_md5 is None:
        refuse(400, "InvalidRequest", "Missing required header for this request: Content-MD5")
        return
    try:
        expected = base64.b64decode(content_md5.strip(), validate=True)
    except binascii.Error:
        expected = b""
    if len(expected) != 16:
        # Typical mistake: base64 of the hex text (32 bytes) instead of the binary digest.
        refuse(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
        return
    body = handler.read_body(limit)
    digest = hashlib.md5(body)  # MD5 is what the protocol specifies
    if digest.digest() != expected:
        refuse(
            400,
            "BadDigest",
            "The Content-MD5 you specified did not match what we received.",
            {
                "ExpectedDigest": content_md5,
                "CalculatedDigest": base64.b64encode(digest.digest()).decode(),
            },
        )
        return
    with sandbox.batches.lock:
        _record_attempt(batch, handler, 200, "OK")
        batch.upload_count += 1
        if batch.status == UPLOADING and sandbox.batches.get(batch.ref) is batch:
            batch.received_checksum = digest.hexdigest()
            batch.received_size = len(body)
            batch.upload_headers = _visible_headers(handler)
            batch.body = body
            sandbox.processor.file_received(batch)
        else:
            # S3 would overwrite the object, but the batch was already taken in; the sandbox
            # accepts the repeat (a retried PUT must not fail) and ignores its content.
            batch.note = (batch.note or "") + " [a later upload was ignored]"
    handler.send_bytes(
        200,
        b"",
        "",
        {
            "ETag": f'"{digest.hexdigest()}"',
            SSE_HEADER: "AES256",
            "x-amz-request-id": secrets.token_hex(8).upper(),
        },
    )


def get_log(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET <status.log>: the gzipped JSON-lines error log, pre-signed, no auth header (S-LOG)."""
    auth_error = _query_auth_error(handler, "GET")
    if auth_error is not None:
        status, code, message, extra = auth_error
        write_xml_error(handler, status, code, message, {}, extra)
        return
    with handler.sandbox.batches.lock:
        batch = _batch_for(handler, match)
        log = batch.log_bytes if batch is not None else None
    if log is None:
        write_xml_error(handler, 404, "NoSuchKey", "The specified key does not exist.", {})
        return
    handler.send_bytes(
        200,
        log,
        "application/gzip",
        {"ETag": f'"{hashlib.md5(log).hexdigest()}"'},
    )
