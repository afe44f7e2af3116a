"""Control endpoints, process lifecycle and log hygiene."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from cdpsandbox.process import run_sandbox
from tests.cdpsandbox.conftest import CdpApi, guest, gzip_lines

# These tests start the sandbox as a real process (the project's `integration` marker).
pytestmark = pytest.mark.integration


def test_batches_list_and_detail(api, sandbox):
    ok = api.send(gzip_lines([guest("ada@example.com")]))
    api.wait(ok)
    listed = sandbox.control.batches()
    assert [b["ref"] for b in listed] == [ok]
    assert "records" not in listed[0]
    detail = sandbox.control.batch(ok)
    for key in (
        "ref",
        "status",
        "declared_checksum",
        "declared_size",
        "received_checksum",
        "received_size",
        "upload_headers",
        "allocate_count",
        "upload_count",
        "records",
        "outcomes",
        "stats",
    ):
        assert key in detail
    assert detail["outcomes"][0]["code"] == "200"


def test_unknown_batch_404(sandbox):
    with pytest.raises(requests.HTTPError) as caught:
        sandbox.control.batch(str(uuid.uuid4()))
    assert caught.value.response.status_code == 404


def test_reset_clears_everything(api, sandbox):
    api.run([guest()])
    sandbox.control.fault(target="upload", kind="500", count=5)
    sandbox.control.reset()
    assert sandbox.control.batches() == []
    assert sandbox.control.profiles() == []
    assert sandbox.control.requests() == []
    assert sandbox.control.faults()["calls"]["upload"] == []


def test_request_log_records_auth_presence_not_control_calls(api, sandbox):
    ref = str(uuid.uuid4())
    api.allocate(ref, "0" * 32, 10)
    api.allocate(str(uuid.uuid4()), "0" * 32, 10, auth=None)
    sandbox.control.batches()
    log = sandbox.control.requests()
    assert [(r["method"], r["status"], r["authorization"]) for r in log] == [
        ("PUT", 201, True),
        ("PUT", 401, False),
    ]
    assert log[0]["path"] == f"/v2/batches/{ref}"


def test_control_method_not_allowed(api, sandbox):
    response = api.session.delete(f"{sandbox.base_url}/_sandbox/reset")
    assert response.status_code == 405


def test_health(sandbox):
    health = requests.get(
        f"{sandbox.base_url}/_sandbox/health", verify=sandbox.ca_bundle, timeout=5
    ).json()
    assert health == {"ok": True, "base_url": sandbox.base_url}


def test_keep_alive_survives_errors(api, sandbox):
    # Error replies sent before the body was read must not desynchronise the connection.
    for _ in range(3):
        assert api.allocate(str(uuid.uuid4()), "bad", 1).status_code == 400
        assert api.upload(api.base + "/s3/nope", b"x" * 5000).status_code == 404
    assert api.allocate(str(uuid.uuid4()), "0" * 32, 10).status_code == 201


def test_logs_hold_no_secrets_or_record_contents(api, sandbox):
    marker = f"secret-guest-{uuid.uuid4().hex}@example.com"
    ref = api.send(gzip_lines([guest(marker), "bad line"]))
    final = api.wait(ref)
    api.fetch_log(final["status"]["log"])
    url = api.allocate(str(uuid.uuid4()), "0" * 32, 10).json()["location"]["href"]
    api.upload(url, b"x", {"Authorization": "Bearer very-secret-bearer"})
    api.session.get(f"{sandbox.base_url}/v2/batches/{ref}", auth=("who", "wrong-token-xyz"))
    # The log line is written just after the reply: wait for it rather than sleeping blindly.
    deadline = time.monotonic() + 5
    while f"GET /v2/batches/{ref} 401" not in sandbox.log_text():
        assert time.monotonic() < deadline, "the 401 request was never logged"
        time.sleep(0.02)
    text = sandbox.log_text()
    for secret in (marker, sandbox.api_token, "very-secret-bearer", "wrong-token-xyz", "Signature"):
        assert secret not in text


def test_state_file_ca_and_clean_stop(tmp_path):
    with run_sandbox(tmp_path, processing_delay=0.01) as started:
        state = json.loads((tmp_path / "sandbox.json").read_text())
        assert state == {
            "base_url": started.base_url,
            "ca_bundle": str(tmp_path / "ca.pem"),
            "pid": started.pid,
        }
        assert started.base_url.startswith("https://127.0.0.1:")
        assert (tmp_path / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
        api = CdpApi(started)
        # A stalled request must not keep the process from stopping.
        started.control.fault(target="status", kind="stall", seconds=60)
        with pytest.raises(requests.exceptions.ReadTimeout):
            api.status(str(uuid.uuid4()), timeout=0.3)
        process = started.process
    # run_sandbox sent SIGTERM and checked the exit status was 0.
    assert process.returncode == 0
    assert not (tmp_path / "sandbox.json").exists()
    assert "cdpsandbox listening on https://127.0.0.1:" in (tmp_path / "sandbox.log").read_text()


def test_python_dash_m_prints_one_line_and_stops_on_sigterm(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "cdpsandbox", "--port", "0", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    try:
        line = process.stdout.readline().decode()
        assert line.startswith("cdpsandbox listening on https://127.0.0.1:")
        assert f"(CA: {tmp_path / 'ca.pem'})" in line
        assert (tmp_path / "sandbox.json").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close()


def test_bad_option_exits_non_zero(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cdpsandbox", "--fault", "allocate:teapot", "--state-dir", "x"],
        capture_output=True,
        cwd=str(Path(__file__).resolve().parents[2]),
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert b"fault kind" in result.stderr


def test_garbage_over_tls_gets_an_error_and_the_server_lives_on(api, sandbox):
    import socket
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(sandbox.base_url)
    context = ssl.create_default_context(cafile=sandbox.ca_bundle)
    for garbage in (
        b"\x00\x01\x02 nonsense\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    ):
        with (
            socket.create_connection((parts.hostname, parts.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=parts.hostname) as tls,
        ):
            tls.sendall(garbage)
            reply = tls.recv(100)
        assert reply.startswith(b"HTTP/1.1 4"), reply
    assert api.allocate(str(uuid.uuid4()), "0" * 32, 10).status_code == 201
    assert "Traceback" not in sandbox.log_text()
