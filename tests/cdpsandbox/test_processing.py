"""Processing after upload: file format (§2), envelopes (§2.1), field rules (§3), the log (§1.5)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import time
import uuid
import zipfile

import pytest

from tests.cdpsandbox.conftest import guest, gzip_lines, order, tracking

# These tests start the sandbox as a real process (the project's `integration` marker).
pytestmark = pytest.mark.integration


def test_guest_batch_success_with_stats_and_no_log(api, sandbox):
    final = api.run([guest("ada@example.com"), guest("bob@example.com", firstName="Bob")])
    assert final["status"]["code"] == "success"
    assert "log" not in final["status"]
    stats = final["status"]["stats"]
    assert stats["totalCount"] == 2
    assert stats["successCount"] == 2
    assert stats["errorCount"] == 0
    assert isinstance(stats["duration"], int)
    emails = sorted(p["fields"]["email"] for p in sandbox.control.profiles())
    assert emails == ["ada@example.com", "bob@example.com"]


def test_records_as_received_are_inspectable(api, sandbox):
    record = guest(
        "ada@example.com",
        firstName="Ada",
        extensions=[{"name": "ext", "key": "default", "loyaltyTier": "gold", "points": 10}],
    )
    ref = api.send(gzip_lines([record]))
    api.wait(ref)
    batch = sandbox.control.batch(ref)
    assert batch["records"] == [{"line": 1, **record}]
    assert batch["outcomes"][0]["ref"] == record["ref"]
    assert batch["outcomes"][0]["code"] == "200"


def test_tracking_events_happy_path(api, sandbox):
    events = [tracking(), tracking(type="OPENED")]
    final = api.run(events)
    assert final["status"]["code"] == "success"
    stored = sandbox.control.events()
    assert [e["type"] for e in stored] == ["SENT", "OPENED"]
    assert {e["ref"] for e in stored} == {e["ref"] for e in events}


def test_orders_happy_path_attach_to_guest(api, sandbox):
    final = api.run([guest("ada@example.com"), order("ada@example.com", "ORD-1")])
    assert final["status"]["code"] == "success"
    profiles = sandbox.control.profiles()
    assert len(profiles) == 1
    assert [o["referenceId"] for o in profiles[0]["orders"]] == ["ORD-1"]


def test_order_for_unknown_contact_creates_guest(api, sandbox):
    assert api.run([order("new@example.com")])["status"]["code"] == "success"
    profiles = sandbox.control.profiles()
    assert profiles[0]["identifiers"] == [{"provider": "email", "id": "new@example.com"}]


def test_crlf_and_missing_final_newline_tolerated(api):
    lines = [guest("a@example.com"), guest("b@example.com")]
    assert api.run(lines, line_end="\r\n")["status"]["code"] == "success"
    assert api.run(lines, final_newline=False)["status"]["code"] == "success"
    assert api.run(lines, line_end="\r\n", final_newline=False)["status"]["code"] == "success"


def test_error_log_is_gzip_jsonl_with_string_codes_and_null_ref(api, sandbox):
    good = guest("ada@example.com")
    no_identity = guest("x@example.com", identifiers=[{"provider": "LOYALTY", "id": "1"}])
    final = api.run([good, "{this is not json", no_identity, '["an", "array"]'])
    assert final["status"]["code"] == "error"
    assert final["status"]["stats"]["errorCount"] == 3
    log = api.fetch_log(final["status"]["log"])
    assert log == [
        {"ref": "null", "code": "400", "message": "Failed to parse import line"},
        {"ref": no_identity["ref"], "code": "400", "message": "Not enough identifying information"},
        {"ref": "null", "code": "400", "message": "Failed to parse import line"},
    ]
    # The successful record was still applied.
    assert [p["fields"]["email"] for p in sandbox.control.profiles()] == ["ada@example.com"]


def test_log_url_is_signed_and_refuses_authorization(api, sandbox):
    final = api.run(["nope"])
    url = final["status"]["log"]
    assert "Signature=" in url
    response = api.s3.get(url, auth=sandbox.auth)
    assert response.status_code == 400
    assert b"InvalidArgument" in response.content
    assert api.s3.get(url.split("?")[0]).status_code == 403


def test_log_url_expires_and_status_gives_a_fresh_one(api, sandbox):
    ref = api.send(gzip_lines(["nope"]))
    api.wait(ref)
    sandbox.control.fault(url_lifetime=0)
    expired = api.status(ref).json()["status"]["log"]
    response = api.s3.get(expired)
    assert response.status_code == 403
    assert b"Request has expired" in response.content
    sandbox.control.fault(url_lifetime=None)
    fresh = api.status(ref).json()["status"]["log"]
    assert api.fetch_log(fresh)[0]["message"] == "Failed to parse import line"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"ref":"x"}\n', id="plain-json-not-gzip"),
        pytest.param(b"\x00\x01binary", id="binary"),
    ],
)
def test_non_gzip_body_errors_without_log(api, sandbox, body):
    ref = api.send(body)
    final = api.wait(ref)
    assert final["status"]["code"] == "error"
    assert "log" not in final["status"]
    assert "gzip" in sandbox.control.batch(ref)["note"]


def test_zip_body_errors_without_log(api, sandbox):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("import.json", '{"ref":"x"}\n')
    ref = api.send(buffer.getvalue())
    final = api.wait(ref)
    assert final["status"]["code"] == "error"
    assert "log" not in final["status"]
    assert "zip" in sandbox.control.batch(ref)["note"]


def test_tar_gz_errors_without_log(api):
    # §1.6: the 2015 tarball format is not accepted today.
    buffer = io.BytesIO()
    data = gzip_lines([guest()])
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("import.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    final = api.wait(api.send(buffer.getvalue()))
    assert final["status"]["code"] == "error"
    assert "log" not in final["status"]


def test_truncated_gzip_errors_without_log(api):
    body = gzip_lines([guest() for _ in range(20)])
    final = api.wait(api.send(body[: len(body) // 2]))
    assert final["status"]["code"] == "error"
    assert "log" not in final["status"]


def test_multi_member_gzip_is_one_file(api):
    body = gzip_lines([guest("a@example.com")]) + gzip_lines([guest("b@example.com")])
    final = api.wait(api.send(body))
    assert final["status"]["code"] == "success"
    assert final["status"]["stats"]["totalCount"] == 2


def test_invalid_utf8_line_is_unparsable(api):
    body = gzip.compress(b'{"ref":"\xff\xfe"}\n')
    final = api.wait(api.send(body))
    assert api.fetch_log(final["status"]["log"])[0]["ref"] == "null"


def run_one(api, record) -> dict:
    """Send one record; return its log line (the batch must end in error)."""
    final = api.run([record])
    assert final["status"]["code"] == "error", final
    (line,) = api.fetch_log(final["status"]["log"])
    return line


def with_value(**changes):
    record = guest("ada@example.com")
    for name, value in changes.items():
        if value is ...:
            del record["value"][name]
        else:
            record["value"][name] = value
    return record


@pytest.mark.parametrize(
    ("record", "code", "message"),
    [
        ({**guest(), "mode": "insert"}, "402", "Unsupported mode"),
        ({**guest(), "mode": "replace"}, "402", "Unsupported mode"),
        ({**guest(), "mode": None}, "402", "Unsupported mode"),
        ({**tracking(), "mode": "upsert"}, "402", "Unsupported mode"),
        ({**order(), "mode": "merge"}, "402", "Unsupported mode"),
        ({**guest(), "schema": "product"}, "400", "Validation error"),
        ({**guest(), "ref": "not-a-uuid"}, "400", "Validation error"),
        ({**guest(), "value": "text"}, "400", "Validation error"),
        ({**guest(), "extra": 1}, "400", "Validation error"),
        (with_value(gender="Male"), "400", "Validation error"),
        (with_value(guestType="visitor"), "400", "Validation error"),
        (with_value(country="ie"), "400", "Validation error"),
        (with_value(title="Mister"), "400", "Validation error"),
        (with_value(dateOfBirth="2999-01-01T00:00Z"), "400", "Validation error"),
        (with_value(dateOfBirth="1985-12-24"), "400", "Validation error"),
        (with_value(firstSeen="2025-03-07T16:15:11+00:00"), "400", "Validation error"),
        (with_value(email="not-an-email"), "400", "Validation error"),
        (with_value(phoneNumbers="+353161123345"), "400", "Validation error"),
        (with_value(postcode="D02"), "400", "Validation error"),  # C-ISYED's typo
        (with_value(firstName=None), "400", "Validation error"),
        (with_value(identifiers=[{"provider": "email"}]), "400", "Validation error"),
        (
            with_value(extensions=[{"name": "custom", "key": "default", "a": 1}]),
            "400",
            "Validation error",
        ),
        (
            with_value(extensions=[{"name": "ext", "key": "main", "a": 1}]),
            "400",
            "Validation error",
        ),
        (
            with_value(extensions=[{"name": "ext", "key": "default", "bad-name": 1}]),
            "400",
            "Validation error",
        ),
        (
            with_value(extensions=[{"name": "ext", "key": "default", "nested": {"a": 1}}]),
            "400",
            "Validation error",
        ),
        (
            with_value(
                extensions=[
                    {"name": "ext", "key": "default", "tier": "a"},
                    {"name": "ext1", "key": "default", "tier": "b"},
                ]
            ),
            "400",
            "Validation error",
        ),
        (
            with_value(
                extensions=[{"name": "ext", "key": "default", **{f"a{i}": i for i in range(101)}}]
            ),
            "400",
            "Validation error",
        ),
        (
            with_value(subscriptions=[{"name": "default", "channel": "EMAIL"}]),
            "400",
            "Validation error",
        ),
        (with_value(identifiers=...), "400", "Not enough identifying information"),
        (
            with_value(identifiers=[{"provider": "Email", "id": "ada@example.com"}]),
            "400",
            "Not enough identifying information",
        ),
        (order(status="SHIPPED"), "400", "Validation error"),
        (order(channel="web"), "400", "Validation error"),
        (order(currencyCode="eur"), "400", "Validation error"),
        (order(paymentType="Card", cardType="Amex"), "400", "Validation error"),
        (order(orderItems=[]), "400", "Validation error"),
        (order(reference="R", orderContact={}), "400", "Validation error"),  # G-MISHRA keys
        (order(contact={"email": "a@example.com"}), "400", "Not enough identifying information"),
        (
            order(consumers=[{"firstName": "A", "orderItems": [{"referenceId": "ELSEWHERE"}]}]),
            "400",
            "Validation error",
        ),
        (order(orderItems=[order()["value"]["orderItems"][0]] * 2), "400", "Validation error"),
        (tracking(type=None), "400", "Validation error"),
        (tracking(occurredAt="yesterday"), "400", "Validation error"),
    ],
)
def test_record_rules(api, record, code, message):
    line = run_one(api, record)
    assert line["code"] == code
    assert line["message"] == message


def test_missing_order_field_rejected(api):
    record = order()
    del record["value"]["price"]
    assert run_one(api, record)["message"] == "Validation error"


def test_card_type_required_for_card_payments(api):
    record = order()
    del record["value"]["cardType"]
    assert run_one(api, record)["message"] == "Validation error"


def test_order_upsert_needs_fewer_fields(api):
    record = order()
    record["mode"] = "upsert"
    for name in ("status", "currencyCode", "price", "paymentType", "cardType"):
        del record["value"][name]
    assert api.run([record])["status"]["code"] == "success"


def test_guest_merge_mode_accepted_as_upsert(api, sandbox):
    record = {**guest("ada@example.com"), "mode": "merge"}
    assert api.run([record])["status"]["code"] == "success"
    assert len(sandbox.control.profiles()) == 1


def test_full_guest_record_accepted(api):
    record = guest(
        "ada@example.com",
        firstSeen="2025-03-07T16:15:11.000Z",
        lastSeen="2025-03-07T16:15:11Z",
        title="Dr",
        firstName="Ada",
        lastName="Lovelace",
        gender="female",
        dateOfBirth="1985-12-24T00:00Z",
        phoneNumbers=["+353161123345"],
        language="EN",
        nationality="Irish",
        passportNumber="PA1234",
        passportExpiry="2030-01-01T00:00Z",
        street=["Apartment 15", "West Drive Avenue"],
        city="Dublin",
        state="Leinster",
        country="IE",
        postCode="D02 XY45",
        subscriptions=[
            {"name": "default", "pointOfSale": "shop", "channel": "EMAIL", "status": "SUBSCRIBED"}
        ],
        extensions=[
            {"name": "ext", "key": "default", "loyaltyTier": "gold", "vip": True, "score": 1.5},
            {"name": "ext1", "key": "default", "crmSegment": "A"},
        ],
    )
    record["value"]["identifiers"].append(
        {"provider": "CRM_ID", "id": "C-1", "expiryDate": "2030-01-01T00:00:00.000Z"}
    )
    assert api.run([record])["status"]["code"] == "success"


def test_duplicate_record_refs_in_one_file(api):
    first = guest("a@example.com")
    second = guest("b@example.com", ref=first["ref"])
    final = api.run([first, second])
    assert final["status"]["code"] == "error"
    assert api.fetch_log(final["status"]["log"]) == [
        {"ref": first["ref"], "code": "400", "message": "Validation error"}
    ]


def test_same_guest_twice_in_a_file_is_flagged(api, sandbox):
    ref = api.send(gzip_lines([guest("a@example.com"), guest("a@example.com")]))
    assert api.wait(ref)["status"]["code"] == "success"
    assert "duplicate profiles" in sandbox.control.batch(ref)["warnings"][0]


def test_log_success_lines_for_deletes(api, sandbox):
    assert api.run([guest("ada@example.com")])["status"]["code"] == "success"
    delete = {**guest("ada@example.com"), "mode": "delete"}
    delete["value"] = {"identifiers": [{"provider": "email", "id": "ada@example.com"}]}
    final = api.run([delete, "broken line"])
    log = api.fetch_log(final["status"]["log"])
    # S-GDEL: deletes report per-record 200 results, so the log is not failures only (Q2).
    assert {
        "ref": delete["ref"],
        "code": "200",
        "message": "Guest and associated entities deleted",
    } in log
    assert sandbox.control.profiles() == []


def test_status_walk_visible_on_inspect(tmp_path):
    """A slower sandbox shows uploading → file_uploaded (inspect only) → processing → success."""
    from cdpsandbox.process import run_sandbox
    from tests.cdpsandbox.conftest import CdpApi

    with run_sandbox(tmp_path, processing_delay=1.0) as slow:
        api = CdpApi(slow)
        body = gzip_lines([guest()])
        ref = str(uuid.uuid4())
        url = api.allocate(ref, hashlib.md5(body).hexdigest(), len(body)).json()["location"]
        assert api.status(ref, inspect=True).json()["status"]["code"] == "uploading"
        api.upload(url["href"], body)
        assert api.status(ref, inspect=True).json()["status"]["code"] == "file_uploaded"
        assert api.status(ref).json()["status"]["code"] == "processing"
        seen = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            code = api.status(ref, inspect=True).json()["status"]["code"]
            seen.add(code)
            if code == "success":
                break
            time.sleep(0.05)
        assert {"processing", "success"} <= seen
