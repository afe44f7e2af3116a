"""batches.client against the HTTPS sandbox (what arrived is read from the sandbox's own
inspection endpoint), plus the parsers on their own."""

import gzip
import hashlib
import io
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from batches.client import (
    AUTH_MESSAGE,
    CdpAuthError,
    CdpClient,
    CdpConfigurationError,
    CdpConflictError,
    CdpPermanentError,
    CdpTransientError,
    CdpUploadExpiredError,
    CdpUrlRefusedError,
    origin_of,
    parse_error_log,
    parse_retry_after,
    strip_query,
)


def _file(*refs: str, email: str = "ada@example.com") -> bytes:
    lines = [
        f'{{"ref":"{ref}","schema":"guest","mode":"upsert","value":{{"guestType":"customer",'
        f'"email":"{email}","identifiers":[{{"provider":"email","id":"{email}"}}]}}}}\n'
        for ref in refs
    ]
    return gzip.compress("".join(lines).encode(), mtime=0)


def _client(sandbox, calls=None, **kw) -> CdpClient:
    return CdpClient(
        base_url=sandbox.base_url,
        client_key=kw.pop("client_key", sandbox.client_key),
        api_token=kw.pop("api_token", sandbox.api_token),
        timeout=kw.pop("timeout", 10),
        on_call=(calls.append if calls is not None else None),
        **kw,
    )


def _send(client: CdpClient, body: bytes, ref: str | None = None) -> str:
    ref = ref or str(uuid.uuid4())
    md5 = hashlib.md5(body).hexdigest()
    allocated = client.allocate(ref, checksum=md5, size=len(body))
    client.upload(allocated.location_url, io.BytesIO(body), md5_hex=md5, size=len(body))
    return ref


def _wait(client: CdpClient, ref: str):
    deadline = time.monotonic() + 20
    while True:
        status = client.status(ref)
        if status.is_terminal:
            return status
        assert time.monotonic() < deadline, status.code
        time.sleep(0.05)


def test_cdp_client_refuses_plain_http_and_missing_credentials():
    with pytest.raises(CdpConfigurationError, match="https://"):
        CdpClient(base_url="http://cdp.example.test", client_key="k", api_token="t")
    with pytest.raises(CdpConfigurationError, match="CDP_CLIENT_KEY and CDP_API_TOKEN"):
        CdpClient(base_url="https://cdp.example.test", client_key="k", api_token="")
    assert "t0ken" not in repr(
        CdpClient(base_url="https://cdp.example.test", client_key="k", api_token="t0ken")
    )


def test_cdp_client_from_settings_reads_settings_when_called(settings):
    settings.CDP_BASE_URL = "https://one.example.test/"
    settings.CDP_CLIENT_KEY, settings.CDP_API_TOKEN = "key", "token"
    settings.CDP_HTTP_TIMEOUT = 7
    client = CdpClient.from_settings()
    assert client.base_url == "https://one.example.test"
    assert client.timeout == (7.0, 7.0)


@pytest.mark.integration
def test_cdp_client_round_trip_sends_documented_headers_and_no_auth_to_s3(sandbox):
    calls = []
    client = _client(sandbox, calls)
    body = _file(str(uuid.uuid4()), str(uuid.uuid4()))
    ref = _send(client, body)
    status = _wait(client, ref)

    assert status.code == "success"
    assert status.stats["totalCount"] == 2
    arrived = sandbox.control.batch(ref)
    assert arrived["received_checksum"] == hashlib.md5(body).hexdigest()
    assert arrived["received_size"] == len(body)
    assert arrived["upload_count"] == 1
    headers = arrived["upload_headers"]
    assert headers["authorization_present"] == "no"
    assert headers["x-amz-server-side-encryption"] == "AES256"
    assert (
        headers["content-md5"]
        == __import__("base64").b64encode(hashlib.md5(body).digest()).decode()
    )
    assert headers["content-type"] == "application/gzip"
    # The audit hook saw every call, never a query string (pre-signed signatures).
    assert [(c.target, c.method) for c in calls[:2]] == [("api", "PUT"), ("upload", "PUT")]
    assert all("?" not in c.path and "Signature" not in c.path for c in calls)
    assert calls[0].path == f"/v2/batches/{ref}"
    assert calls[0].http_status == 201
    # Nothing in the stored reply carries the signature either.
    assert "Signature" not in str(status.raw)


