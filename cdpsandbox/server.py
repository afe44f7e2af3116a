"""The HTTPS server: routes, TLS per connection, state file, clean stop on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cdpsandbox import api, control, s3
from cdpsandbox.app import Sandbox
from cdpsandbox.config import SandboxConfig
from cdpsandbox.handler import Route, SandboxHandler
from cdpsandbox.tls import make_server_context

logger = logging.getLogger("cdpsandbox")

REF = r"(?P<ref>[^/]+)"
HANDSHAKE_TIMEOUT = 10


def _route(pattern: str, area: str, targets: dict[str, str] | None = None, **methods: Any) -> Route:
    return Route(re.compile(pattern), dict(methods), area, targets or {})


ROUTES: tuple[Route, ...] = (
    # `inspect` first: it would otherwise be taken for a batchRef.
    _route(r"^/v2/batches/inspect/?$", "api", {"GET": "status"}, GET=api.inspect_list),
    _route(rf"^/v2/batches/inspect/{REF}$", "api", {"GET": "status"}, GET=api.inspect_one),
    _route(
        rf"^/v2/batches/{REF}$",
        "api",
        {"PUT": "allocate", "GET": "status"},
        PUT=api.allocate,
        GET=api.get_status,
    ),
    Route(
        s3.OBJECT_RE,
        {"PUT": s3.put_object, "GET": s3.get_log},
        "s3",
        {"PUT": "upload", "GET": "log"},
    ),
    _route(r"^/_sandbox/batches/?$", "control", GET=control.list_batches),
    _route(rf"^/_sandbox/batches/{REF}$", "control", GET=control.show_batch),
    _route(r"^/_sandbox/profiles/?$", "control", GET=control.list_profiles),
    _route(r"^/_sandbox/orders/?$", "control", GET=control.list_orders),
    _route(r"^/_sandbox/migrations/?$", "control", GET=control.list_migrations),
    _route(r"^/_sandbox/events/?$", "control", GET=control.list_events),
    _route(r"^/_sandbox/requests/?$", "control", GET=control.list_requests),
    _route(r"^/_sandbox/health/?$", "control", GET=control.health),
    _route(r"^/_sandbox/reset/?$", "control", POST=control.reset),
    _route(r"^/_sandbox/faults/?$", "control", GET=control.show_faults, POST=control.set_faults),
)


class Handler(SandboxHandler):
    """The concrete handler: our routes and the error format of each area."""

    routes = ROUTES
    error_writers = {
        "api": api.write_json_error,
        "s3": s3.write_xml_error,
        "control": control.write_control_error,
    }


class SandboxServer(ThreadingHTTPServer):
    """Threaded HTTP server that does the TLS handshake in the worker thread, not in accept()."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, sandbox: Sandbox, context: ssl.SSLContext) -> None:
        self.sandbox = sandbox
        self.ssl_context = context
        host = sandbox.config.host
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, sandbox.config.port), Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Wrap the socket in TLS here, so a slow or plain-HTTP client blocks only itself."""
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            # HTTPS only (§1.1): plain HTTP and untrusted clients end here.
            logger.info("TLS handshake failed from %s: %s", client_address[0], type(exc).__name__)
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_WR)
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log unexpected per-connection errors without a traceback dump of request data."""
        logger.warning("connection from %s ended with an error", client_address[0], exc_info=True)


def base_url_for(host: str, port: int) -> str:
    """The URL clients use: wildcard binds are reached over loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"


def write_state_file(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically: clients poll for this file and must never see half of it."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def serve(config: SandboxConfig) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    state_dir = config.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / "sandbox.json"
    state_file.unlink(missing_ok=True)
    ca_path = state_dir / "ca.pem"
    context = make_server_context(config.host, ca_path)
    sandbox = Sandbox(config)
    server = SandboxServer(sandbox, context)
    port = server.server_address[1]
    sandbox.base_url = base_url_for(config.host, port)

    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="serve"
    )
    thread.start()
    write_state_file(
        state_file,
        {"base_url": sandbox.base_url, "ca_bundle": str(ca_path), "pid": os.getpid()},
    )
    sys.stdout.write(f"cdpsandbox listening on {sandbox.base_url} (CA: {ca_path})\n")
    sys.stdout.flush()
    logger.info(
        "identity providers: %s; processing delay %.2fs; URL lifetime %ds",
        ",".join(config.identity_providers),
        config.processing_delay,
        config.url_lifetime,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        logger.info("stopping")
        sandbox.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        try:
            if json.loads(state_file.read_text()).get("pid") == os.getpid():
                state_file.unlink()
        except (OSError, ValueError):
            pass
    return 0
