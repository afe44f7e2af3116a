"""Start the sandbox as a real subprocess for tests: `with run_sandbox(tmp) as sandbox: ...`.

Importable without Django; uses `requests` for the control helpers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from cdpsandbox.config import DEFAULT_API_TOKEN, DEFAULT_CLIENT_KEY

PACKAGE_PARENT = Path(__file__).resolve().parent.parent
TERMINAL = ("success", "error", "corrupted")


class SandboxControl:
    """Small client for the /_sandbox/ control endpoints, verifying TLS against the CA."""

    def __init__(self, base_url: str, ca_bundle: str, timeout: float = 10.0) -> None:
        self.base_url = base_url
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self.session = requests.Session()
        # No proxies, netrc or REQUESTS_CA_BUNDLE from the environment: loopback, our CA.
        self.session.trust_env = False

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        response = self.session.request(
            method,
            f"{self.base_url}/_sandbox/{path}",
            json=payload,
            verify=self.ca_bundle,
            timeout=self.timeout,
        )
        response.raise_for_status()
        return response.json()

    def batches(self) -> list[dict[str, Any]]:
        """Every batch, newest first."""
        return self._call("GET", "batches")

    def batch(self, ref: str) -> dict[str, Any]:
        """One batch with headers, records and outcomes (HTTPError 404 when unknown)."""
        return self._call("GET", f"batches/{ref}")

    def profiles(self) -> list[dict[str, Any]]:
        """The merged guest profiles."""
        return self._call("GET", "profiles")

    def orders(self) -> list[dict[str, Any]]:
        """Every stored order."""
        return self._call("GET", "orders")

    def events(self) -> list[dict[str, Any]]:
        """Every stored tracking event."""
        return self._call("GET", "events")

    def migrations(self) -> list[dict[str, Any]]:
        """Every applied guest migration."""
        return self._call("GET", "migrations")

    def fault(self, **spec: Any) -> dict[str, Any]:
        """POST /_sandbox/faults, e.g. fault(target="upload", kind="503", count=2)."""
        return self._call("POST", "faults", spec)

    def faults(self) -> dict[str, Any]:
        """What is pending."""
        return self._call("GET", "faults")

    def reset(self) -> None:
        """Forget batches, profiles, faults and the request log."""
        self._call("POST", "reset")

    def requests(self) -> list[dict[str, Any]]:
        """The API/S3 request log (method, path, status, authorization present)."""
        return self._call("GET", "requests")

    def wait_for_batch(
        self, ref: str, statuses: Iterable[str] = TERMINAL, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Poll until the batch reaches one of `statuses`; TimeoutError otherwise."""
        wanted = set(statuses)
        deadline = time.monotonic() + timeout
        while True:
            try:
                batch = self.batch(ref)
            except requests.HTTPError:
                batch = None
            if batch is not None and batch["status"] in wanted:
                return batch
            if time.monotonic() > deadline:
                seen = batch["status"] if batch else "missing"
                raise TimeoutError(f"batch {ref} still {seen} after {timeout}s")
            time.sleep(0.02)


@dataclass
class SandboxProcess:
    """A running sandbox subprocess and how to reach it."""

    base_url: str
    ca_bundle: str
    state_dir: Path
    process: subprocess.Popen[bytes]
    control: SandboxControl
    log_path: Path
    client_key: str = DEFAULT_CLIENT_KEY
    api_token: str = DEFAULT_API_TOKEN
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        """The subprocess id."""
        return self.process.pid

    @property
    def auth(self) -> tuple[str, str]:
        """(client key, API token) for HTTP Basic auth."""
        return self.client_key, self.api_token

    def env(self) -> dict[str, str]:
        """The variables CDP Stage reads (see .env.example) to talk to this sandbox."""
        return {
            "CDP_BASE_URL": self.base_url,
            "CDP_CLIENT_KEY": self.client_key,
            "CDP_API_TOKEN": self.api_token,
            "REQUESTS_CA_BUNDLE": self.ca_bundle,
        }

    def log_text(self) -> str:
        """What the sandbox wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _arguments(state_dir: Path, options: dict[str, Any]) -> list[str]:
    args = [sys.executable, "-m", "cdpsandbox", "--state-dir", str(state_dir)]
    args += ["--port", str(options.pop("port", 0))]
    for fault in options.pop("faults", ()):
        args += ["--fault", fault]
    if options.pop("log_success_lines", False):
        args.append("--log-success-lines")
    for name, value in options.items():
        if isinstance(value, list | tuple):
            value = ",".join(value)
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def _wait_for_state(
    state_file: Path, process: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"sandbox exited with {process.returncode} before listening:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = None
        if state and state.get("pid") == process.pid:
            return state
        time.sleep(0.02)
    raise TimeoutError(f"sandbox did not write {state_file} within {timeout}s")


@contextmanager
def run_sandbox(
    state_dir: Path,
    *,
    client_key: str = DEFAULT_CLIENT_KEY,
    api_token: str = DEFAULT_API_TOKEN,
    start_timeout: float = 30.0,
    **options: Any,
) -> Iterator[SandboxProcess]:
    """Run `python -m cdpsandbox --port 0 --state-dir <state_dir> …` for the `with` block.

    Options are the command-line flags in snake case (`processing_delay=0.05`,
    `identity_providers=["email"]`, `faults=["allocate:503:2"]`, `log_success_lines=True`).
    On exit the process gets SIGTERM and must stop with status 0.
    """
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "sandbox.json").unlink(missing_ok=True)
    log_path = state_dir / "sandbox.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_PARENT), env.get("PYTHONPATH", "")) if p
    )
    env["CDP_SANDBOX_CLIENT_KEY"] = client_key
    env["CDP_SANDBOX_API_TOKEN"] = api_token
    env["PYTHONUNBUFFERED"] = "1"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            _arguments(state_dir, dict(options)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(state_dir),
        )
    try:
        state = _wait_for_state(state_dir / "sandbox.json", process, log_path, start_timeout)
    except BaseException:
        process.kill()
        process.wait()
        raise
    sandbox = SandboxProcess(
        base_url=state["base_url"],
        ca_bundle=state["ca_bundle"],
        state_dir=state_dir,
        process=process,
        control=SandboxControl(state["base_url"], state["ca_bundle"]),
        log_path=log_path,
        client_key=client_key,
        api_token=api_token,
        options=options,
    )
    failed = False
    try:
        yield sandbox
    except BaseException:
        failed = True
        raise
    finally:
        sandbox.control.session.close()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            if not failed:
                raise RuntimeError("sandbox did not stop within 10s of SIGTERM") from None
        else:
            if code != 0 and not failed:
                raise RuntimeError(f"sandbox exited with status {code}:\n{sandbox.log_text()}")
