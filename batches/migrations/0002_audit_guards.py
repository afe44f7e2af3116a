"""PostgreSQL triggers that keep the audit trail intact whatever the caller (admin, shell, SQL).

Events are strictly append-only. Batches, files and items are never deleted; the columns
that say what was built, approved and sent never change once written; an item's outcome is
written once; a final status stays final. The flow's own updates (status, progress, outcomes
from pending) stay possible. TRUNCATE (test database flushes) is not a row operation and is
not blocked.
"""

from django.db import migrations

FINAL_BATCH = "('succeeded', 'partially_failed', 'failed', 'cancelled')"
FINAL_FILE = "('success', 'error', 'corrupted', 'failed', 'superseded')"

SQL = f"""
CREATE OR REPLACE FUNCTION batches_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'The audit trail cannot be changed: % on % is refused.', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE OR REPLACE FUNCTION batches_batch_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.schema IS DISTINCT FROM OLD.schema
       OR NEW.created_by_id IS DISTINCT FROM OLD.created_by_id
       OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR NEW.resend_of_id IS DISTINCT FROM OLD.resend_of_id
       OR (OLD.approved_by_id IS NOT NULL
           AND NEW.approved_by_id IS DISTINCT FROM OLD.approved_by_id)
       OR (OLD.approved_at IS NOT NULL AND NEW.approved_at IS DISTINCT FROM OLD.approved_at)
       OR (OLD.status IN {FINAL_BATCH} AND NEW.status IS DISTINCT FROM OLD.status) THEN
        RAISE EXCEPTION 'Batch %: what was created, approved or finished cannot be changed.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION batches_batchfile_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.batch_id IS DISTINCT FROM OLD.batch_id
       OR NEW.sequence IS DISTINCT FROM OLD.sequence
       OR NEW.previous_id IS DISTINCT FROM OLD.previous_id
       OR NEW.batch_ref IS DISTINCT FROM OLD.batch_ref
       OR NEW.file IS DISTINCT FROM OLD.file
       OR NEW.md5 IS DISTINCT FROM OLD.md5
       OR NEW.size IS DISTINCT FROM OLD.size
       OR NEW.record_count IS DISTINCT FROM OLD.record_count
       OR NEW.first_record_id IS DISTINCT FROM OLD.first_record_id
       OR NEW.last_record_id IS DISTINCT FROM OLD.last_record_id
       OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR (OLD.approved_md5 <> '' AND NEW.approved_md5 IS DISTINCT FROM OLD.approved_md5)
       OR (OLD.error_log <> '' AND NEW.error_log IS DISTINCT FROM OLD.error_log)
       OR (OLD.status IN {FINAL_FILE} AND NEW.status IS DISTINCT FROM OLD.status) THEN
        RAISE EXCEPTION 'Batch file %: what was built, approved or sent cannot be changed.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION batches_batchitem_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.file_id IS DISTINCT FROM OLD.file_id
       OR NEW.line IS DISTINCT FROM OLD.line
       OR NEW.record_ref IS DISTINCT FROM OLD.record_ref
       OR NEW.record_id IS DISTINCT FROM OLD.record_id
       OR NEW.value_hash IS DISTINCT FROM OLD.value_hash
       OR (OLD.outcome <> 'pending'
           AND (NEW.outcome, NEW.code, NEW.message)
               IS DISTINCT FROM (OLD.outcome, OLD.code, OLD.message)) THEN
        RAISE EXCEPTION 'Batch item %: what was sent and its outcome cannot be changed.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER batches_batchevent_append_only BEFORE UPDATE OR DELETE ON batches_batchevent
    FOR EACH ROW EXECUTE FUNCTION batches_refuse_change();
CREATE TRIGGER batches_batch_no_delete BEFORE DELETE ON batches_batch
    FOR EACH ROW EXECUTE FUNCTION batches_refuse_change();
CREATE TRIGGER batches_batchfile_no_delete BEFORE DELETE ON batches_batchfile
    FOR EACH ROW EXECUTE FUNCTION batches_refuse_change();
CREATE TRIGGER batches_batchitem_no_delete BEFORE DELETE ON batches_batchitem
    FOR EACH ROW EXECUTE FUNCTION batches_refuse_change();
CREATE TRIGGER batches_batch_guard BEFORE UPDATE ON batches_batch
    FOR EACH ROW EXECUTE FUNCTION batches_batch_guard();
CREATE TRIGGER batches_batchfile_guard BEFORE UPDATE ON batches_batchfile
    FOR EACH ROW EXECUTE FUNCTION batches_batchfile_guard();
CREATE TRIGGER batches_batchitem_guard BEFORE UPDATE ON batches_batchitem
    FOR EACH ROW EXECUTE FUNCTION batches_batchitem_guard();
"""

REVERSE_SQL = """
DROP TRIGGER IF EXISTS batches_batchevent_append_only ON batches_batchevent;
DROP TRIGGER IF EXISTS batches_batch_no_delete ON batches_batch;
DROP TRIGGER IF EXISTS batches_batchfile_no_delete ON batches_batchfile;
DROP TRIGGER IF EXISTS batches_batchitem_no_delete ON batches_batchitem;
DROP TRIGGER IF EXISTS batches_batch_guard ON batches_batch;
DROP TRIGGER IF EXISTS batches_batchfile_guard ON batches_batchfile;
DROP TRIGGER IF EXISTS batches_batchitem_guard ON batches_batchitem;
DROP FUNCTION IF EXISTS batches_refuse_change();
DROP FUNCTION IF EXISTS batches_batch_guard();
DROP FUNCTION IF EXISTS batches_batchfile_guard();
DROP FUNCTION IF EXISTS batches_batchitem_guard();
"""


class Migration(migrations.Migration):
    dependencies = [("batches", "0001_initial")]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
