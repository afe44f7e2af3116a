"""GET /v2/batches/inspect: the 30-day list with status filter and paging (S-INSPECT)."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from tests.cdpsandbox.conftest import guest, gzip_lines

# These tests start the sandbox as a real process (the project's `integration` marker).
pytestmark = pytest.mark.integration


@pytest.fixture
def three_batches(api):
    """One success, one error, one still uploading; newest last."""
    ok = api.send(gzip_lines([guest()]))
    api.wait(ok)
    bad = api.send(gzip_lines(["broken"]))
    api.wait(bad)
    waiting = str(uuid.uuid4())
    api.allocate(waiting, hashlib.md5(b"x").hexdigest(), 10)
    return ok, bad, waiting


def listing(api, sandbox, **params):
    response = api.session.get(
        f"{sandbox.base_url}/v2/batches/inspect", params=params, auth=sandbox.auth
    )
    return response


def test_inspect_list_all(api, sandbox, three_batches):
    ok, bad, waiting = three_batches
    body = listing(api, sandbox).json()
    assert body["totalCount"] == 3
    assert body["offset"] == 0
    assert body["limit"] == 100
    assert [item["ref"] for item in body["items"]] == [waiting, bad, ok]  # newest first
    item = body["items"][2]
    assert item["href"] == f"{sandbox.base_url}/v2/batches/inspect/{ok}"
    assert item["status"] == "success"  # a plain string in list items
    assert set(item) == {"href", "ref", "status", "createdAt", "modifiedAt"}
    error_item = body["items"][1]
    assert error_item["status"] == "error"
    assert "Signature=" in error_item["log"]


def test_inspect_list_status_filter(api, sandbox, three_batches):
    ok, bad, _waiting = three_batches
    body = listing(api, sandbox, status="success,error").json()
    assert body["totalCount"] == 2
    assert {item["ref"] for item in body["items"]} == {ok, bad}
    assert listing(api, sandbox, status="uploading").json()["totalCount"] == 1


def test_inspect_list_offset_and_limit(api, sandbox, three_batches):
    _ok, bad, _waiting = three_batches
    body = listing(api, sandbox, offset=1, limit=1).json()
    assert body["totalCount"] == 3
    assert body["offset"] == 1
    assert body["limit"] == 1
    assert [item["ref"] for item in body["items"]] == [bad]
    assert listing(api, sandbox, offset=5).json()["items"] == []


def test_inspect_list_created_before(api, sandbox, three_batches):
    assert listing(api, sandbox, createdBefore="2000-01-01T00:00:00.000Z").json()["totalCount"] == 0
    assert listing(api, sandbox, createdBefore="2999-01-01T00:00Z").json()["totalCount"] == 3


@pytest.mark.parametrize(
    "params",
    [
        {"status": "done"},
        {"offset": "-1"},
        {"offset": "x"},
        {"limit": "0"},
        {"limit": "100000"},
        {"createdBefore": "yesterday"},
    ],
)
def test_inspect_list_bad_parameters_400(api, sandbox, params):
    response = listing(api, sandbox, **params)
    assert response.status_code == 400
    assert response.json()["status"] == 400


def test_inspect_list_requires_auth(api, sandbox):
    response = api.session.get(f"{sandbox.base_url}/v2/batches/inspect")
    assert response.status_code == 401


def test_inspect_one_matches_status(api, sandbox):
    ref = api.send(gzip_lines([guest()]))
    final = api.wait(ref)
    inspected = api.status(ref, inspect=True).json()
    assert inspected["status"] == final["status"]
    assert inspected["ref"] == ref
