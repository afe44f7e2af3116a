"""Loopback-only control endpoints under /_sandbox/: inspection, faults, reset."""

from __future__ import annotations

import json
import re
from typing import Any

from cdpsandbox.config import FaultSpec
from cdpsandbox.handler import MAX_SMALL_BODY, BodyError, SandboxHandler
from cdpsandbox.store import FILE_UPLOADED, PROCESSING, TERMINAL

FAULT_KEYS = frozenset({"target", "kind", "count", "retry_after", "seconds"})
OTHER_KEYS = frozenset(
    {"faults", "corrupt_next", "corrupt_ref", "url_lifetime", "url_base", "fail_records"}
)


def write_control_error(
    handler: SandboxHandler, status: int, code: str, message: str, headers: dict[str, str]
) -> None:
    """Plain JSON error for the control endpoints."""
    handler.send_json(status, {"error": code, "message": message}, headers)


def list_batches(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET /_sandbox/batches: every batch, newest first, without records."""
    with handler.sandbox.batches.lock:
        payload = [batch.inspection(full=False) for batch in handler.sandbox.batches.all()]
    handler.send_json(200, payload)


def show_batch(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET /_sandbox/batches/{ref}: declared vs received, headers, records, outcomes."""
    with handler.sandbox.batches.lock:
        batch = handler.sandbox.batches.get(match["ref"].lower())
        payload = batch.inspection(full=True) if batch else None
    if payload is None:
        handler.error(404, "NotFound", "no such batch")
        return
    handler.send_json(200, payload)


def list_profiles(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET /_sandbox/profiles: the merged guest profiles."""
    handler.send_json(200, handler.sandbox.profiles.profiles())


def list_orders(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET /_sandbox/orders: every stored order with its guest id."""
    handler.send_json(200, handler.sandbox.profiles.orders())


def list_events(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET /_sandbox/events: every stored tracking event."""
    handler.send_json(200, handler.sandbox.profiles.events())


def list_migrations(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET /_sandbox/migrations: every applied guest migration (from and to profile ids)."""
    handler.send_json(200, handler.sandbox.profiles.migrations())


def list_requests(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET /_sandbox/requests: API and S3 requests seen (method, path, status, auth present)."""
    handler.send_json(200, handler.sandbox.requests.entries())


def health(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET /_sandbox/health: liveness and the base URL."""
    handler.send_json(200, {"ok": True, "base_url": handler.sandbox.base_url})


def reset(handler: SandboxHandler, match: re.Match[str]) -> None:
    """POST /_sandbox/reset: forget batches, profiles, faults and the request log."""
    handler.sandbox.reset()
    handler.send_json(200, {"reset": True})


def show_faults(handler: SandboxHandler, match: re.Match[str]) -> None:
    """GET /_sandbox/faults: what is pending."""
    handler.send_json(200, handler.sandbox.faults.snapshot())


def _fault_spec(data: dict[str, Any]) -> FaultSpec:
    unknown = set(data) - FAULT_KEYS
    if unknown:
        raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
    if "target" not in data or "kind" not in data:
        raise ValueError("a fault needs target and kind")
    spec = FaultSpec(
        target=str(data["target"]),
        kind=str(data["kind"]),
        count=_integer(data.get("count", 1), "count"),
        retry_after=_integer(data.get("retry_after", 1), "retry_after"),
        seconds=float(_number(data.get("seconds", 5.0), "seconds")),
    )
    spec.validate()
    return spec


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _record_failures(value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict):
        raise ValueError("fail_records must map record refs to {code, message}")
    failures = {}
    for ref, outcome in value.items():
        if not isinstance(outcome, dict):
            raise ValueError("each fail_records entry must be an object")
        code = str(outcome.get("code", "400"))
        if not re.fullmatch(r"[1-5]\d\d", code):
            raise ValueError("fail_records code must be an HTTP-like status such as 400")
        message = outcome.get("message", "Validation error")
        if not isinstance(message, str):
            raise ValueError("fail_records message must be a string")
        failures[str(ref)] = {"code": code, "message": message}
    return failures


def _apply(handler: SandboxHandler, data: dict[str, Any]) -> None:
    """Validate everything first, then change the board, so a bad request changes nothing."""
    unknown = set(data) - FAULT_KEYS - OTHER_KEYS
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    specs = []
    if FAULT_KEYS & set(data):
        specs.append(_fault_spec({k: v for k, v in data.items() if k in FAULT_KEYS}))
    for item in data.get("faults", []):
        if not isinstance(item, dict):
            raise ValueError("faults must be a list of objects")
        specs.append(_fault_spec(item))
    corrupt_next = _integer(data.get("corrupt_next", 0), "corrupt_next")
    if corrupt_next < 0:
        raise ValueError("corrupt_next must be >= 0")
    corrupt_ref = data.get("corrupt_ref")
    if corrupt_ref is not None and not isinstance(corrupt_ref, str):
        raise ValueError("corrupt_ref must be a batch ref")
    lifetime = data.get("url_lifetime", ...)
    if lifetime is not ... and lifetime is not None:
        lifetime = _integer(lifetime, "url_lifetime")
        if lifetime < 0:
            raise ValueError("url_lifetime must be >= 0")
    url_base = data.get("url_base", ...)
    if url_base not in (..., None) and (
        not isinstance(url_base, str) or not re.fullmatch(r"https?://[^/?#\s]+", url_base)
    ):
        raise ValueError("url_base must be an origin such as https://elsewhere.example:8443")
    failures = _record_failures(data["fail_records"]) if "fail_records" in data else {}

    sandbox = handler.sandbox
    for spec in specs:
        sandbox.faults.add(spec)
    if corrupt_next:
        sandbox.faults.corrupt_next(corrupt_next)
    if lifetime is not ...:
        sandbox.faults.set_url_lifetime(lifetime)
    if url_base is not ...:
        sandbox.faults.set_url_base(url_base)
    if failures:
        sandbox.faults.fail_records(failures)
    if corrupt_ref is not None:
        with sandbox.batches.lock:
            batch = sandbox.batches.get(corrupt_ref.lower())
            has_file = batch is not None and (
                batch.status in (FILE_UPLOADED, PROCESSING) or batch.status in TERMINAL
            )
            if has_file:
                sandbox.processor.force_corrupt(batch)  # type: ignore[arg-type]
            else:
                sandbox.faults.corrupt_ref(corrupt_ref.lower())


def set_faults(handler: SandboxHandler, match: re.Match[str]) -> None:
    """POST /_sandbox/faults: queue call faults, corruptions, URL lifetime, record failures."""
    try:
        data = json.loads(handler.read_body(MAX_SMALL_BODY).decode("utf-8") or "{}")
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        _apply(handler, data)
    except BodyError as exc:
        handler.error(exc.status, exc.code, exc.message)
        return
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        handler.error(400, "BadRequest", str(exc))
        return
    handler.send_json(200, handler.sandbox.faults.snapshot())
