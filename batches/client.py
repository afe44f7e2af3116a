"""HTTP client for the Sitecore CDP Batch API and its pre-signed S3 upload (no Django models).

Facts and sources: docs/design/cdp-batch-api.md sections 1 (protocol) and 7 (open questions).
Every request has a timeout; every failure becomes one of our exceptions, raised `from` the
original: CdpTransientError (retry later: timeouts, resets, 5xx, 429 with Retry-After),
CdpPermanentError (other 4xx, malformed replies), CdpAuthError (401/403 from the API),
CdpConflictError (409), CdpUploadExpiredError (the pre-signed upload URL ran out),
CdpUrlRefusedError (an upload or log URL from CDP that is not https on an allowed host).
A hook records each call (method, origin and path without query string, HTTP status, duration)
for the audit trail; pre-signed URLs carry signatures, so their query strings never leave this
module.
"""

from __future__ import annotations

import base64
import gzip
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests
from django.conf import settings

AUTH_MESSAGE = "CDP refused the credentials; check CDP_CLIENT_KEY and CDP_API_TOKEN."
# Statuses CDP reports for a batch (section 1.4); the last three are terminal.
REMOTE_STATUSES = ("uploading", "file_uploaded", "processing", "success", "error", "corrupted")
REMOTE_TERMINAL = frozenset({"success", "error", "corrupted"})
# Ceiling for a Retry-After we honour; anything longer is treated as this.
MAX_RETRY_AFTER = 3600
LOG_CHUNK_BYTES = 1024 * 1024


class CdpError(Exception):
    """Base of the client's exceptions; the message is a readable sentence without secrets."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status


class CdpTransientError(CdpError):
    """Worth retrying later: timeout, connection reset, 5xx, 429 (honour `retry_after`)."""

    def __init__(
        self, message: str, *, http_status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, http_status=http_status)
        self.retry_after = retry_after


class CdpPermanentError(CdpError):
    """Retrying the same request will not help."""


class CdpAuthError(CdpPermanentError):
    """The API refused our credentials (401/403)."""


class CdpConflictError(CdpPermanentError):
    """409: the batch ref exists with another checksum or size (BX15)."""


class CdpUploadExpiredError(CdpPermanentError):
    """The pre-signed upload URL expired; the file must go under a new batch ref (BX15)."""


class CdpUrlRefusedError(CdpPermanentError):
    """CDP handed out an upload or error-log URL that is not https on an allowed host.

    Why: the pre-signed URLs come from CDP's reply, so a compromised or spoofed reply could
    send the batch file (personal data) anywhere, or make the worker GET an internal address.
    """


class CdpConfigurationError(CdpPermanentError):
    """The client's settings are unusable (http:// base URL, missing credentials)."""


@dataclass(frozen=True)
class CdpCall:
    """One request as the audit trail records it: never a query string, a header or a body."""

    target: str  # "api", "upload" or "log"
    method: str
    origin: str  # scheme://host[:port] of the request: where the data went
    path: str
    http_status: int | None
    duration_ms: int
    error: str = ""


@dataclass(frozen=True)
class AllocateResult:
    """The reply to `PUT /v2/batches/{ref}`: where to upload, until when, and the status."""

    ref: str
    status_code: str
    location_expiry: datetime | None
    raw: dict[str, Any]
    # The pre-signed URL is a bearer credential for one upload: kept out of repr and `raw`.
    location_url: str = field(default="", repr=False)


