"""COPY text formatting: every value the import writes survives the trip through PostgreSQL."""

from datetime import UTC, date, datetime

import pytest
from django.db import connection

from records.importing.copytext import copy_field, copy_lines

TRICKY = [
    "plain",
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "back\\slash",
    'quote " and \\" both',
    "ünïcödé ✓ 😀",
    "\\N",
    "",
]


def test_copy_field_escapes_and_nulls():
    assert copy_field(None) == "\\N"
    assert copy_field("a\tb\\c\nd") == "a\\tb\\\\c\\nd"
    assert copy_field(True) == "t"
    assert copy_field(["a", 'b"c']) == '{"a","b\\\\"c"}'


@pytest.mark.django_db
def test_copy_lines_round_trip_through_postgres():
    moment = datetime(2025, 3, 7, 14, 15, 11, 123000, tzinfo=UTC)
    rows = [
        (
            i,
            text,
            [text, "second"],
            date(1985, 12, 24),
            moment,
            i % 2 == 0,
            '{"k": "' + str(i) + '"}',
        )
        for i, text in enumerate(TRICKY)
    ]
    rows.append((99, None, [], None, None, None, None))
    with connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute(
            "CREATE TEMP TABLE copy_probe (n int, t text, a varchar(50)[], d date,"
            " m timestamptz, b boolean, j jsonb)"
        )
        with raw.copy("COPY copy_probe FROM STDIN") as copy:
            for block in copy_lines(rows):
                copy.write(block.encode())
        raw.execute("SELECT n, t, a, d, m, b, j::text FROM copy_probe ORDER BY n")
        back = raw.fetchall()
    for original, stored in zip(rows[:-1], back[:-1], strict=True):
        assert stored[:6] == original[:6]
        assert stored[6] == original[6]
    assert back[-1] == (99, None, [], None, None, None, None)
