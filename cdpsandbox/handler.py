"""HTTP plumbing: routing, bounded bodies, JSON/XML replies, faults, one log line per request."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from cdpsandbox.config import FaultSpec
from cdpsandbox.store import iso_ms
from cdpsandbox.tls import is_loopback

if TYPE_CHECKING:
    from cdpsandbox.app import Sandbox

logger = logging.getLogger("cdpsandbox.http")

# Bodies we read for anything but the S3 upload: the allocate body is two fields.
MAX_SMALL_BODY = 64 * 1024
# When a reply is sent before the body was read, we drain at most this much to keep the
# connection usable; beyond it we close the connection instead.
MAX_DRAIN = 1024 * 1024


class BodyError(Exception):
    """The request body cannot be read: missing length, chunked, or too large."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


Endpoint = Callable[["SandboxHandler", re.Match[str]], None]


@dataclass(frozen=True)
class Route:
    """A path pattern, its endpoints by method, its area (api/s3/control), fault targets."""

    pattern: re.Pattern[str]
    methods: dict[str, Endpoint]
    area: str
    # Method → fault target: allocate and status share a path, so do S3 upload and log GET.
    targets: dict[str, str] = field(default_factory=dict)


class SandboxHandler(BaseHTTPRequestHandler):
    """Request handler shared by the API, S3 and control endpoints."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real clients expect
    # Garbage request lines would otherwise be answered as HTTP/0.9, without a status line.
    default_request_version = "HTTP/1.1"
    server_version = "cdpsandbox"
    sys_version = ""
    timeout = 30  # an idle or stuck connection does not hold a thread forever
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus delayed
    # ACKs add ~40 ms to every response.
    disable_nagle_algorithm = True
    routes: tuple[Route, ...] = ()
    error_writers: dict[str, Callable[[SandboxHandler, int, str, str, dict[str, str]], None]] = {}

    # --- lifecycle ----------------------------------------------------------------------

    def version_string(self) -> str:
        """The Server header."""
        return self.server_version

    @property
    def sandbox(self) -> Sandbox:
        """The Sandbox this server runs."""
        return self.server.sandbox  # type: ignore[attr-defined]

    def handle_one_request(self) -> None:
        """Run one request and log it once, without the query string (it holds signatures)."""
        self._status: int | None = None
        self._aborted = False
        self._body_read = False
        self._fault: str | None = None
        self._area = "unknown"
        self._recorded = False
        self._started = time.monotonic()
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True
            self._aborted = self._aborted or self._status is None
        if self._status is not None or self._aborted:
            self._log_request()

    def parse_request(self) -> bool:
        """Start the clock once a request line arrived (not while idling on keep-alive)."""
        self._started = time.monotonic()
        return super().parse_request()

    def finish(self) -> None:
        """Tolerate sockets that a `reset` fault or the peer already closed."""
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests (bad request line, long URI, many headers) get a JSON error.

        The stdlib text would echo the request line, query string included; ours does not.
        """
        self.close_connection = True
        self._body_read = True  # never try to drain the body of a request we could not parse
        phrase = HTTPStatus(code).phrase
        self.error(code, phrase.replace(" ", ""), phrase)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's own log lines: they carry the full request line and query."""

    def send_response(self, code: int, message: str | None = None) -> None:
        """Remember the status and record the request before the client can see the reply."""
        self._status = code
        self._record_request(code)
        super().send_response(code, message)

    def _request_path(self) -> str:
        return urlsplit(self.path).path if getattr(self, "path", None) else "-"

    def _record_request(self, status: int | str) -> None:
        """Add to the request log once; done before replying, so a test that got the reply
        always finds its entry (a test asserting retries reads the log right after)."""
        if self._recorded or self._area not in ("api", "s3"):
            return
        self._recorded = True
        self.sandbox.requests.add(
            {
                "at": iso_ms(time.time()),
                "method": self.command,
                "path": self._request_path(),
                "status": status,
                "authorization": "authorization" in (getattr(self, "headers", None) or {}),
                "area": self._area,
                "fault": self._fault,
            }
        )

    def _log_request(self) -> None:
        status = "reset" if self._aborted and self._status is None else self._status
        if status == "reset":
            self._record_request(status)
        elapsed = (time.monotonic() - self._started) * 1000
        logger.info(
            "%s %s %s %.1fms auth=%s%s",
            getattr(self, "command", None) or "-",
            self._request_path(),
            status,
            elapsed,
            "yes" if "authorization" in (getattr(self, "headers", None) or {}) else "no",
            f" fault={self._fault}" if self._fault else "",
        )

    # --- dispatch -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.url_path = url.path
        self.query = parse_qs(url.query, keep_blank_values=True)
        for route in self.routes:
            match = route.pattern.match(url.path)
            if match is None:
                continue
            self._area = route.area
            endpoint = route.methods.get(self.command)
            if endpoint is None:
                allow = ", ".join(sorted(route.methods))
                self.error(405, "MethodNotAllowed", "Method not allowed", {"Allow": allow})
                return
            if route.area == "control" and not self.sandbox_peer_is_loopback():
                self.error(403, "Forbidden", "control endpoints answer loopback peers only")
                return
            target = route.targets.get(self.command)
            if target and self._apply_fault(target):
                return
            try:
                endpoint(self, match)
            except OSError:  # peer gone, TLS torn down: nothing left to answer
                raise
            except Exception:  # a bug must answer 500, never kill the server
                logger.exception("unhandled error in %s %s", self.command, url.path)
                if self._status is None:
                    self.error(500, "InternalError", "internal sandbox error")
            finally:
                self._finish_body()
            return
        self._area = "s3" if url.path.startswith("/s3/") else "api"
        self.error(404, "NotFound", "Resource not found")

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def sandbox_peer_is_loopback(self) -> bool:
        """True when the TCP peer is a loopback address."""
        return is_loopback(str(self.client_address[0]))

    # --- faults -------------------------------------------------------------------------

    def _apply_fault(self, target: str) -> bool:
        """Apply the next queued fault for `target`; True when the request is answered."""
        fault: FaultSpec | None = self.sandbox.faults.take(target)
        if fault is None:
            return False
        self._fault = fault.kind
        if fault.kind == "stall":
            # Hang, then answer normally: the client's timeout decides what it saw.
            if not self.sandbox.stopping.wait(fault.seconds):
                return False
            self.abort_connection()  # shutting down
            return True
        if fault.kind == "reset":
            self.abort_connection()
            return True
        self._finish_body()
        headers = {"Retry-After": str(fault.retry_after)} if fault.kind == "429" else {}
        status = int(fault.kind)
        texts = {
            500: ("InternalError", "We encountered an internal error. Please try again."),
            503: ("SlowDown", "Service temporarily unavailable, please retry."),
            429: ("TooManyRequests", "Too many requests, please retry later."),
            404: ("NoSuchKey", "The specified key does not exist."),
        }
        code, message = texts[status]
        self.error(status, code, message, headers)
        return True

    def abort_connection(self) -> None:
        """Close the TCP connection with a RST, so the client sees 'connection reset'."""
        self._aborted = True
        self.close_connection = True
        self._record_request("reset")
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # drop the makefile reference so close() really closes
            self.connection.close()
        except OSError:
            pass

    # --- bodies -------------------------------------------------------------------------

    def content_length(self) -> int | None:
        """The declared Content-Length, None when absent; BodyError when chunked or bad."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BodyError(501, "NotImplemented", "chunked request bodies are not supported")
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        try:
            length = int(raw)
        except ValueError:
            raise BodyError(400, "BadRequest", "Content-Length is not a number") from None
        if length < 0:
            raise BodyError(400, "BadRequest", "Content-Length is negative")
        return length

    def read_body(self, limit: int) -> bytes:
        """Read exactly Content-Length bytes (at most `limit`); BodyError otherwise."""
        length = self.content_length() or 0
        if length > limit:
            self.close_connection = True  # the unread body must not be parsed as a request
            raise BodyError(413, "EntityTooLarge", f"request body exceeds {limit} bytes")
        body = self.rfile.read(length) if length else b""
        self._body_read = True
        if len(body) != length:
            raise ConnectionError("client closed the connection mid-body")
        return body

    def _finish_body(self) -> None:
        """Drain an unread body so keep-alive stays in sync, or close when it is too big."""
        if self._body_read or self._aborted:
            return
        self._body_read = True
        try:
            length = self.content_length() or 0
        except BodyError:
            self.close_connection = True
            return
        if length > MAX_DRAIN:
            self.close_connection = True
        elif length:
            self.rfile.read(length)

    # --- replies ------------------------------------------------------------------------

    def send_bytes(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """Send a complete response with Content-Length."""
        self._finish_body()
        self.send_response(status)
        if body or content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """Send `payload` as JSON."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.send_bytes(status, body, "application/json;charset=UTF-8", headers)

    def error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        """Send an error in the format of the current area (JSON for API/control, XML for S3)."""
        writer = self.error_writers.get(self._area) or self.error_writers["api"]
        writer(self, status, code, message, headers or {})
