"""Database helpers that keep PostgreSQL-specific schema out of the embedded SQLite default."""

from django.contrib.postgres.indexes import GinIndex
from django.db import connection, models
from django.db.models import F


class JsonGinIndex(GinIndex):
    """A GIN index on PostgreSQL (containment queries on JSONB); a plain index on SQLite,
    which `make run` uses when no DATABASE_URL is set and which has no GIN."""

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if schema_editor.connection.vendor != "postgresql":
            return models.Index(fields=self.fields, name=self.name).create_sql(model, schema_editor, **kwargs)
        return super().create_sql(model, schema_editor, using=using, **kwargs)


class PostgresGinIndex(GinIndex):
    """A GIN index on PostgreSQL, expressions and operator classes included (full-text
    vectors, `gin_trgm_ops`); on SQLite a plain index on the columns it covers."""

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if schema_editor.connection.vendor == "postgresql":
            return super().create_sql(model, schema_editor, using=using, **kwargs)
        fields = list(self.fields) or sorted(
            {node.name for expression in self.expressions for node in expression.flatten() if isinstance(node, F)}
        )
        return models.Index(fields=fields, name=self.name).create_sql(model, schema_editor, **kwargs)


def database_url(settings_dict: dict) -> str:
    """The DATABASE_URL of a connection's settings, for a child process (a worker, a server)
    that must use the same database, the test database included."""
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


def values_from_db(model, names: list[str], values) -> list:
    """Values a hand-written query read for `model`'s fields `names`, as the ORM's compiler
    would hand them over: the backend's converters and the fields' from_db_value applied
    (SQLite's text timestamps and JSON, for two), so they equal what a queryset returns."""
    result = []
    for name, value in zip(names, values, strict=True):
        expression = model._meta.get_field(name).get_col(model._meta.db_table)
        for converter in connection.ops.get_db_converters(expression) + expression.get_db_converters(connection):
            value = converter(value, expression, connection)
        result.append(value)
    return result
