"""On PostgreSQL the database itself refuses to update or delete a ledger transfer."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION rewards_transfer_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger transfers are immutable (%% on %%)', TG_OP, OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER rewards_transfer_immutable
    BEFORE UPDATE OR DELETE ON rewards_transfer
    FOR EACH ROW EXECUTE FUNCTION rewards_transfer_immutable();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS rewards_transfer_immutable ON rewards_transfer;
DROP FUNCTION IF EXISTS rewards_transfer_immutable();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("rewards", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
