"""An index for each tenant's audit log, newest first: the back office lists an operator's
entries by the tenant in their additional data (core/audit/admin.py). PostgreSQL only; the
table is auditlog's, so the index is made here, by SQL, outside any model's state."""

from django.db import migrations

INDEX = "audit_logentry_tenant_time"


def index_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON auditlog_logentry "
            "((additional_data -> 'tenant'), timestamp DESC, id DESC)"
        )


def index_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("auditlog", "0017_add_actor_email"),
    ]

    operations = [
        migrations.RunPython(index_create, index_drop),
    ]
