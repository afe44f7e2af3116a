"""The S3 side of the upload: query auth, required headers, digests, limits (§1.3)."""

from __future__ import annotations

import hashlib
import http.client
import ssl
import uuid
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
import requests

from tests.cdpsandbox.conftest import MAX_FILE_SIZE, content_md5, guest, gzip_lines

# These tests start the sandbox as a real process (the project's `integration` marker).
pytestmark = pytest.mark.integration


def s3_error(response: requests.Response | http.client.HTTPResponse, status: int) -> ET.Element:
    """Assert an S3-style XML error and return its root."""
    if isinstance(response, requests.Response):
        code, content_type, body = response.status_code, response.headers, response.content
    else:
        code, content_type, body = response.status, response.headers, response.read()
    assert code == status, body
    assert content_type["Content-Type"] == "application/xml"
    root = ET.fromstring(body)
    assert root.tag == "Error"
    assert root.findtext("Code")
    assert root.findtext("Message")
    assert root.findtext("RequestId")
    return root


@pytest.fixture
def slot(api):
    """An allocated batch for a one-guest file: (ref, upload URL, body)."""
    body = gzip_lines([guest()])
    ref = str(uuid.uuid4())
    response = api.allocate(ref, hashlib.md5(body).hexdigest(), len(body))
    return ref, response.json()["location"]["href"], body


