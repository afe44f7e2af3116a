"""Measure a large guest import as a background run: rows/s and the peak RSS of the worker.

    .venv/bin/python -m bench.import_memory [--rows 200000] [--keep]

Generates a guest CSV (two identifiers, a subscription, extension attributes; about 870 bytes
of CDP JSON per guest) in a temporary folder, uses a database (`cdpstage_bench`, or
BENCH_DATABASE_URL; emptied first) and a Redis database (/14, or BENCH_REDIS_URL) of its
own, creates the import run through the service (which enqueues the job on
the real Redis queue) and runs a real `rqworker imports --burst` under /usr/bin/time, whose
"Maximum resident set size" covers the worker and its work horse (the kernel folds waited-for
children into it). Prints one summary line per figure.
"""

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/cdpstage_bench"
# A Redis database of its own: the script empties its imports queue before it starts.
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"

HEADER = [
    "identifiers.0.provider",
    "identifiers.0.id",
    "identifiers.1.provider",
    "identifiers.1.id",
    "email",
    "title",
    "firstName",
    "lastName",
    "gender",
    "dateOfBirth",
    "phoneNumbers",
    "street.0",
    "street.1",
    "city",
    "state",
    "country",
    "postCode",
    "language",
    "nationality",
    "subscriptions.0.name",
    "subscriptions.0.pointOfSale",
    "subscriptions.0.channel",
    "subscriptions.0.status",
    "subscriptions.0.effectiveDate",
    "ext.loyaltyTier",
    "ext.loyaltyPoints",
    "ext.memberSince",
    "ext.favouriteStore",
    "ext.preferredContact",
    "ext.marketingSegment",
]
FIRST = ["ann", "bob", "cara", "dermot", "eve", "fionn", "grace", "hugh", "isla", "jack"]
LAST = ["murphy", "kelly", "o'brien", "walsh", "smith", "byrne", "ryan", "doyle", "mccarthy"]
CITIES = ["dublin", "cork", "galway", "limerick", "waterford", "kilkenny", "sligo"]


def say(text: str) -> None:
    """Bench output goes to stdout (this is a command-line tool, not library code)."""
    sys.stdout.write(text + "\n")


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(rows):
            first, last = FIRST[i % len(FIRST)], LAST[i % len(LAST)]
            email = f"{first}.{last.replace(chr(39), '')}.{i}@example-mail.com"
            writer.writerow(
                [
                    "email",
                    email,
                    "CRM_ID",
                    f"CRM-{i:09d}",
                    email,
                    "Mr" if i % 2 else "Ms",
                    first,
                    last,
                    "male" if i % 2 else "female",
                    f"{1950 + i % 50}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                    f"+353 1 {i % 10_000_000:07d};+353 87 {(i * 7) % 10_000_000:07d}",
                    f"{1 + i % 200} main street",
                    f"apartment {1 + i % 40}",
                    CITIES[i % len(CITIES)],
                    "leinster",
                    "IE",
                    f"D{i % 24:02d} X{i % 1000:03d}",
                    "EN",
                    "irish",
                    "newsletter",
                    "shop.example.com",
                    "EMAIL",
                    "SUBSCRIBED" if i % 3 else "UNSUBSCRIBED",
                    "2024-01-02T10:00:00Z",
                    ["bronze", "silver", "gold", "platinum"][i % 4],
                    str(i % 100_000),
                    f"20{10 + i % 14}-0{1 + i % 9}-15",
                    CITIES[(i + 3) % len(CITIES)] + " central",
                    "email" if i % 2 else "sms",
                    f"segment-{i % 17}",
                ]
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--keep", action="store_true", help="Keep the generated file.")
    args = parser.parse_args()

    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS),
        DJANGO_SETTINGS_MODULE="cdpstage.settings",
        DJANGO_DEBUG="1",
        DJANGO_MEDIA_ROOT=tempfile.mkdtemp(prefix="bench-media-"),
    )
    os.environ.update(env)
    python = sys.executable
    subprocess.run([python, "-m", "cdpstage.createdb"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [python, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True
    )

    import django

    django.setup()
    import django_rq
    from django.core.files import File
    from django.db import connection

    from records.models import Guest, ImportRun
    from records.services.imports import import_run_create

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE records_guest, records_identifier, records_subscription, "
            "records_extension, records_importrun CASCADE"
        )
    django_rq.get_queue("imports").empty()

    folder = Path(tempfile.mkdtemp(prefix="bench-import-"))
    source = folder / "guests.csv"
    started = time.monotonic()
    write_csv(source, args.rows)
    say(f"generated {args.rows:,} rows, {source.stat().st_size / 1e6:,.1f} MB "
        f"in {time.monotonic() - started:,.1f} s")  # fmt: skip

    with source.open("rb") as handle:
        run = import_run_create(uploaded_file=File(handle, name=source.name), schema="guest")
    command = [
        "/usr/bin/time",
        "-v",
        python,
        "manage.py",
        "worker",
        "imports",
        "--burst",
    ]
    say("worker: " + " ".join(command[2:]))
    worker = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", worker.stderr)
    peak_mb = int(match.group(1)) / 1024 if match else float("nan")

    run.refresh_from_db()
    elapsed = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0
    say(f"status: {run.status} ({run.message})")
    say(f"rows: {run.rows_read:,} read, {run.rows_created:,} created, "
        f"{Guest.objects.count():,} guests in the table")  # fmt: skip
    say(f"import: {elapsed:,.1f} s, {run.rows_read / max(elapsed, 1e-9):,.0f} rows/s")
    say(f"peak RSS of the worker (incl. work horse): {peak_mb:,.1f} MB")
    with connection.cursor() as cursor:
        cursor.execute("SELECT avg(length(cdp_value)) FROM records_guest")
        say(f"average cdp_value: {cursor.fetchone()[0] or 0:,.0f} bytes per guest")
    if not args.keep:
        source.unlink()
    if worker.returncode != 0 or run.status != ImportRun.Status.SUCCEEDED:
        sys.stderr.write(worker.stderr[-4000:])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