@pytest.mark.integration
def test_cdp_client_upload_content_type_is_configurable(sandbox):
    client = _client(sandbox, upload_content_type="")
    ref = _send(client, _file(str(uuid.uuid4())))
    assert "content-type" not in sandbox.control.batch(ref)["upload_headers"]


@pytest.mark.integration
def test_cdp_client_transient_faults_raise_transient_errors(sandbox):
    client = _client(sandbox)
    body = _file(str(uuid.uuid4()))
    md5 = hashlib.md5(body).hexdigest()
    ref = str(uuid.uuid4())
    sandbox.control.fault(target="allocate", kind="503", count=1)
    with pytest.raises(CdpTransientError) as unavailable:
        client.allocate(ref, checksum=md5, size=len(body))
    assert unavailable.value.http_status == 503
    # CDP's reason, then ours, as two sentences (not "please retry.; it will be tried again").
    assert unavailable.value.message == (
        "CDP answered HTTP 503: Service temporarily unavailable, please retry. "
        "It will be tried again."
    )
    sandbox.control.fault(target="allocate", kind="429", retry_after=7)
    with pytest.raises(CdpTransientError) as throttled:
        client.allocate(ref, checksum=md5, size=len(body))
    assert throttled.value.retry_after == 7
    allocated = client.allocate(ref, checksum=md5, size=len(body))
    sandbox.control.fault(target="upload", kind="reset")
    with pytest.raises(CdpTransientError, match="reset"):
        client.upload(allocated.location_url, io.BytesIO(body), md5_hex=md5, size=len(body))
    client.upload(allocated.location_url, io.BytesIO(body), md5_hex=md5, size=len(body))
    assert _wait(client, ref).code == "success"


@pytest.mark.integration
def test_cdp_client_timeout_is_transient(sandbox):
    client = _client(sandbox, timeout=1)
    sandbox.control.fault(target="status", kind="stall", seconds=3)
    with pytest.raises(CdpTransientError, match="in time"):
        client.status(str(uuid.uuid4()))


@pytest.mark.integration
def test_cdp_client_bad_credentials_say_check_the_credentials(sandbox):
    client = _client(sandbox, api_token="wrong-token")
    with pytest.raises(CdpAuthError) as refused:
        client.allocate(str(uuid.uuid4()), checksum="0" * 32, size=10)
    assert refused.value.message == AUTH_MESSAGE
    assert "wrong-token" not in str(refused.value)


@pytest.mark.integration
def test_cdp_client_reallocating_with_other_size_is_a_conflict(sandbox):
    client = _client(sandbox)
    ref = str(uuid.uuid4())
    first = client.allocate(ref, checksum="a" * 32, size=10)
    again = client.allocate(ref, checksum="a" * 32, size=10)
    assert first.ref == again.ref == ref
    with pytest.raises(CdpConflictError):
        client.allocate(ref, checksum="a" * 32, size=11)


@pytest.mark.integration
def test_cdp_client_expired_upload_url(sandbox):
    client = _client(sandbox)
    sandbox.control.fault(url_lifetime=0)
    body = _file(str(uuid.uuid4()))
    md5 = hashlib.md5(body).hexdigest()
    allocated = client.allocate(str(uuid.uuid4()), checksum=md5, size=len(body))
    time.sleep(1.1)  # the signature carries whole seconds
    with pytest.raises(CdpUploadExpiredError):
        client.upload(allocated.location_url, io.BytesIO(body), md5_hex=md5, size=len(body))


@pytest.mark.integration
def test_cdp_client_error_log_is_downloaded_and_parsed(sandbox):
    client = _client(sandbox)
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    sandbox.control.fault(fail_records={bad: {"code": "400", "message": "Validation error"}})
    ref = _send(client, _file(good, bad))
    status = _wait(client, ref)
    assert status.code == "error"
    assert status.log_url
    log = io.BytesIO()
    assert client.download_log(status.log_url, log) > 0
    log.seek(0)
    lines = list(parse_error_log(log))
    assert [(line.ref, line.code, line.succeeded) for line in lines] == [(bad, "400", False)]
    assert "Signature" not in str(status.raw)


