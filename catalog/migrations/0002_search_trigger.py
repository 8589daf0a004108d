"""Keep `catalog_item.search_vector` in step with the item's names and description on every
write, whoever makes it (API, admin, CSV import, bulk loads): names weigh more than the
description. The 'simple' configuration neither stems nor drops words, so it serves every
language a tenant writes in; prefix matching and trigrams cover plurals and typos."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION catalog_item_search_vector() RETURNS trigger AS $$
BEGIN
    NEW.search_vector :=
        setweight(to_tsvector('simple', coalesce(NEW.name, '') || ' ' || coalesce(
            (SELECT string_agg(value, ' ') FROM jsonb_each_text(coalesce(NEW.names, '{}'::jsonb))), '')), 'A')
        || setweight(to_tsvector('simple', coalesce(NEW.description, '')), 'B');
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER catalog_item_search_vector
    BEFORE INSERT OR UPDATE OF name, names, description ON catalog_item
    FOR EACH ROW EXECUTE FUNCTION catalog_item_search_vector();
"""

DROP = """
DROP TRIGGER IF EXISTS catalog_item_search_vector ON catalog_item;
DROP FUNCTION IF EXISTS catalog_item_search_vector();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_catalog")]

    operations = [migrations.RunPython(forwards, backwards)]
