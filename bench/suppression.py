"""The suppression check's cost in the batch selection: `python -m bench.suppression`.

    DATABASE_URL=postgres://…/cdpstage_x python -m bench.suppression [--guests 200000] [--runs 5]

Fills the database DATABASE_URL points at (a scratch one: it deletes its guests, identifiers
and suppression list) with ready, valid guests of one email identifier each, then times the
eligibility count a build runs (records.services.lifecycle.eligible_sql) with a suppression
list of 0, 1 and 10,000 entries (identities of staged guests). Prints the median of --runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import django


def _fill(cursor, guests: int) -> None:
    cursor.execute("TRUNCATE records_identifier, records_suppressedidentity CASCADE")
    cursor.execute("DELETE FROM records_batchmembership")
    cursor.execute("DELETE FROM records_guest")
    cursor.execute(
        """
        INSERT INTO records_guest (created_at, updated_at, mode, review_status, validation_errors,
            cdp_value, value_hash, delivery_status, delivered_hash, identity_key, email, title,
            first_name, last_name, gender, phone_numbers, street, city, state, country,
            post_code, nationality, language, passport_number, guest_type)
        SELECT now(), now(), 'upsert', 'ready', '[]'::jsonb, '{"email":"b' || n || '@example.com"}',
            md5(n::text), 'not_sent', '', 'email:b' || n || '@example.com',
            'b' || n || '@example.com', '', '', '', '', '{}', '{}', '', '', 'IE', '', '', '', '',
            'customer'
        FROM generate_series(1, %s) n
        """,
        [guests],
    )
    cursor.execute(
        "INSERT INTO records_identifier (guest_id, position, provider, identifier) "
        "SELECT id, 0, 'email', email FROM records_guest"
    )
    cursor.execute("ANALYZE records_guest")
    cursor.execute("ANALYZE records_identifier")


def _suppress(cursor, count: int, deletion_id: int) -> None:
    from records.services.erasure import identity_hash

    cursor.execute("DELETE FROM records_suppressedidentity")
    if count:
        cursor.execute(
            "SELECT provider, identifier FROM records_identifier ORDER BY guest_id LIMIT %s",
            [count],
        )
        hashes = [identity_hash(p, i) for p, i in cursor.fetchall()]
        cursor.executemany(
            "INSERT INTO records_suppressedidentity (identity_hash, deletion_id, created_at) "
            "VALUES (%s, %s, now())",
            [(h, deletion_id) for h in hashes],
        )
    cursor.execute("ANALYZE records_suppressedidentity")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suppression")
    parser.add_argument("--guests", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdpstage.settings")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from records.models import Guest, GuestDeletion
    from records.services.lifecycle import eligible_sql

    user, _ = get_user_model().objects.get_or_create(username="bench-suppression")
    deletion = GuestDeletion.objects.create(requested_by=user)
    with connection.cursor() as cursor:
        _fill(cursor, args.guests)
        for entries in (0, 1, 10_000):
            _suppress(cursor, entries, deletion.pk)
            query = f"SELECT count(*) FROM records_guest t WHERE {eligible_sql(model=Guest)}"
            timings, eligible = [], 0
            for _ in range(args.runs):
                started = time.perf_counter()
                cursor.execute(query)
                eligible = cursor.fetchone()[0]
                timings.append((time.perf_counter() - started) * 1000)
            sys.stdout.write(
                f"{args.guests} guests, {entries} suppressed: eligible {eligible}, "
                f"min {min(timings):.0f} ms, median {statistics.median(timings):.0f} ms ("
                f"max {max(timings):.0f} ms, {args.runs} runs)\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
