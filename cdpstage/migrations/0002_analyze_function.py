"""cdpstage_analyze(table): ANALYZE for the app role, which owns no table.

ANALYZE needs the table's owner (PostgreSQL 15; 17's MAINTAIN privilege would also allow
VACUUM, REINDEX and LOCK). The app refreshes the statistics of batch items and memberships right
after writing many rows (batches.services.building, records.services.lifecycle), so the next
statements plan with true counts. SECURITY DEFINER: runs as the owner, who created it here; it
analyses only ordinary tables of the public schema, and nothing else.
"""

from django.db import migrations

SQL = """
CREATE FUNCTION cdpstage_analyze(target regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_class c
        WHERE c.oid = target AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
    ) THEN
        RAISE EXCEPTION 'cdpstage_analyze: % is not a table of the public schema.', target
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('ANALYZE %s', target);
END
$$;
"""

REVERSE_SQL = "DROP FUNCTION IF EXISTS cdpstage_analyze(regclass);"


class Migration(migrations.Migration):
    dependencies = [("cdpstage", "0001_roles_operator_review")]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
