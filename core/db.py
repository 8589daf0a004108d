"""Database helpers that keep PostgreSQL-specific schema out of the embedded SQLite default."""

from django.contrib.postgres.indexes import GinIndex
from django.db import models


class JsonGinIndex(GinIndex):
    """A GIN index on PostgreSQL (containment queries on JSONB); a plain index on SQLite,
    which `make run` uses when no DATABASE_URL is set and which has no GIN."""

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if schema_editor.connection.vendor != "postgresql":
            return models.Index(fields=self.fields, name=self.name).create_sql(model, schema_editor, **kwargs)
        return super().create_sql(model, schema_editor, using=using, **kwargs)
