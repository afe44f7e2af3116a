"""The app role (the tests' own connection, like the web processes' and the workers'): each way
issue 10 found to remove or rewrite the audit trail, tried as it, fails."""

import pytest
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from batches.models import Batch, BatchEvent, BatchFile, BatchItem
from batches.services import batch_event_create
from cdpstage.dbroles import APP_APPEND_ONLY, APP_DELETES, APP_READ_ONLY, table_analyze
from records.models import ImportRun, ImportRunEvent

pytestmark = pytest.mark.django_db

AUDIT_TABLES = (
    "batches_batch",
    "batches_batchfile",
    "batches_batchitem",
    "batches_batchevent",
    "records_importrunevent",
    "records_suppressedidentity",
)


def _refused(statement: str, params: list | None = None, *, match: str | None = None) -> None:
    """`statement` fails (in a savepoint, so the test goes on)."""
    with (
        pytest.raises(DatabaseError, match=match),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, params)


@pytest.fixture
def sent_batch(user_factory):
    """A batch that was sent and succeeded: one file, one delivered item, one event."""
    batch = Batch.objects.create(
        schema="guest", created_by=user_factory("creator"), status=Batch.Status.UPLOADING
    )
    batch_file = BatchFile.objects.create(
        batch=batch, sequence=1, file="batches/x.ndjson.gz", md5="0" * 32, size=10, record_count=1
    )
    BatchItem.objects.create(
        file=batch_file,
        line=1,
        record_ref="00000000-0000-4000-8000-000000000001",
        record_id=1,
        value_hash="1" * 32,
        outcome=BatchItem.Outcome.DELIVERED,
    )
    batch_event_create(batch_id=batch.pk, kind="note", message="Sent.")
    return batch


def test_the_app_connects_as_a_role_that_owns_and_may_create_nothing():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        )
        user, *powers = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM pg_class WHERE relowner = current_user::regrole"
            " AND relnamespace = 'public'::regnamespace"
        )
        owned = cursor.fetchone()[0]
        cursor.execute("SELECT has_schema_privilege('public', 'CREATE')")
        may_create = cursor.fetchone()[0]
    assert user == settings.DATABASE_APP["USER"] != settings.DATABASE_OWNER["USER"]
    assert powers == [False, False, False, False]
    assert owned == 0
    assert not may_create
    _refused("CREATE TABLE records_smuggled (id int)", match="permission denied for schema")


def test_app_role_cannot_turn_triggers_off_with_session_replication_role():
    _refused("SET session_replication_role = replica", match="permission denied")
    _refused("SET LOCAL session_replication_role = replica", match="permission denied")


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_app_role_cannot_disable_or_drop_the_audit_triggers(table):
    _refused(f"ALTER TABLE {table} DISABLE TRIGGER ALL", match="must be owner")
    _refused(f"ALTER TABLE {table} DISABLE TRIGGER USER", match="must be owner")
    _refused(f"ALTER TABLE {table} OWNER TO CURRENT_USER", match="must be owner")
    _refused(f"DROP TABLE {table}", match="must be owner")


def test_app_role_cannot_drop_or_replace_a_guard_function():
    _refused("DROP FUNCTION batches_batch_guard()", match="must be owner")
    _refused(
        "CREATE OR REPLACE FUNCTION batches_refuse_change() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        match="permission denied for schema",
    )
    _refused("DROP TRIGGER batches_batch_guard ON batches_batch", match="must be owner")


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_app_role_cannot_truncate_the_audit_trail(sent_batch, table):
    _refused(f"TRUNCATE {table} CASCADE", match="permission denied")
    assert BatchEvent.objects.filter(batch=sent_batch).exists()


def test_audit_rows_cannot_be_deleted_or_events_updated(sent_batch):
    run = ImportRun.objects.create(schema="guest")
    ImportRunEvent.objects.create(run=run, to_status="pending")
    for table in ("batches_batchevent", "records_importrunevent"):
        _refused(f"UPDATE {table} SET message = 'rewritten'", match="permission denied")
    for table in AUDIT_TABLES:
        _refused(f"DELETE FROM {table}", match="permission denied")
    assert BatchEvent.objects.get(batch=sent_batch).message == "Sent."
    assert ImportRunEvent.objects.filter(run=run).count() == 1


def test_approval_by_the_creator_is_refused_by_the_database(sent_batch):
    with (
        pytest.raises(IntegrityError, match="batch_approver_is_not_creator"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE batches_batch SET approved_by_id = created_by_id, approved_at = now()"
            " WHERE id = %s",
            [sent_batch.pk],
        )


def test_app_privileges_are_exactly_the_policy():
    """DELETE only where the app deletes, no UPDATE of append-only tables, no TRUNCATE,
    REFERENCES or TRIGGER anywhere: read from PostgreSQL for every table of the schema."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename,"
            " has_table_privilege(tablename, 'SELECT'), has_table_privilege(tablename, 'INSERT'),"
            " has_table_privilege(tablename, 'UPDATE'), has_table_privilege(tablename, 'DELETE'),"
            " has_table_privilege(tablename, 'TRUNCATE'),"
            " has_table_privilege(tablename, 'REFERENCES'),"
            " has_table_privilege(tablename, 'TRIGGER')"
            " FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
        rows = cursor.fetchall()
    assert {name for name, *_ in rows} >= set(APP_DELETES) | APP_APPEND_ONLY | APP_READ_ONLY
    for name, select, insert, update, delete, truncate, references, trigger in rows:
        expected = (
            True,
            name not in APP_READ_ONLY,
            name not in APP_APPEND_ONLY | APP_READ_ONLY,
            name in APP_DELETES,
            False,
            False,
            False,
        )
        assert (select, insert, update, delete, truncate, references, trigger) == expected, name


def test_analyze_through_the_owners_function_only_for_our_tables():
    with connection.cursor() as cursor:
        table_analyze(cursor, "batches_batchitem")
    with (
        pytest.raises(DatabaseError, match="not a table of the public schema"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        table_analyze(cursor, "pg_catalog.pg_authid")


def test_a_finished_batch_keeps_its_events_whatever_the_app_role_tries(sent_batch):
    """The whole issue 10 attack, in order; every step refused, nothing lost."""
    Batch.objects.filter(pk=sent_batch.pk).update(
        status=Batch.Status.SUCCEEDED, finished_at=timezone.now()
    )
    for statement in (
        "SET session_replication_role = replica",
        "ALTER TABLE batches_batchevent DISABLE TRIGGER ALL",
        "TRUNCATE batches_batchevent",
        "DELETE FROM batches_batchevent",
        "UPDATE batches_batch SET note = 'nothing happened', message = ''",
    ):
        _refused(statement)
    assert BatchEvent.objects.filter(batch=sent_batch).count() == 1
    assert Batch.objects.get(pk=sent_batch.pk).note == ""