def raw_put(
    sandbox, url: str, headers: dict[str, str], body: bytes = b""
) -> http.client.HTTPResponse:
    """A PUT through http.client, for header combinations `requests` will not send."""
    context = ssl.create_default_context(cafile=sandbox.ca_bundle)
    parts = urlsplit(url)
    connection = http.client.HTTPSConnection(
        parts.hostname, parts.port, context=context, timeout=10
    )
    connection.putrequest("PUT", f"{parts.path}?{parts.query}", skip_accept_encoding=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    if body:
        connection.send(body)
    return connection.getresponse()


def test_upload_happy_path_empty_200(api, slot, sandbox):
    ref, url, body = slot
    response = api.upload(url, body, {"Content-Type": "application/gzip"})
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    batch = sandbox.control.batch(ref)
    assert batch["received_checksum"] == batch["declared_checksum"]
    assert batch["received_size"] == batch["declared_size"] == len(body)
    assert batch["upload_count"] == 1
    assert batch["upload_headers"]["x-amz-server-side-encryption"] == "AES256"
    assert batch["upload_headers"]["content-md5"] == content_md5(body)
    assert batch["upload_headers"]["content-type"] == "application/gzip"
    assert batch["upload_headers"]["authorization_present"] == "no"
    assert api.wait(ref)["status"]["code"] == "success"


def test_upload_without_content_type_accepted(api, slot, sandbox):
    # Q3: BX15 and every code sample send no Content-Type; the current docs send one.
    ref, url, body = slot
    assert api.upload(url, body).status_code == 200
    assert "content-type" not in sandbox.control.batch(ref)["upload_headers"]


def test_upload_with_authorization_header_refused(api, slot, sandbox):
    ref, url, body = slot
    response = api.upload(url, body, {"Authorization": "Basic c2VjcmV0OnNlY3JldA=="})
    root = s3_error(response, 400)
    assert root.findtext("Code") == "InvalidArgument"
    assert root.findtext("ArgumentName") == "Authorization"
    batch = sandbox.control.batch(ref)
    assert batch["status"] == "uploading"
    attempt = batch["upload_attempts"][-1]
    assert attempt["headers"]["authorization_present"] == "yes"
    assert "authorization" not in attempt["headers"]
    assert "c2VjcmV0" not in str(batch)


def test_upload_with_basic_auth_via_requests_refused(api, slot, sandbox):
    _ref, url, body = slot
    response = api.s3.put(
        url,
        data=body,
        auth=sandbox.auth,
        headers={"x-amz-server-side-encryption": "AES256", "Content-MD5": content_md5(body)},
    )
    assert s3_error(response, 400).findtext("Code") == "InvalidArgument"


def test_upload_missing_sse_header_403(api, slot):
    _ref, url, body = slot
    response = api.upload(url, body, {"x-amz-server-side-encryption": None})
    root = s3_error(response, 403)
    assert root.findtext("Code") == "SignatureDoesNotMatch"
    assert "x-amz-server-side-encryption:AES256" in root.findtext("StringToSign")


def test_upload_wrong_sse_value_403(api, slot):
    _ref, url, body = slot
    response = api.upload(url, body, {"x-amz-server-side-encryption": "aws:kms"})
    assert s3_error(response, 403).findtext("Code") == "SignatureDoesNotMatch"


def test_upload_missing_content_md5_400(api, slot):
    _ref, url, body = slot
    response = api.upload(url, body, {"Content-MD5": None})
    root = s3_error(response, 400)
    assert root.findtext("Code") == "InvalidRequest"
    assert "Content-MD5" in root.findtext("Message")


def test_upload_content_md5_of_hex_text_invalid_digest(api, slot):
    # The classic mistake: base64 of the 32 hex characters instead of the 16 digest bytes.
    import base64

    _ref, url, body = slot
    wrong = base64.b64encode(hashlib.md5(body).hexdigest().encode()).decode()
    response = api.upload(url, body, {"Content-MD5": wrong})
    assert s3_error(response, 400).findtext("Code") == "InvalidDigest"


def test_upload_content_md5_mismatch_bad_digest(api, slot, sandbox):
    ref, url, body = slot
    response = api.upload(url, body, {"Content-MD5": content_md5(b"something else")})
    root = s3_error(response, 400)
    assert root.findtext("Code") == "BadDigest"
    assert root.findtext("CalculatedDigest") == content_md5(body)
    assert sandbox.control.batch(ref)["status"] == "uploading"


def test_upload_tampered_signature_403(api, slot):
    _ref, url, body = slot
    tampered = url.replace("Signature=", "Signature=AAAA")
    assert s3_error(api.upload(tampered, body), 403).findtext("Code") == "SignatureDoesNotMatch"


def test_upload_other_batch_path_with_this_signature_403(api, slot):
    _ref, url, body = slot
    parts = urlsplit(url)
    other = url.replace(parts.path, parts.path.replace("import.gz", "other.gz"))
    assert api.upload(other, body).status_code in (403, 404)


def test_upload_without_query_auth_403(api, slot):
    _ref, url, body = slot
    response = api.upload(url.split("?", 1)[0], body)
    assert s3_error(response, 403).findtext("Code") == "AccessDenied"


def test_upload_wrong_access_key_403(api, slot):
    _ref, url, body = slot
    wrong = url.replace("AWSAccessKeyId=AKIA", "AWSAccessKeyId=XKIA")
    assert s3_error(api.upload(wrong, body), 403).findtext("Code") == "InvalidAccessKeyId"


def test_upload_expired_url_403(api, sandbox):
    sandbox.control.fault(url_lifetime=0)
    body = gzip_lines([guest()])
    ref = str(uuid.uuid4())
    allocated = api.allocate(ref, hashlib.md5(body).hexdigest(), len(body)).json()
    response = api.upload(allocated["location"]["href"], body)
    root = s3_error(response, 403)
    assert root.findtext("Code") == "AccessDenied"
    assert root.findtext("Message") == "Request has expired"
    assert root.findtext("Expires") == allocated["location"]["expiry"]
    # Re-allocating the same ref (identical) hands out a fresh URL once the lifetime is back.
    sandbox.control.fault(url_lifetime=None)
    again = api.allocate(ref, hashlib.md5(body).hexdigest(), len(body))
    assert again.status_code == 200
    assert api.upload(again.json()["location"]["href"], body).status_code == 200


def test_url_lifetime_sets_expiry(api, sandbox):
    sandbox.control.fault(url_lifetime=120)
    response = api.allocate(str(uuid.uuid4()), "0" * 32, 10).json()
    created = response["createdAt"][:19]
    expiry = response["location"]["expiry"][:19]
    from datetime import datetime

    delta = datetime.fromisoformat(expiry) - datetime.fromisoformat(created)
    assert 118 <= delta.total_seconds() <= 121


def test_upload_declared_size_over_limit_entity_too_large(sandbox, slot):
    _ref, url, _body = slot
    response = raw_put(
        sandbox,
        url,
        {
            "x-amz-server-side-encryption": "AES256",
            "Content-MD5": content_md5(b"x"),
            "Content-Length": str(MAX_FILE_SIZE + 1),
        },
    )
    root = s3_error(response, 400)
    assert root.findtext("Code") == "EntityTooLarge"
    assert root.findtext("MaxSizeAllowed") == str(MAX_FILE_SIZE)


def test_upload_without_content_length_411(sandbox, slot):
    _ref, url, _body = slot
    response = raw_put(
        sandbox, url, {"x-amz-server-side-encryption": "AES256", "Content-MD5": content_md5(b"")}
    )
    assert s3_error(response, 411).findtext("Code") == "MissingContentLength"


def test_upload_chunked_not_implemented(sandbox, slot):
    _ref, url, body = slot
    response = raw_put(
        sandbox,
        url,
        {
            "x-amz-server-side-encryption": "AES256",
            "Content-MD5": content_md5(body),
            "Transfer-Encoding": "chunked",
        },
        f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n",
    )
    assert s3_error(response, 501).findtext("Code") == "NotImplemented"


def test_body_differs_from_declared_ends_corrupted(api, sandbox):
    declared = gzip_lines([guest()])
    sent = gzip_lines([guest(), guest("bob@example.com")])
    ref = str(uuid.uuid4())
    url = api.allocate(ref, hashlib.md5(declared).hexdigest(), len(declared)).json()["location"]
    assert api.upload(url["href"], sent).status_code == 200  # S3 itself is happy
    final = api.wait(ref)
    assert final["status"] == {"code": "corrupted"}
    batch = sandbox.control.batch(ref)
    assert batch["received_checksum"] == hashlib.md5(sent).hexdigest()
    assert batch["received_size"] == len(sent)
    assert batch["declared_size"] == len(declared)
    assert sandbox.control.profiles() == []


def test_same_size_other_bytes_ends_corrupted(api):
    body = gzip_lines([guest()])
    other = bytearray(body)
    other[-5] ^= 0xFF
    ref = str(uuid.uuid4())
    url = api.allocate(ref, hashlib.md5(body).hexdigest(), len(body)).json()["location"]["href"]
    assert api.upload(url, bytes(other)).status_code == 200
    assert api.wait(ref)["status"]["code"] == "corrupted"


def test_repeated_upload_after_receipt_is_accepted_and_ignored(api, slot, sandbox):
    ref, url, body = slot
    assert api.upload(url, body).status_code == 200
    assert api.wait(ref)["status"]["code"] == "success"
    assert api.upload(url, body).status_code == 200
    batch = sandbox.control.batch(ref)
    assert batch["upload_count"] == 2
    assert batch["status"] == "success"
    assert "ignored" in batch["note"]


def test_upload_after_reset_refused(api, slot, sandbox):
    _ref, url, body = slot
    sandbox.control.reset()
    assert s3_error(api.upload(url, body), 403).findtext("Code") == "AccessDenied"


def test_plain_http_is_refused(sandbox):
    with pytest.raises(requests.ConnectionError):
        requests.get(
            sandbox.base_url.replace("https://", "http://") + "/_sandbox/health", timeout=5
        )


def test_untrusted_client_cannot_connect(sandbox):
    session = requests.Session()
    session.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        session.get(sandbox.base_url + "/_sandbox/health", verify=True, timeout=5)
