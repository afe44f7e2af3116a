# The suppression check as an index join: a stored identity hash on every identifier.

from django.db import migrations, models

# The one SQL definition of identity_hash() (records.services.erasure): sha256 of
# "provider:id" in UTF-8, as hex. IMMUTABLE so a generated column and an index may use it;
# convert_to() is only STABLE because a conversion could be redefined, and UTF-8 to UTF-8 is
# none.
CREATE_FUNCTION = """
CREATE OR REPLACE FUNCTION records_identity_hash(provider text, identifier text)
RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN encode(sha256(convert_to(provider || ':' || identifier, 'UTF8')), 'hex')
"""


class Migration(migrations.Migration):

    dependencies = [
        ('records', '0017_orders'),
    ]

    operations = [
        migrations.RunSQL(
            CREATE_FUNCTION,
            "DROP FUNCTION IF EXISTS records_identity_hash(text, text)",
        ),
        migrations.AddField(
            model_name='identifier',
            name='identity_hash',
            field=models.GeneratedField(db_persist=True, expression=models.Func('provider', 'identifier', function='records_identity_hash', output_field=models.CharField(max_length=64)), output_field=models.CharField(max_length=64)),
        ),
        migrations.AddIndex(
            model_name='identifier',
            index=models.Index(fields=['identity_hash'], name='identifier_identity_hash'),
        ),
    ]
