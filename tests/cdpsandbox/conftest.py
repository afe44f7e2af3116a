"""Fixtures: one real sandbox process over HTTPS per session, reset before every test."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cdpsandbox.process import SandboxProcess, run_sandbox

MAX_FILE_SIZE = 2_000_000  # small, so the size-limit tests stay cheap
TERMINAL = ("success", "error", "corrupted")


def gzip_lines(lines: list[Any], *, line_end: str = "\n", final_newline: bool = True) -> bytes:
    """JSON-lines file (dicts are dumped, strings kept as-is), gzipped."""
    text = line_end.join(
        line if isinstance(line, str) else json.dumps(line, separators=(",", ":")) for line in lines
    )
    if final_newline:
        text += line_end
    return gzip.compress(text.encode("utf-8"))


def guest(email: str = "ada@example.com", ref: str | None = None, **fields: Any) -> dict:
    """A valid guest upsert record."""
    value = {
        "guestType": "customer",
        "email": email,
        "identifiers": [{"provider": "email", "id": email}],
        **fields,
    }
    return {"ref": ref or str(uuid.uuid4()), "schema": "guest", "mode": "upsert", "value": value}


def order(email: str = "ada@example.com", reference: str = "ORD-1", **fields: Any) -> dict:
    """A valid order insert record."""
    value = {
        "referenceId": reference,
        "channel": "WEB",
        "pointOfSale": "myretailsite.com",
        "status": "PURCHASED",
        "orderedAt": "2025-03-07T16:15:11.000Z",
        "currencyCode": "EUR",
        "price": 30.6,
        "paymentType": "Card",
        "cardType": "Visa",
        "contact": {"identifiers": [{"provider": "email", "id": email}]},
        "orderItems": [
            {
                "type": "PRODUCT",
                "productId": "SKU-1",
                "name": "Kettle",
                "description": "A kettle",
                "vendor": "ACME",
                "price": 30.6,
                "currencyCode": "EUR",
                "referenceId": f"{reference}-1",
                "quantity": 1,
            }
        ],
        **fields,
    }
    return {"ref": str(uuid.uuid4()), "schema": "order", "mode": "insert", "value": value}


def tracking(**fields: Any) -> dict:
    """A tracking event shaped like the only public example (G-NOTES)."""
    value = {
        "serviceIdentifier": "TEST_PROVIDER",
        "occurredAt": "2015-03-07T14:15:00.000Z",
        "channel": "EMAIL",
        "type": "SENT",
        "uotr": "c56a4180-65aa-42ec-a945-5fd21dec0538|0",
        "utms": {"utm_medium": "EMAIL", "utm_source": "BOXEVER"},
        **fields,
    }
    return {"ref": str(uuid.uuid4()), "schema": "tracking", "mode": "insert", "value": value}


def content_md5(body: bytes) -> str:
    """Base64 of the binary MD5 digest (S-UPLOAD)."""
    return base64.b64encode(hashlib.md5(body).digest()).decode()


class CdpApi:
    """What a client of the Batch API does, step by step, over real HTTPS."""

    def __init__(self, sandbox: SandboxProcess) -> None:
        self.sandbox = sandbox
        self.base = sandbox.base_url
        self.session = requests.Session()
        self.session.trust_env = False  # ignore REQUESTS_CA_BUNDLE etc. from the machine
        self.session.verify = sandbox.ca_bundle
        self.s3 = requests.Session()  # no Basic auth towards S3
        self.s3.trust_env = False
        self.s3.verify = sandbox.ca_bundle

    def allocate(
        self, ref: str, checksum: str, size: Any, *, auth: Any = "default", **kw: Any
    ) -> requests.Response:
        """PUT /v2/batches/{ref}."""
        return self.session.put(
            f"{self.base}/v2/batches/{ref}",
            json={"checksum": checksum, "size": size},
            auth=self.sandbox.auth if auth == "default" else auth,
            timeout=kw.pop("timeout", 10),
            **kw,
        )

    def upload(
        self, url: str, body: bytes, headers: dict[str, str] | None = None, **kw: Any
    ) -> requests.Response:
        """PUT the gzip to the pre-signed URL with the documented headers (overridable)."""
        sent = {"x-amz-server-side-encryption": "AES256", "Content-MD5": content_md5(body)}
        for name, value in (headers or {}).items():
            if value is None:
                sent.pop(name, None)
            else:
                sent[name] = value
        return self.s3.put(url, data=body, headers=sent, timeout=kw.pop("timeout", 10), **kw)

    def status(self, ref: str, *, inspect: bool = False, **kw: Any) -> requests.Response:
        """GET /v2/batches/{ref} or /v2/batches/inspect/{ref}."""
        path = f"inspect/{ref}" if inspect else ref
        return self.session.get(
            f"{self.base}/v2/batches/{path}",
            auth=self.sandbox.auth,
            timeout=kw.pop("timeout", 10),
            **kw,
        )

    def wait(self, ref: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 10) -> dict:
        """Poll the plain status endpoint until `statuses`; return the body."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.status(ref).json()
            if body["status"]["code"] in statuses:
                return body
            assert time.monotonic() < deadline, f"batch stuck in {body['status']['code']}"
            time.sleep(0.02)

    def fetch_log(self, url: str) -> list[dict]:
        """GET the log URL (no auth), gunzip, parse JSON lines."""
        response = self.s3.get(url, timeout=10)
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in gzip.decompress(response.content).splitlines()]

    def send(self, body: bytes, ref: str | None = None) -> str:
        """Allocate and upload `body`; return the batch ref."""
        ref = ref or str(uuid.uuid4())
        allocated = self.allocate(ref, hashlib.md5(body).hexdigest(), len(body))
        assert allocated.status_code == 201, allocated.text
        uploaded = self.upload(allocated.json()["location"]["href"], body)
        assert uploaded.status_code == 200, uploaded.text
        return ref

    def run(self, lines: list[Any], **kw: Any) -> dict:
        """Send a JSON-lines batch and wait for its terminal status."""
        return self.wait(self.send(gzip_lines(lines, **kw)))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One sandbox subprocess for the whole session (fast), with a small size limit."""
    state_dir: Path = tmp_path_factory.mktemp("cdpsandbox")
    with run_sandbox(
        state_dir,
        processing_delay=0.02,
        max_file_size=MAX_FILE_SIZE,
        identity_providers=["email", "CRM_ID"],
    ) as process:
        yield process


@pytest.fixture(autouse=True)
def _clean_sandbox(request: pytest.FixtureRequest) -> None:
    """Reset the shared sandbox before each test that uses it."""
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").control.reset()


@pytest.fixture
def api(sandbox: SandboxProcess) -> CdpApi:
    """A Batch API client bound to the shared sandbox."""
    return CdpApi(sandbox)
