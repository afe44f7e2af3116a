"""Start-up options of the sandbox: command line first, then `CDP_SANDBOX_*` variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The documented gzip limit is 50 MB (cdp-batch-api.md §1.6, S-FORMAT); the 2015 spec allowed
# 100 MB, but that is history. We use decimal megabytes, as the docs do.
DEFAULT_MAX_FILE_SIZE = 50_000_000
# S-ALLOC: the pre-signed upload URL is valid for one hour.
DEFAULT_URL_LIFETIME = 3600
DEFAULT_IDENTITY_PROVIDERS = ("email", "CRM_ID")
DEFAULT_CLIENT_KEY = "sandbox-client-key"
# A well-known default is fine: the sandbox is a local stand-in, never a real tenant.
DEFAULT_API_TOKEN = "sandbox-api-token"

FAULT_TARGETS = ("allocate", "upload", "status", "log")
# 404: an S3 object (the error log) that is not there (yet), as S3 answers NoSuchKey.
FAULT_KINDS = ("500", "503", "429", "404", "reset", "stall")


@dataclass(frozen=True)
class FaultSpec:
    """One queued fault: the next `count` calls to `target` misbehave as `kind`."""

    target: str
    kind: str
    count: int = 1
    retry_after: int = 1
    seconds: float = 5.0

    def validate(self) -> None:
        """Raise ValueError with a readable sentence when a field is out of range."""
        if self.target not in FAULT_TARGETS:
            raise ValueError(f"fault target must be one of {', '.join(FAULT_TARGETS)}")
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        if not 1 <= self.count <= 10_000:
            raise ValueError("fault count must be between 1 and 10000")
        if not 0 <= self.retry_after <= 3600:
            raise ValueError("retry_after must be between 0 and 3600 seconds")
        if not 0 <= self.seconds <= 600:
            raise ValueError("stall seconds must be between 0 and 600")


def parse_fault(text: str) -> FaultSpec:
    """Parse `target:kind[:count[:param]]`, param being Retry-After (429) or seconds (stall)."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"bad fault {text!r}: expected target:kind[:count[:param]]")
    target, kind = parts[0], parts[1]
    count = int(parts[2]) if len(parts) > 2 else 1
    spec = FaultSpec(target=target, kind=kind, count=count)
    if len(parts) == 4:
        if kind == "429":
            spec = FaultSpec(target, kind, count, retry_after=int(parts[3]))
        elif kind == "stall":
            spec = FaultSpec(target, kind, count, seconds=float(parts[3]))
        else:
            raise ValueError(f"bad fault {text!r}: only 429 and stall take a parameter")
    spec.validate()
    return spec


@dataclass(frozen=True)
class SandboxConfig:
    """Everything the server needs to start; immutable once running (faults live elsewhere)."""

    host: str = "127.0.0.1"
    port: int = 8443
    state_dir: Path = Path(".sandbox")
    processing_delay: float = 0.5
    identity_providers: tuple[str, ...] = DEFAULT_IDENTITY_PROVIDERS
    url_lifetime: int = DEFAULT_URL_LIFETIME
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    client_key: str = DEFAULT_CLIENT_KEY
    api_token: str = DEFAULT_API_TOKEN
    # BX15 logs every record (2xx too); the current docs log failures only (§1.5, Q2).
    log_success_lines: bool = False
    faults: tuple[FaultSpec, ...] = field(default_factory=tuple)


def _env_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _providers(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("at least one identity provider is needed")
    # S-IDRULES: a tenant configures at most five identity rules.
    if len(names) > 5:
        raise argparse.ArgumentTypeError("CDP allows at most five identity rules")
    return names


def _fault(value: str) -> FaultSpec:
    try:
        return parse_fault(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """Build the argument parser; environment variables supply the defaults."""
    parser = argparse.ArgumentParser(
        prog="python -m cdpsandbox",
        description="HTTPS stand-in for the Sitecore CDP Batch API and its S3 upload.",
    )
    parser.add_argument("--host", default=env.get("CDP_SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port",
        type=int,
        default=int(env.get("CDP_SANDBOX_PORT", "8443")),
        help="0 picks a free port",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path(env.get("CDP_SANDBOX_STATE_DIR", ".sandbox"))
    )
    parser.add_argument(
        "--processing-delay",
        type=float,
        default=float(env.get("CDP_SANDBOX_PROCESSING_DELAY", "0.5")),
        help="seconds spent in file_uploaded and again in processing",
    )
    parser.add_argument(
        "--identity-providers",
        type=_providers,
        default=_providers(env.get("CDP_SANDBOX_IDENTITY_PROVIDERS", "email,CRM_ID")),
        help="comma-separated identity-rule providers, in priority order",
    )
    parser.add_argument(
        "--url-lifetime",
        type=int,
        default=int(env.get("CDP_SANDBOX_URL_LIFETIME", str(DEFAULT_URL_LIFETIME))),
        help="seconds a pre-signed upload/log URL stays valid",
    )
    parser.add_argument(
        "--max-file-size",
        type=int,
        default=int(env.get("CDP_SANDBOX_MAX_FILE_SIZE", str(DEFAULT_MAX_FILE_SIZE))),
    )
    parser.add_argument(
        "--log-success-lines",
        action="store_true",
        default=_env_bool(env.get("CDP_SANDBOX_LOG_SUCCESS_LINES", "")),
        help="also write 2xx lines to the error log (the 2015 behaviour)",
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        help="target:kind[:count[:param]], e.g. allocate:503:2 or status:429:1:3 (repeatable)",
    )
    return parser


def load_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> SandboxConfig:
    """Parse `argv` (default: sys.argv) with `env` (default: os.environ) as fallback."""
    env = os.environ if env is None else env
    parser = build_parser(env)
    args = parser.parse_args(argv)
    if args.url_lifetime < 0:
        parser.error("--url-lifetime must be >= 0")
    if args.max_file_size < 1:
        parser.error("--max-file-size must be positive")
    if args.processing_delay < 0:
        parser.error("--processing-delay must be >= 0")
    return SandboxConfig(
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        processing_delay=args.processing_delay,
        identity_providers=args.identity_providers,
        url_lifetime=args.url_lifetime,
        max_file_size=args.max_file_size,
        client_key=env.get("CDP_SANDBOX_CLIENT_KEY", DEFAULT_CLIENT_KEY),
        api_token=env.get("CDP_SANDBOX_API_TOKEN", DEFAULT_API_TOKEN),
        log_success_lines=args.log_success_lines,
        faults=tuple(args.fault),
    )
