"""The database refuses benefits that break their schema (seed 004 `trg_validate_benefits`):
an object whose `bonus_points`, if present, is a whole number >= 0 and whose `custom_perks`,
if present, is a list of strings, and nothing else. PostgreSQL only; SQLite (the embedded
default) relies on the API's and admin's validation."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION vip_tier_benefits_valid(b jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_typeof(b) = 'object'
     AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(b) k WHERE k NOT IN ('bonus_points', 'custom_perks'))
     AND (NOT b ? 'bonus_points' OR (
          jsonb_typeof(b -> 'bonus_points') = 'number'
          AND (b ->> 'bonus_points')::numeric >= 0
          AND (b ->> 'bonus_points')::numeric = trunc((b ->> 'bonus_points')::numeric)))
     AND (NOT b ? 'custom_perks' OR (
          jsonb_typeof(b -> 'custom_perks') = 'array'
          AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(b -> 'custom_perks') e WHERE jsonb_typeof(e) <> 'string')))
$$;
ALTER TABLE tiers_tier ADD CONSTRAINT vip_tier_benefits_schema CHECK (vip_tier_benefits_valid(benefits));
"""

DROP = """
ALTER TABLE tiers_tier DROP CONSTRAINT IF EXISTS vip_tier_benefits_schema;
DROP FUNCTION IF EXISTS vip_tier_benefits_valid(jsonb);
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("tiers", "0001_vip_tiers")]

    operations = [migrations.RunPython(forwards, backwards)]
