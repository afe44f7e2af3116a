"""Finished batches, files and items frozen in every column, not only those that define what was
built and sent (issue 10: a batch's note, message and counts, a file's stats and the items of a
cancelled batch could still be rewritten).

A finished row (a final status: batches.models.BATCH_FINAL_STATUSES, BATCHFILE_FINAL_STATUSES)
refuses any change, compared as a whole row (`to_jsonb`), so a column added later is covered
too. The only changes the app still makes after the end are listed in the functions, each with
why. Items: an outcome is written once (pending -> outcome), an unknown one resolved once by a
late error log, and nothing of a batch that was never sent (cancelled) changes at all.

Against the app role (cdpstage.dbroles), which owns no table, these triggers cannot be
disabled; the owner role (migrations) can, and is trusted for it.
"""

import importlib

from django.db import migrations

FINAL_BATCH = "('succeeded', 'partially_failed', 'failed', 'cancelled')"
FINAL_FILE = "('success', 'error', 'corrupted', 'failed', 'superseded', 'log_unavailable')"
ITEM_OUTCOMES = "('delivered', 'rejected', 'failed', 'unknown', 'resent')"

SQL = f"""
CREATE OR REPLACE FUNCTION batches_batch_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- What a recount writes (below); nothing else of a finished batch ever changes.
    recount text[] := ARRAY['records_delivered', 'records_rejected', 'records_failed',
                            'records_unconfirmed', 'message', 'updated_at'];
    items record;
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id
       OR NEW.schema IS DISTINCT FROM OLD.schema
       OR NEW.created_by_id IS DISTINCT FROM OLD.created_by_id
       OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR NEW.resend_of_id IS DISTINCT FROM OLD.resend_of_id
       OR (OLD.approved_by_id IS NOT NULL
           AND NEW.approved_by_id IS DISTINCT FROM OLD.approved_by_id)
       OR (OLD.approved_at IS NOT NULL AND NEW.approved_at IS DISTINCT FROM OLD.approved_at)
       OR (OLD.sent_at IS NOT NULL AND NEW.sent_at IS DISTINCT FROM OLD.sent_at)
       OR (OLD.status IN {FINAL_BATCH} AND NEW.status IS DISTINCT FROM OLD.status) THEN
        RAISE EXCEPTION 'Batch %: what was created, approved or finished cannot be changed.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status NOT IN {FINAL_BATCH} OR to_jsonb(NEW) = to_jsonb(OLD) THEN
        RETURN NEW;
    END IF;
    -- A finished batch. The one change the app makes: a recount of its outcomes after CDP's
    -- error log of a file was fetched after all (batches.services.batchfile_log_fetch), which
    -- resolves records of unknown outcome. Accepted only for a batch that was sent, only if
    -- the counts change, and only to exactly what its live files' items say.
    IF (to_jsonb(NEW) - recount) IS DISTINCT FROM (to_jsonb(OLD) - recount)
       OR OLD.sent_at IS NULL
       OR (NEW.records_delivered, NEW.records_rejected, NEW.records_failed,
           NEW.records_unconfirmed)
          IS NOT DISTINCT FROM (OLD.records_delivered, OLD.records_rejected, OLD.records_failed,
                                OLD.records_unconfirmed) THEN
        RAISE EXCEPTION 'Batch %: a finished batch cannot be changed.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT count(*) FILTER (WHERE i.outcome = 'delivered') AS delivered,
           count(*) FILTER (WHERE i.outcome = 'rejected') AS rejected,
           count(*) FILTER (WHERE i.outcome = 'unknown') AS unconfirmed,
           count(*) FILTER (WHERE i.outcome NOT IN ('delivered', 'rejected', 'unknown'))
               AS failed
      INTO items
      FROM batches_batchfile f JOIN batches_batchitem i ON i.file_id = f.id
     WHERE f.batch_id = OLD.id
       AND NOT EXISTS (SELECT 1 FROM batches_batchfile s WHERE s.previous_id = f.id);
    IF (NEW.records_delivered, NEW.records_rejected, NEW.records_failed, NEW.records_unconfirmed)
       IS DISTINCT FROM (items.delivered, items.rejected, items.failed, items.unconfirmed) THEN
        RAISE EXCEPTION 'Batch %: its outcome counts must be what its items say.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION batches_batchfile_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- What a late error log writes (below); nothing else of a finished file ever changes.
    resolution text[] := ARRAY['status', 'error_log', 'remote_status', 'status_json', 'stats',
                               'message', 'file_error_count', 'file_errors', 'updated_at'];
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id
       OR NEW.batch_id IS DISTINCT FROM OLD.batch_id
       OR NEW.sequence IS DISTINCT FROM OLD.sequence
       OR NEW.previous_id IS DISTINCT FROM OLD.previous_id
       OR NEW.batch_ref IS DISTINCT FROM OLD.batch_ref
       OR NEW.file IS DISTINCT FROM OLD.file
       OR NEW.md5 IS DISTINCT FROM OLD.md5
       OR NEW.size IS DISTINCT FROM OLD.size
       OR NEW.record_count IS DISTINCT FROM OLD.record_count
       OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR (OLD.approved_md5 <> '' AND NEW.approved_md5 IS DISTINCT FROM OLD.approved_md5)
       OR (OLD.error_log <> '' AND NEW.error_log IS DISTINCT FROM OLD.error_log) THEN
        RAISE EXCEPTION 'Batch file %: what was built, approved or sent cannot be changed.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status NOT IN {FINAL_FILE} OR to_jsonb(NEW) = to_jsonb(OLD) THEN
        RETURN NEW;
    END IF;
    -- A finished file. The one change the app makes: CDP said `error` but its log could not be
    -- fetched (log_unavailable); fetched later (batches.services.batchfile_log_fetch), the file
    -- moves to `error` with the log, CDP's last status reply and the log's summary, once.
    IF NOT (OLD.status = 'log_unavailable' AND NEW.status = 'error' AND NEW.error_log <> ''
            AND (to_jsonb(NEW) - resolution) IS NOT DISTINCT FROM (to_jsonb(OLD) - resolution))
    THEN
        RAISE EXCEPTION 'Batch file %: a finished file cannot be changed.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

-- Row by row, without lookups except for the rare unknown outcome: a file's outcomes are one
-- UPDATE of up to hundreds of thousands of items. The columns are named one by one (to_jsonb
-- per row cost twice as much here); tests/batches/test_audit_guards.py checks every column
-- of the table is.
CREATE OR REPLACE FUNCTION batches_batchitem_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id
       OR NEW.file_id IS DISTINCT FROM OLD.file_id
       OR NEW.line IS DISTINCT FROM OLD.line
       OR NEW.record_ref IS DISTINCT FROM OLD.record_ref
       OR NEW.record_id IS DISTINCT FROM OLD.record_id
       OR NEW.value_hash IS DISTINCT FROM OLD.value_hash THEN
        RAISE EXCEPTION 'Batch item %: what was sent cannot be changed.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.outcome, NEW.code, NEW.message) IS NOT DISTINCT FROM
       (OLD.outcome, OLD.code, OLD.message) THEN
        RETURN NEW;
    END IF;
    -- An outcome (with CDP's code and message) is written once, from pending; an unknown one
    -- may be resolved once, to delivered or rejected, and only by the error log of a file that
    -- is still log_unavailable (batchfile_log_fetch applies it before the file moves on).
    IF NOT ((OLD.outcome = 'pending' AND NEW.outcome IN {ITEM_OUTCOMES})
            OR (OLD.outcome = 'unknown' AND NEW.outcome IN ('delivered', 'rejected')
                AND (SELECT f.status FROM batches_batchfile f WHERE f.id = OLD.file_id)
                    = 'log_unavailable')) THEN
        RAISE EXCEPTION 'Batch item %: its outcome cannot be changed.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

-- Once per statement: the items of a batch that was never sent (cancelled, or not yet sent)
-- are never written; their `pending` is the record that nothing went to CDP.
CREATE OR REPLACE FUNCTION batches_batchitem_sent_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    files bigint[];
BEGIN
    SELECT array_agg(DISTINCT file_id) INTO files FROM changed_items;
    IF EXISTS (SELECT 1 FROM batches_batchfile f JOIN batches_batch b ON b.id = f.batch_id
               WHERE f.id = ANY (files) AND b.sent_at IS NULL) THEN
        RAISE EXCEPTION 'Items of a batch that was never sent cannot be changed.'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER batches_batchitem_sent_only AFTER UPDATE ON batches_batchitem
    REFERENCING NEW TABLE AS changed_items
    FOR EACH STATEMENT EXECUTE FUNCTION batches_batchitem_sent_only();
"""


def _previous_sql() -> str:
    """The guard functions as migrations 0002 (batch), 0004 (file) and 0010 (item) left them."""
    audit = importlib.import_module("batches.migrations.0002_audit_guards").SQL
    start = audit.index("CREATE OR REPLACE FUNCTION batches_batch_guard()")
    end = audit.index("CREATE OR REPLACE FUNCTION batches_batchfile_guard()")
    files = importlib.import_module("batches.migrations.0004_drop_record_id_range")
    items = importlib.import_module("batches.migrations.0010_outcomes_unknown_log_unavailable")
    return audit[start:end] + files.GUARD + items.ITEM_GUARD


REVERSE_SQL = (
    "DROP TRIGGER IF EXISTS batches_batchitem_sent_only ON batches_batchitem;\n"
    "DROP FUNCTION IF EXISTS batches_batchitem_sent_only();\n" + _previous_sql()
)


class Migration(migrations.Migration):
    dependencies = [("batches", "0010_outcomes_unknown_log_unavailable")]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
