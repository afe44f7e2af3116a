"""Workers on two hosts that share only PostgreSQL, Redis and an S3-compatible bucket.

Each "host" is a set of real RQ worker processes with its own empty MEDIA_ROOT; the bucket is a
real S3 server (moto in server mode) started by the test. A file imported on host 1 is built
on host 2 and uploaded from host 1, so every step reads what another host wrote, through the
storage API only.
"""

from __future__ import annotations

import csv
import io
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from django.core.files.base import ContentFile

from batches import services
from batches.models import Batch, BatchFile
from records.models import DeliveryStatus, Guest, ImportRun
from records.services.imports import import_run_create
from records.services.review import records_mark_ready
from tests.batches.conftest import wait_for, worker_settings
from tests.processes import ROOT, run_worker_burst, running_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BUCKET = "cdpstage-test"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory) -> Iterator[str]:
    """A real S3-compatible HTTP server (moto) in its own process; yields its endpoint URL."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("s3") / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(endpoint), timeout=30, what="the S3 server to start")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _answers(endpoint: str) -> bool:
    try:
        requests.get(endpoint, timeout=2)
    except requests.RequestException:
        return False
    return True


def _s3_env(endpoint: str) -> dict[str, str]:
    return {
        "DJANGO_STORAGE_BACKEND": "s3",
        "DJANGO_S3_BUCKET": BUCKET,
        "DJANGO_S3_ENDPOINT_URL": endpoint,
        "DJANGO_S3_REGION": "us-east-1",
        "DJANGO_S3_ADDRESSING_STYLE": "path",
        **S3_CREDENTIALS,
    }


@pytest.fixture
def bucket(s3_server, settings, monkeypatch, tmp_path) -> object:
    """An empty bucket, with this process's default storage pointed at it."""
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.resource("s3", endpoint_url=s3_server, region_name="us-east-1")
    existing = s3.Bucket(BUCKET)
    if existing.creation_date:
        existing.objects.all().delete()
    else:
        s3.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_server,
                "region_name": "us-east-1",
                "addressing_style": "path",
                "file_overwrite": False,
                "max_memory_size": 2_621_440,
            },
        },
    }
    # The test process itself has no media folder to fall back on either.
    settings.MEDIA_ROOT = tmp_path / "test-process-media"
    return s3.Bucket(BUCKET)


def _guests_csv(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["identifiers.0.provider", "identifiers.0.id", "email", "firstName"])
    for i in range(rows):
        writer.writerow(["email", f"h{i}@example.com", f"h{i}@example.com", f"name{i}"])
    return out.getvalue().encode()


def _files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


@pytest.mark.usefixtures("_forget_old_jobs", "clean_queues")
def test_import_on_one_host_build_on_another_upload_from_the_first(
    bucket,
    sandbox,
    stager,
    approver,
    user_factory,
    tmp_path,
    settings,
):
    settings.CDP_MAX_FILE_BYTES = 3_000  # several files, each read back by another host
    hosts = {name: tmp_path / f"{name}-media" for name in ("host1", "host2")}
    for media in hosts.values():
        media.mkdir()

    def host_env(name: str) -> dict[str, str]:
        return {
            **worker_settings(sandbox, CDP_MAX_FILE_BYTES="3000"),
            **_s3_env(settings.STORAGES["default"]["OPTIONS"]["endpoint_url"]),
            "DJANGO_MEDIA_ROOT": str(hosts[name]),
        }

    # Host 1 imports (the source file went to the bucket when the run was created).
    run = import_run_create(
        uploaded_file=ContentFile(_guests_csv(150), name="guests.csv"),
        schema="guest",
        user=stager,
    )
    result = run_worker_burst("imports", **host_env("host1"))
    assert result.returncode == 0, result.stderr[-3000:]
    run.refresh_from_db()
    assert run.status == ImportRun.Status.SUCCEEDED, (run.message, result.stderr[-3000:])
    reviewer = user_factory("reviewer", perms=("records.view_guest", "records.review_guest"))
    records_mark_ready(model=Guest, queryset=Guest.objects.all(), user=reviewer)

    # Host 2 builds: its batch files go to the bucket.
    batch = services.batch_create(schema="guest", user=stager)
    result = run_worker_burst("batches", **host_env("host2"))
    assert result.returncode == 0, result.stderr[-3000:]
    batch.refresh_from_db()
    assert batch.status == Batch.Status.BUILT, (batch.message, result.stderr[-3000:])
    assert batch.file_count > 1
    services.batch_approve(batch=batch, user=approver)

    # Host 1 uploads what host 2 built (and polls, fetching any log into the bucket).
    services.batch_send(batch=batch, user=approver)
    with running_worker("batches", tmp_path / "host1-batches.log", **host_env("host1")):
        wait_for(
            lambda: Batch.objects.get(pk=batch.pk).is_finished,
            timeout=120,
            what="the batch to end",
        )
    batch.refresh_from_db()
    assert batch.status == Batch.Status.SUCCEEDED, batch.message

    # CDP got every record once, in the bytes the approver approved.
    arrived: Counter = Counter()
    for batch_file in BatchFile.objects.filter(batch=batch):
        seen = sandbox.control.batch(str(batch_file.batch_ref))
        assert seen["received_checksum"] == batch_file.approved_md5
        arrived.update(record["ref"] for record in seen["records"])
    assert set(arrived) == {str(ref) for ref in Guest.objects.values_list("ref", flat=True)}
    assert set(arrived.values()) == {1}
    assert set(Guest.objects.values_list("delivery_status", flat=True)) == {
        DeliveryStatus.DELIVERED
    }
    # Everything lives in the bucket; no host kept a file of its own.
    keys = {item.key for item in bucket.objects.all()}
    assert run.source_file.name in keys
    assert {f.file.name for f in BatchFile.objects.filter(batch=batch)} <= keys
    for media in (*hosts.values(), settings.MEDIA_ROOT):
        assert _files_under(Path(media)) == []
