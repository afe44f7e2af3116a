"""Allocate, status and error bodies of the Batch API side (§1.2, §1.4)."""

from __future__ import annotations

import hashlib
import re
import uuid

import pytest
import requests

from tests.cdpsandbox.conftest import MAX_FILE_SIZE, guest, gzip_lines

# These tests start the sandbox as a real process (the project's `integration` marker).
pytestmark = pytest.mark.integration

CHECKSUM = "b1d600dbf7463924e24647e626cd7c1e"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def assert_error_body(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"status", "code", "message", "developerMessage", "moreInfo"}
    assert body["status"] == status
    assert body["code"] == status
    return body


def test_allocate_first_time_201_with_documented_shape(api, sandbox):
    ref = str(uuid.uuid4())
    response = api.allocate(ref, CHECKSUM, 227)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "href",
        "ref",
        "checksum",
        "size",
        "location",
        "status",
        "createdAt",
        "modifiedAt",
    }
    assert body["href"] == f"{sandbox.base_url}/v2/batches/{ref}"
    assert body["ref"] == ref
    assert body["checksum"] == CHECKSUM
    assert body["size"] == 227
    assert body["status"] == {"code": "uploading"}
    assert set(body["location"]) == {"href", "expiry"}
    assert body["location"]["href"].startswith(sandbox.base_url + "/s3/")
    assert "Signature=" in body["location"]["href"]
    assert ISO_MS.match(body["location"]["expiry"])
    assert ISO_MS.match(body["createdAt"])
    assert ISO_MS.match(body["modifiedAt"])


def test_allocate_identical_repeat_200(api, sandbox):
    ref = str(uuid.uuid4())
    assert api.allocate(ref, CHECKSUM, 227).status_code == 201
    again = api.allocate(ref, CHECKSUM, 227)
    assert again.status_code == 200
    assert again.json()["ref"] == ref
    assert sandbox.control.batch(ref)["allocate_count"] == 2


def test_allocate_changed_checksum_409(api):
    ref = str(uuid.uuid4())
    api.allocate(ref, CHECKSUM, 227)
    body = assert_error_body(api.allocate(ref, "0" * 32, 227), 409)
    assert "batchRef" in body["message"]


def test_allocate_changed_size_409(api):
    ref = str(uuid.uuid4())
    api.allocate(ref, CHECKSUM, 227)
    assert_error_body(api.allocate(ref, CHECKSUM, 228), 409)


def test_allocate_size_as_digit_string_accepted(api):
    # §7: C-AGEHLOT and the 2015 template send size as a string; the docs say integer.
    ref = str(uuid.uuid4())
    response = api.allocate(ref, CHECKSUM, "227")
    assert response.status_code == 201
    assert response.json()["size"] == 227
    assert api.allocate(ref, CHECKSUM, 227).status_code == 200


def test_allocate_missing_credentials_401(api):
    response = api.allocate(str(uuid.uuid4()), CHECKSUM, 227, auth=None)
    assert_error_body(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_allocate_wrong_token_401(api, sandbox):
    response = api.allocate(str(uuid.uuid4()), CHECKSUM, 227, auth=(sandbox.client_key, "nope"))
    assert_error_body(response, 401)


def test_status_wrong_credentials_401(api, sandbox):
    ref = str(uuid.uuid4())
    api.allocate(ref, CHECKSUM, 227)
    response = api.session.get(f"{sandbox.base_url}/v2/batches/{ref}", auth=("x", "y"))
    assert_error_body(response, 401)


def test_allocate_non_uuid_ref_400(api):
    assert_error_body(api.allocate("batch-1", CHECKSUM, 227), 400)


def test_allocate_wrong_content_type_415(api, sandbox):
    response = api.session.put(
        f"{sandbox.base_url}/v2/batches/{uuid.uuid4()}",
        data=f'{{"checksum":"{CHECKSUM}","size":227}}',
        headers={"Content-Type": "text/plain"},
        auth=sandbox.auth,
    )
    assert_error_body(response, 415)


def test_allocate_invalid_json_400(api, sandbox):
    response = api.session.put(
        f"{sandbox.base_url}/v2/batches/{uuid.uuid4()}",
        data="{not json",
        headers={"Content-Type": "application/json"},
        auth=sandbox.auth,
    )
    assert_error_body(response, 400)


def test_allocate_body_not_object_400(api, sandbox):
    response = api.session.put(
        f"{sandbox.base_url}/v2/batches/{uuid.uuid4()}", json=[1, 2], auth=sandbox.auth
    )
    assert_error_body(response, 400)


def test_allocate_bad_checksum_400(api):
    assert_error_body(api.allocate(str(uuid.uuid4()), "abc", 227), 400)
    assert_error_body(api.allocate(str(uuid.uuid4()), None, 227), 400)


def test_allocate_bad_size_400(api):
    for size in (0, -5, 2.5, True, "12a", None):
        assert_error_body(api.allocate(str(uuid.uuid4()), CHECKSUM, size), 400)


def test_allocate_size_over_limit_400(api):
    body = assert_error_body(api.allocate(str(uuid.uuid4()), CHECKSUM, MAX_FILE_SIZE + 1), 400)
    assert "split" in body["message"]


def test_allocate_oversized_request_body_413(api, sandbox):
    response = api.session.put(
        f"{sandbox.base_url}/v2/batches/{uuid.uuid4()}",
        data=b"{" + b" " * 70_000 + b"}",
        headers={"Content-Type": "application/json"},
        auth=sandbox.auth,
    )
    assert_error_body(response, 413)


def test_upper_case_checksum_ends_corrupted(api, sandbox):
    # B-KEZHAN: an upper-case hex checksum was accepted at allocation but ended `corrupted`.
    body = gzip_lines([guest()])
    ref = str(uuid.uuid4())
    allocated = api.allocate(ref, hashlib.md5(body).hexdigest().upper(), len(body))
    assert allocated.status_code == 201
    assert api.upload(allocated.json()["location"]["href"], body).status_code == 200
    assert api.wait(ref)["status"]["code"] == "corrupted"


def test_status_unknown_batch_404(api):
    assert_error_body(api.status(str(uuid.uuid4())), 404)
    assert_error_body(api.status(str(uuid.uuid4()), inspect=True), 404)


def test_status_non_uuid_400(api):
    assert_error_body(api.status("not-a-uuid"), 400)


def test_unsupported_method_405(api, sandbox):
    response = api.session.delete(
        f"{sandbox.base_url}/v2/batches/{uuid.uuid4()}", auth=sandbox.auth
    )
    assert_error_body(response, 405)
    assert "PUT" in response.headers["Allow"]


def test_unknown_path_404(api, sandbox):
    response = api.session.get(f"{sandbox.base_url}/v3/whatever", auth=sandbox.auth)
    assert_error_body(response, 404)


def test_status_after_allocate_is_uploading(api):
    ref = str(uuid.uuid4())
    api.allocate(ref, CHECKSUM, 227)
    body = api.status(ref).json()
    assert body["status"] == {"code": "uploading"}
    assert body["href"].endswith(f"/v2/batches/{ref}")
    inspected = api.status(ref, inspect=True).json()
    assert inspected["href"].endswith(f"/v2/batches/inspect/{ref}")
