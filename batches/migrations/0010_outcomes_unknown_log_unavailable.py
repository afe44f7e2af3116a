"""Outcomes never guessed: files whose error log could not be fetched, unconfirmed counts.

The item guard of 0002 let an outcome be written once, from `pending`. An `unknown` outcome may
now also be resolved once, to `delivered` or `rejected`, by CDP's error log fetched later
(batches.services.batchfile_log_fetch); every other change stays refused.
"""

from django.db import migrations, models

ITEM_GUARD = """
CREATE OR REPLACE FUNCTION batches_batchitem_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.file_id IS DISTINCT FROM OLD.file_id
       OR NEW.line IS DISTINCT FROM OLD.line
       OR NEW.record_ref IS DISTINCT FROM OLD.record_ref
       OR NEW.record_id IS DISTINCT FROM OLD.record_id
       OR NEW.value_hash IS DISTINCT FROM OLD.value_hash
       OR (OLD.outcome <> 'pending'
           AND NOT (OLD.outcome = 'unknown' AND NEW.outcome IN ('delivered', 'rejected'))
           AND (NEW.outcome, NEW.code, NEW.message)
               IS DISTINCT FROM (OLD.outcome, OLD.code, OLD.message)) THEN
        RAISE EXCEPTION 'Batch item %: what was sent and its outcome cannot be changed.', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
"""

ITEM_GUARD_0002 = """
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
"""


class Migration(migrations.Migration):

    dependencies = [
        ('batches', '0009_batchitem_file_without_fk_trigger'),
    ]

    operations = [
        migrations.AddField(
            model_name='batch',
            name='records_unconfirmed',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='batch',
            name='resend_unconfirmed',
            field=models.BooleanField(default=False),
        ),
        migrations.AlterField(
            model_name='batchfile',
            name='status',
            field=models.CharField(choices=[('pending', 'Pending'), ('allocated', 'Upload location allocated'), ('uploaded', 'Uploaded'), ('processing', 'Processing at CDP'), ('success', 'Success'), ('error', 'Error (see the log)'), ('corrupted', 'Corrupted (re-sent under a new ref)'), ('failed', 'Failed (we gave up)'), ('superseded', 'Replaced by a new ref'), ('log_unavailable', 'Error, outcomes unknown (log unavailable)')], db_index=True, default='pending', max_length=20),
        ),
        migrations.AlterField(
            model_name='batchitem',
            name='outcome',
            field=models.CharField(choices=[('pending', 'Pending'), ('delivered', 'Delivered'), ('rejected', 'Rejected by CDP'), ('failed', 'Not delivered (the file failed)'), ('unknown', 'Unconfirmed (outcome unknown)'), ('resent', 'Re-sent under a new ref')], default='pending', max_length=10),
        ),
        migrations.RunSQL(ITEM_GUARD, ITEM_GUARD_0002),
    ]
