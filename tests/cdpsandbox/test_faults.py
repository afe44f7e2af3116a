"""Fault injection: 500/503/429, reset, stall on each target; corruption; record failures."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import requests

from cdpsandbox.process import run_sandbox
from tests.cdpsandbox.conftest import CdpApi, guest, gzip_lines

# These tests start the sandbox as a real process (the project's `integration` marker).
pytestmark = pytest.mark.integration

BODY = gzip_lines([guest()])
CHECKSUM = hashlib.md5(BODY).hexdigest()


def allocated(api) -> tuple[str, str]:
    ref = str(uuid.uuid4())
    response = api.allocate(ref, CHECKSUM, len(BODY))
    assert response.status_code == 201
    return ref, response.json()["location"]["href"]


def uploaded_with_error_log(api) -> str:
    """A finished error batch; returns its ref."""
    ref = api.send(gzip_lines(["broken"]))
    api.wait(ref)
    return ref


def call(api, target: str, setup: dict, **kw) -> requests.Response:
    """Make the call that `target` faults: allocate, upload, status or log."""
    if target == "allocate":
        return api.allocate(setup["ref"], CHECKSUM, len(BODY), **kw)
    if target == "upload":
        return api.upload(setup["url"], BODY, **kw)
    if target == "status":
        return api.status(setup["ref"], **kw)
    return api.s3.get(setup["log"], **kw)


@pytest.fixture
def setup(api):
    """Objects every target needs: a fresh ref, an upload URL, a log URL."""
    log_ref = uploaded_with_error_log(api)
    ref, url = allocated(api)
    return {
        "ref": ref,
        "url": url,
        "log": api.status(log_ref).json()["status"]["log"],
        "fresh": str(uuid.uuid4()),
    }


TARGETS = ("allocate", "upload", "status", "log")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind", ["500", "503"])
def test_server_errors_then_recovery(api, sandbox, setup, target, kind):
    sandbox.control.fault(target=target, kind=kind, count=2)
    for _ in range(2):
        assert call(api, target, setup).status_code == int(kind)
    assert call(api, target, setup).status_code in (200, 201)
    faulted = [r for r in sandbox.control.requests() if r["fault"] == kind]
    assert len(faulted) == 2


@pytest.mark.parametrize("target", TARGETS)
def test_429_carries_retry_after(api, sandbox, setup, target):
    sandbox.control.fault(target=target, kind="429", retry_after=7)
    response = call(api, target, setup)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert call(api, target, setup).status_code in (200, 201)


def test_log_404_answers_no_such_key_then_the_log(api, sandbox, setup):
    sandbox.control.fault(target="log", kind="404", count=2)
    for _ in range(2):
        response = call(api, "log", setup)
        assert response.status_code == 404
        assert b"<Code>NoSuchKey</Code>" in response.content
    assert call(api, "log", setup).status_code == 200


def test_api_fault_bodies_are_json_and_s3_fault_bodies_are_xml(api, sandbox, setup):
    sandbox.control.fault(target="status", kind="503")
    assert api.status(setup["ref"]).json()["status"] == 503
    sandbox.control.fault(target="upload", kind="503")
    response = api.upload(setup["url"], BODY)
    assert response.headers["Content-Type"] == "application/xml"
    assert b"<Code>SlowDown</Code>" in response.content


@pytest.mark.parametrize("target", TARGETS)
def test_reset_drops_the_connection(api, sandbox, setup, target):
    sandbox.control.fault(target=target, kind="reset")
    with pytest.raises(requests.ConnectionError):
        call(api, target, setup)
    assert call(api, target, setup).status_code in (200, 201)
    assert any(r["status"] == "reset" for r in sandbox.control.requests())


@pytest.mark.parametrize("target", TARGETS)
def test_stall_makes_the_client_time_out(api, sandbox, setup, target):
    sandbox.control.fault(target=target, kind="stall", seconds=1.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        call(api, target, setup, timeout=0.3)
    assert call(api, target, setup).status_code in (200, 201)


def test_stalled_allocate_still_happens(api, sandbox):
    # The client timed out, but the server went on: the retry sees 200 (identical repeat).
    sandbox.control.fault(target="allocate", kind="stall", seconds=0.5)
    ref = str(uuid.uuid4())
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.allocate(ref, CHECKSUM, len(BODY), timeout=0.2)
    sandbox.control.wait_for_batch(ref, statuses=("uploading",), timeout=5)
    assert api.allocate(ref, CHECKSUM, len(BODY)).status_code == 200


def test_fault_counts_are_per_target(api, sandbox, setup):
    sandbox.control.fault(target="status", kind="500", count=1)
    assert api.allocate(setup["fresh"], CHECKSUM, len(BODY)).status_code == 201
    assert api.status(setup["fresh"]).status_code == 500
    assert api.status(setup["fresh"]).status_code == 200


def test_faults_are_listed_until_consumed(api, sandbox, setup):
    sandbox.control.fault(faults=[{"target": "upload", "kind": "503", "count": 3}])
    pending = sandbox.control.faults()["calls"]["upload"]
    assert pending == [
        {
            "target": "upload",
            "kind": "503",
            "count": 3,
            "retry_after": 1,
            "seconds": 5.0,
            "remaining": 3,
        }
    ]
    api.upload(setup["url"], BODY)
    assert sandbox.control.faults()["calls"]["upload"][0]["remaining"] == 2
    sandbox.control.reset()
    assert sandbox.control.faults()["calls"]["upload"] == []


def test_retries_are_visible_in_the_request_log(api, sandbox, setup):
    sandbox.control.fault(target="upload", kind="503", count=2)
    for _ in range(3):
        response = api.upload(setup["url"], BODY)
    assert response.status_code == 200
    path = setup["url"].split("?")[0].removeprefix(sandbox.base_url)
    puts = [r for r in sandbox.control.requests() if r["method"] == "PUT" and r["path"] == path]
    assert [r["status"] for r in puts] == [503, 503, 200]
    assert not any(r["authorization"] for r in puts)


def test_corrupt_next(api, sandbox):
    sandbox.control.fault(corrupt_next=1)
    first = api.send(BODY)
    second = api.send(gzip_lines([guest("b@example.com")]))
    assert api.wait(first)["status"]["code"] == "corrupted"
    assert api.wait(second)["status"]["code"] == "success"
    assert sandbox.control.faults()["corrupt_next"] == 0


def test_corrupt_ref_before_upload(api, sandbox):
    ref, url = allocated(api)
    sandbox.control.fault(corrupt_ref=ref)
    assert api.upload(url, BODY).status_code == 200
    assert api.wait(ref)["status"]["code"] == "corrupted"
    assert sandbox.control.batch(ref)["note"].startswith("forced")


def test_corrupt_ref_after_success(api, sandbox):
    ref = api.send(BODY)
    assert api.wait(ref)["status"]["code"] == "success"
    sandbox.control.fault(corrupt_ref=ref)
    assert api.status(ref).json()["status"] == {"code": "corrupted"}


def test_fail_records_with_chosen_code(api, sandbox):
    victim = guest("ada@example.com")
    other = guest("bob@example.com")
    sandbox.control.fault(fail_records={victim["ref"]: {"code": "500", "message": "Boom"}})
    final = api.run([victim, other])
    assert final["status"]["code"] == "error"
    assert api.fetch_log(final["status"]["log"]) == [
        {"ref": victim["ref"], "code": "500", "message": "Boom"}
    ]
    assert [p["fields"]["email"] for p in sandbox.control.profiles()] == ["bob@example.com"]
    # One-shot: the same record succeeds when sent again.
    assert api.run([victim])["status"]["code"] == "success"


@pytest.mark.parametrize(
    "payload",
    [
        {"target": "nowhere", "kind": "500"},
        {"target": "upload", "kind": "418"},
        {"target": "upload"},
        {"target": "upload", "kind": "500", "count": 0},
        {"target": "upload", "kind": "500", "count": "2"},
        {"corrupt_next": -1},
        {"url_lifetime": -5},
        {"fail_records": {"x": {"code": "abc"}}},
        {"fail_records": []},
        {"bogus": 1},
    ],
)
def test_bad_fault_requests_400(api, sandbox, payload):
    response = api.session.post(f"{sandbox.base_url}/_sandbox/faults", json=payload)
    assert response.status_code == 400
    assert response.json()["error"] == "BadRequest"
    assert sandbox.control.faults()["calls"]["upload"] == []


def test_faults_set_at_start(tmp_path):
    with run_sandbox(
        tmp_path, processing_delay=0.01, faults=["allocate:503:2", "status:429:1:9"]
    ) as started:
        api = CdpApi(started)
        ref = str(uuid.uuid4())
        assert api.allocate(ref, CHECKSUM, len(BODY)).status_code == 503
        assert api.allocate(ref, CHECKSUM, len(BODY)).status_code == 503
        assert api.allocate(ref, CHECKSUM, len(BODY)).status_code == 201
        response = api.status(ref)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "9"