@pytest.mark.integration
def test_cdp_client_unknown_batch_is_permanent(sandbox):
    with pytest.raises(CdpPermanentError, match="404"):
        _client(sandbox).status(str(uuid.uuid4()))


def test_parse_error_log_accepts_string_and_int_codes_null_refs_and_junk():
    text = (
        b'{"ref":"r1","code":"400","message":"Validation error"}\n'
        b'{"ref":"r2","code":400,"message":"Not enough identifying information"}\n'
        b'{"ref":"r3","code":"200","message":"ok"}\n'
        b'{"ref":"null","code":"400","message":"Failed to parse import line"}\n'
        b"not json at all\n"
        b"\n"
    )
    lines = list(parse_error_log(io.BytesIO(gzip.compress(text))))
    assert [(line.ref, line.code, line.succeeded) for line in lines] == [
        ("r1", "400", False),
        ("r2", "400", False),
        ("r3", "200", True),
        (None, "400", False),
        (None, "", False),
    ]


def test_parse_retry_after_seconds_and_dates():
    assert parse_retry_after("5") == 5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(tz=UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(later) <= 30
    assert parse_retry_after("999999") == 3600


def test_strip_query_removes_signatures():
    url = "https://s3.example/bucket/ref/import.gz?AWSAccessKeyId=A&Expires=1&Signature=xyz"
    assert strip_query(url) == "https://s3.example/bucket/ref/import.gz"


def test_cdp_client_allowed_origins_are_the_cdp_host_and_the_listed_hosts():
    client = CdpClient(
        base_url="https://API-engage-eu.sitecorecloud.io/",
        client_key="k",
        api_token="t",
        allowed_hosts=["bucket.s3.amazonaws.com", "sandbox.example:8443", "other.example:443"],
    )

    assert client.allowed_origins == {
        "https://api-engage-eu.sitecorecloud.io",
        "https://bucket.s3.amazonaws.com",
        "https://sandbox.example:8443",
        "https://other.example",
    }
    assert origin_of("https://[::1]:8443/x?Signature=s") == "https://[::1]:8443"


@pytest.mark.integration
@pytest.mark.parametrize(
    "foreign",
    [
        "https://attacker.example",  # another host
        "https://127.0.0.1:6379",  # the CDP host, another port (Redis)
        "http://127.0.0.1:{port}",  # the CDP host and port, without TLS
    ],
)
def test_cdp_client_refuses_an_upload_location_off_the_allowed_hosts(sandbox, foreign):
    foreign = foreign.format(port=sandbox.base_url.rsplit(":", 1)[1])
    calls: list = []
    client = _client(sandbox, calls)
    body = _file(str(uuid.uuid4()))
    md5 = hashlib.md5(body).hexdigest()
    sandbox.control.fault(url_base=foreign)
    allocated = client.allocate(str(uuid.uuid4()), checksum=md5, size=len(body))

    with pytest.raises(CdpUrlRefusedError, match="not an allowed host") as refused:
        client.upload(allocated.location_url, io.BytesIO(body), md5_hex=md5, size=len(body))

    assert foreign.removesuffix(":443") in refused.value.message
    upload = calls[-1]
    assert (upload.target, upload.origin, upload.http_status) == ("upload", foreign, None)
    assert upload.path.startswith("/")
    assert "?" not in upload.path
    assert calls[0].origin == sandbox.base_url  # the API call: its host recorded too
    seen = [r for r in sandbox.control.requests() if r["method"] == "PUT"]
    assert len(seen) == 1  # the allocation only: no byte went anywhere


@pytest.mark.integration
def test_cdp_client_refuses_an_error_log_location_off_the_allowed_hosts(sandbox):
    calls: list = []
    client = _client(sandbox, calls)
    bad_ref = str(uuid.uuid4())
    sandbox.control.fault(fail_records={bad_ref: {"code": "400", "message": "Validation error"}})
    ref = _send(client, _file(bad_ref))
    _wait(client, ref)
    sandbox.control.fault(url_base="https://127.0.0.1:6379")
    status = client.status(ref)

    with pytest.raises(CdpUrlRefusedError, match="error log location on https://127.0.0.1:6379"):
        client.download_log(status.log_url, io.BytesIO())

    assert (calls[-1].target, calls[-1].origin) == ("log", "https://127.0.0.1:6379")
