"""Pure parts of the sandbox: options, signing, gunzip, line splitting, loopback check."""

from __future__ import annotations

import gzip
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cdpsandbox.config import FaultSpec, load_config, parse_fault
from cdpsandbox.processing import FileRejectedError, gunzip, split_lines
from cdpsandbox.signing import UrlSigner
from cdpsandbox.tls import is_loopback
from cdpsandbox.validation import parse_datetime


def test_options_from_environment():
    config = load_config(
        [],
        {
            "CDP_SANDBOX_PORT": "9443",
            "CDP_SANDBOX_STATE_DIR": "/tmp/x",
            "CDP_SANDBOX_PROCESSING_DELAY": "0.1",
            "CDP_SANDBOX_IDENTITY_PROVIDERS": "CRM_ID, email",
            "CDP_SANDBOX_URL_LIFETIME": "60",
            "CDP_SANDBOX_CLIENT_KEY": "key",
            "CDP_SANDBOX_API_TOKEN": "token",
        },
    )
    assert config.port == 9443
    assert config.state_dir == Path("/tmp/x")
    assert config.processing_delay == 0.1
    assert config.identity_providers == ("CRM_ID", "email")
    assert config.url_lifetime == 60
    assert (config.client_key, config.api_token) == ("key", "token")


def test_command_line_wins_over_environment():
    config = load_config(
        ["--port", "0", "--fault", "upload:stall:2:3.5"], {"CDP_SANDBOX_PORT": "1"}
    )
    assert config.port == 0
    assert config.faults == (FaultSpec("upload", "stall", 2, seconds=3.5),)
    assert config.client_key == "sandbox-client-key"


@pytest.mark.parametrize(
    "text", ["allocate", "allocate:418", "disk:500", "upload:500:1:2", "a:b:c"]
)
def test_bad_fault_text(text):
    with pytest.raises(ValueError, match=r"."):
        parse_fault(text)


def test_parse_fault_429_retry_after():
    assert parse_fault("status:429:3:12") == FaultSpec("status", "429", 3, retry_after=12)


def test_signer_round_trip_and_tamper():
    signer = UrlSigner()
    url, expires = signer.presign("PUT", "/s3/b/k", 60)
    query = parse_qs(urlsplit(url).query)
    assert signer.verify("PUT", "/s3/b/k", query).error is None
    assert signer.verify("GET", "/s3/b/k", query).error == "SignatureDoesNotMatch"
    assert signer.verify("PUT", "/s3/b/other", query).error == "SignatureDoesNotMatch"
    query["Expires"] = [str(expires + 1)]
    assert signer.verify("PUT", "/s3/b/k", query).error == "SignatureDoesNotMatch"
    assert signer.verify("PUT", "/s3/b/k", {}).error == "AccessDenied"


def test_signer_expiry():
    signer = UrlSigner()
    url, _ = signer.presign("GET", "/s3/b/k", 0)
    check = signer.verify("GET", "/s3/b/k", parse_qs(urlsplit(url).query))
    assert (check.error, check.message) == ("AccessDenied", "Request has expired")


def test_gunzip_refuses_bombs():
    bomb = gzip.compress(b"\n" * 2_000_000)
    with pytest.raises(FileRejectedError, match="too large"):
        gunzip(bomb, limit=1_000_000)
    assert len(gunzip(bomb)) == 2_000_000


def test_gunzip_ignores_trailing_zero_padding():
    assert gunzip(gzip.compress(b"a\n") + b"\x00" * 16) == b"a\n"


def test_split_lines_tolerates_crlf_blank_lines_and_no_final_newline():
    assert split_lines(b"a\r\nb\n\n  \nc") == [(1, b"a"), (2, b"b"), (5, b"c")]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2025-03-07T16:15:11.000Z", True),
        ("1985-12-24T00:00Z", True),
        ("2025-03-07T16:15:11Z", True),
        ("2025-02-30T00:00Z", False),
        ("2025-03-07T16:15:11+00:00", False),
        ("2025-03-07", False),
        (20250307, False),
    ],
)
def test_parse_datetime(text, ok):
    assert (parse_datetime(text) is not None) is ok


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.168.1.2", False),
        ("not-an-ip", False),
    ],
)
def test_is_loopback(address, ok):
    assert is_loopback(address) is ok