@dataclass(frozen=True)
class BatchStatus:
    """The reply to `GET /v2/batches/{ref}`."""

    ref: str
    code: str
    stats: dict[str, Any] | None
    location_expiry: datetime | None
    raw: dict[str, Any]
    log_url: str | None = field(default=None, repr=False)
    location_url: str = field(default="", repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.code in REMOTE_TERMINAL


@dataclass(frozen=True)
class LogLine:
    """One line of a batch error log; `ref` is None for a line about the file (`"null"`)."""

    ref: str | None
    code: str
    message: str

    @property
    def succeeded(self) -> bool:
        # The 2015 spec logs every record with 2xx for applied ones (section 1.5, Q2).
        return self.code.startswith("2")


def strip_query(url: str) -> str:
    """The URL without query string and fragment (pre-signed URLs carry their signature there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower-case, without the scheme's default port."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6
    try:
        port = parts.port
    except ValueError:
        port = None
    default_port = {"https": 443, "http": 80}.get(scheme)
    return f"{scheme}://{host}" if port in (None, default_port) else f"{scheme}://{host}:{port}"


def _scrub(value: Any) -> Any:
    """A copy of a CDP reply with the query strings of every URL removed."""
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return strip_query(value)
    return value


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(tz=UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def parse_datetime(value: Any) -> datetime | None:
    """An ISO-8601 timestamp from CDP (`2025-05-29T07:41:51.244Z`), or None if absent/unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_error_log(fileobj: IO[bytes]) -> Iterator[LogLine]:
    """Stream the lines of a gzip JSON Lines error log (section 1.5).

    `code` may be a JSON string ("400") or a number (400); `ref` may be the literal "null"
    when CDP could not parse an input line: such lines are about the file, not a record.
    A line we cannot read ourselves is reported as a file-level line too, never dropped.
    """
    with gzip.GzipFile(fileobj=fileobj, mode="rb") as lines:
        for raw in lines:
            raw = raw.strip()
            if not raw:
                continue
            try:
                item = orjson.loads(raw)
            except orjson.JSONDecodeError:
                yield LogLine(ref=None, code="", message="A log line was not valid JSON.")
                continue
            if not isinstance(item, dict):
                yield LogLine(ref=None, code="", message="A log line was not a JSON object.")
                continue
            ref = item.get("ref")
            ref = None if ref in (None, "", "null") else str(ref)
            code = item.get("code")
            code = "" if code is None else str(code)
            message = item.get("message")
            yield LogLine(ref=ref, code=code[:10], message=str(message or "")[:500])


class CdpClient:
    """The Batch API's four steps: allocate, upload, status, error log (section 1)."""

    def __init__(
        self,
        *,
        base_url: str,
        client_key: str,
        api_token: str,
        timeout: float = 30,
        upload_content_type: str = "application/gzip",
        allowed_hosts: Iterable[str] = (),
        on_call: Callable[[CdpCall], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        # S-AUTH21: plain HTTP is not supported; credentials must never cross the wire in clear.
        if parts.scheme != "https" or not parts.netloc:
            raise CdpConfigurationError(
                "CDP_BASE_URL must be an https:// address; CDP Stage never sends data over "
                "plain HTTP."
            )
        if not client_key or not api_token:
            raise CdpConfigurationError(
                "CDP_CLIENT_KEY and CDP_API_TOKEN must be set in the environment."
            )
        self.base_url = base_url.rstrip("/")
        # Where pre-signed URLs may point: the API's own host and port (the sandbox serves
        # both), and the S3 hosts named in settings (`host` or `host:port`).
        self.allowed_origins = frozenset(
            {origin_of(self.base_url)} | {origin_of(f"https://{host}") for host in allowed_hosts}
        )
        self._auth = (client_key, api_token)
        # (connect, read) timeouts: a dead host fails fast, a slow reply gets the full time.
        self.timeout = (min(10.0, float(timeout)), float(timeout))
        self.upload_content_type = upload_content_type
        self.on_call = on_call
        # trust_env (the default) makes requests read REQUESTS_CA_BUNDLE for `verify`.
        self.session = session or requests.Session()

    def __repr__(self) -> str:
        return f"CdpClient({self.base_url!r})"

    @classmethod
    def from_settings(cls, *, on_call: Callable[[CdpCall], None] | None = None) -> CdpClient:
        """A client configured from settings (read now, not at import)."""
        return cls(
            base_url=settings.CDP_BASE_URL,
            client_key=settings.CDP_CLIENT_KEY,
            api_token=settings.CDP_API_TOKEN,
            timeout=settings.CDP_HTTP_TIMEOUT,
            upload_content_type=settings.CDP_UPLOAD_CONTENT_TYPE,
            allowed_hosts=settings.CDP_ALLOWED_HOSTS,
            on_call=on_call,
        )

    # -- the four calls -------------------------------------------------------------------

    # https://doc.sitecore.com/cdp/developers/api/en/allocate-batch-upload-location.html
    def allocate(self, batch_ref: str, *, checksum: str, size: int) -> AllocateResult:
        """PUT /v2/batches/{ref}: declare the file's MD5 (lower-case hex) and size in bytes."""
        response = self._api(
            "PUT",
            f"/v2/batches/{batch_ref}",
            body=orjson.dumps({"checksum": checksum.lower(), "size": int(size)}),
        )
        data = self._json(response)
        location = data.get("location") if isinstance(data.get("location"), dict) else {}
        status = data.get("status") if isinstance(data.get("status"), dict) else {}
        url = location.get("href")
        # Its scheme and host are checked where it is used (`_presigned`), for every URL alike.
        if not isinstance(url, str) or not url:
            raise CdpPermanentError("CDP's allocation reply has no upload location.")
        return AllocateResult(
            ref=str(data.get("ref") or batch_ref),
            status_code=str(status.get("code") or "uploading"),
            location_expiry=parse_datetime(location.get("expiry")),
            raw=_scrub(data),
            location_url=url,
        )

    # https://doc.sitecore.com/cdp/en/developers/api/upload-batch-file.html
    def upload(self, location_url: str, body: IO[bytes], *, md5_hex: str, size: int) -> None:
        """PUT the gzip bytes to the pre-signed URL, streamed from `body` (never read whole).

        S3 authenticates the URL itself: no Authorization header may go with it (S3 refuses a
        request carrying both). Content-MD5 is the base64 of the binary digest, not of the
        hex text. The Content-Type is configurable (Q3): empty sends none.
        """
        headers = {
            "x-amz-server-side-encryption": "AES256",
            "Content-MD5": base64.b64encode(bytes.fromhex(md5_hex)).decode(),
            "Content-Length": str(int(size)),
        }
        if self.upload_content_type:
            headers["Content-Type"] = self.upload_content_type
        response = self._presigned("PUT", location_url, target="upload", headers=headers, data=body)
        if response.status_code == 403 and b"expired" in response.content.lower():
            raise CdpUploadExpiredError(
                "The upload location had expired; the file must be sent under a new batch ref.",
                http_status=403,
            )
        self._raise_for_status(response, target="upload")

    # https://doc.sitecore.com/cdp/en/developers/api/retrieve-batch-file-upload-status.html
    def status(self, batch_ref: str) -> BatchStatus:
        """GET /v2/batches/{ref}: the status code, log URI and stats of one batch."""
        response = self._api("GET", f"/v2/batches/{batch_ref}")
        data = self._json(response)
        status = data.get("status") if isinstance(data.get("status"), dict) else {}
        location = data.get("location") if isinstance(data.get("location"), dict) else {}
        code = status.get("code")
        if not isinstance(code, str) or not code:
            raise CdpPermanentError("CDP's status reply has no status code.")
        log_url = status.get("log")
        stats = status.get("stats")
        return BatchStatus(
            ref=str(data.get("ref") or batch_ref),
            code=code,
            stats=stats if isinstance(stats, dict) else None,
            location_expiry=parse_datetime(location.get("expiry")),
            raw=_scrub(data),
            log_url=log_url if isinstance(log_url, str) and log_url else None,
            location_url=location.get("href") if isinstance(location.get("href"), str) else "",
        )

    # https://doc.sitecore.com/cdp/en/developers/api/retrieve-batch-upload-error-log.html
    def download_log(self, log_url: str, destination: IO[bytes]) -> int:
        """GET the (pre-signed, gzip) error log into `destination`, streamed; returns bytes."""
        response = self._presigned("GET", log_url, target="log", stream=True)
        try:
            self._raise_for_status(response, target="log")
            written = 0
            try:
                for chunk in response.iter_content(LOG_CHUNK_BYTES):
                    destination.write(chunk)
                    written += len(chunk)
            except requests.RequestException as exc:
                raise CdpTransientError(
                    "The error log download was interrupted; it will be tried again."
                ) from exc
            return written
        finally:
            response.close()

    # -- plumbing -------------------------------------------------------------------------

    def _api(self, method: str, path: str, *, body: bytes | None = None) -> requests.Response:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        response = self._send(
            "api",
            method,
            self.base_url + path,
            lambda: self.session.request(
                method,
                self.base_url + path,
                data=body,
                headers=headers,
                auth=self._auth,
                timeout=self.timeout,
                allow_redirects=False,
            ),
        )
        self._raise_for_status(response, target="api")
        return response

    def _presigned(
        self, method: str, url: str, *, target: str, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        """A request to a pre-signed S3 URL: https on an allowed host, no Authorization header."""
        origin = origin_of(url)
        if not url.lower().startswith("https://") or origin not in self.allowed_origins:
            # Recorded, so the audit trail names where CDP's reply tried to send us.
            self._record(
                target, method, origin, urlsplit(url).path, None, time.monotonic(), "refused host"
            )
            what = "upload" if target == "upload" else "error log"
            raise CdpUrlRefusedError(
                f"CDP gave an {what} location on {origin}, which is not an allowed host "
                "(https on the CDP host or CDP_ALLOWED_HOSTS); nothing was sent to it."
            )
        request = self.session.prepare_request(requests.Request(method, url, **kwargs))
        # requests would add credentials from ~/.netrc for a host without auth: never here.
        request.headers.pop("Authorization", None)
        env = self.session.merge_environment_settings(url, {}, stream, None, None)
        return self._send(
            target,
            method,
            url,
            lambda: self.session.send(request, timeout=self.timeout, allow_redirects=False, **env),
        )

    def _send(
        self, target: str, method: str, url: str, call: Callable[[], requests.Response]
    ) -> requests.Response:
        origin, path = origin_of(url), urlsplit(url).path
        started = time.monotonic()
        try:
            response = call()
        except requests.exceptions.SSLError as exc:
            self._record(target, method, origin, path, None, started, type(exc).__name__)
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise CdpPermanentError(
                    "CDP's TLS certificate could not be verified; check REQUESTS_CA_BUNDLE."
                ) from exc
            raise CdpTransientError("The TLS connection to CDP failed or was reset.") from exc
        except requests.Timeout as exc:
            self._record(target, method, origin, path, None, started, type(exc).__name__)
            raise CdpTransientError("CDP did not answer in time.") from exc
        except requests.ConnectionError as exc:
            self._record(target, method, origin, path, None, started, type(exc).__name__)
            raise CdpTransientError("The connection to CDP failed or was reset.") from exc
        except requests.RequestException as exc:
            self._record(target, method, origin, path, None, started, type(exc).__name__)
            raise CdpTransientError("The request to CDP failed.") from exc
        self._record(target, method, origin, path, response.status_code, started, "")
        return response

    def _record(
        self,
        target: str,
        method: str,
        origin: str,
        path: str,
        status: int | None,
        started: float,
        error: str,
    ) -> None:
        if self.on_call is not None:
            self.on_call(
                CdpCall(
                    target=target,
                    method=method,
                    origin=origin[:200],
                    path=path[:300],
                    http_status=status,
                    duration_ms=int((time.monotonic() - started) * 1000),
                    error=error,
                )
            )

    @staticmethod
    def _detail(response: requests.Response) -> str:
        """A short, secret-free reason from an error body: CDP JSON or S3 XML `Code`."""
        try:
            text = response.content[:2000].decode("utf-8", "replace")
        except requests.RequestException:
            return ""
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            start, end = text.find("<Code>"), text.find("</Code>")
            return text[start + 6 : end][:60] if 0 <= start < end else ""
        if isinstance(data, dict):
            reason = data.get("message") or data.get("code") or ""
            return str(reason)[:200]
        return ""

    def _raise_for_status(self, response: requests.Response, *, target: str) -> None:
        code = response.status_code
        if 200 <= code < 300:
            return
        # CDP's and S3's own sentences end in a full stop; ours follow them as sentences.
        detail = self._detail(response).strip().rstrip(".;")
        suffix = f": {detail}" if detail else ""
        if code == 429 or code == 408 or code >= 500:
            raise CdpTransientError(
                f"CDP answered HTTP {code}{suffix}. It will be tried again.",
                http_status=code,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if code in (401, 403) and target == "api":
            raise CdpAuthError(AUTH_MESSAGE, http_status=code)
        if code == 409:
            raise CdpConflictError(
                f"CDP already holds this batch ref with another checksum or size (HTTP 409)"
                f"{suffix}.",
                http_status=code,
            )
        if target == "upload" and code == 403:
            raise CdpPermanentError(
                f"The upload location refused the file (HTTP 403{suffix}). If the signature "
                "does not match, the tenant may sign another Content-Type: check "
                "CDP_UPLOAD_CONTENT_TYPE.",
                http_status=code,
            )
        if 300 <= code < 400:
            raise CdpPermanentError(
                f"CDP answered with a redirect (HTTP {code}).", http_status=code
            )
        raise CdpPermanentError(f"CDP refused the request (HTTP {code}{suffix}).", http_status=code)

    @staticmethod
    def _json(response: requests.Response) -> dict[str, Any]:
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise CdpPermanentError("CDP sent a reply that is not valid JSON.") from exc
        if not isinstance(data, dict):
            raise CdpPermanentError("CDP sent a reply that is not a JSON object.")
        return data
