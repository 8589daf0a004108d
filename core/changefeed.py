"""A change feed over append-only tables, read in pages "since a cursor" without ever
skipping a row that commits late.

An id or a timestamp is not a safe cursor: a transaction that took id 100 may commit after
one that took id 101, so a reader that has passed 101 never sees 100. Each fed table has a
`tx_id` column that a trigger fills with the inserting transaction's id (PostgreSQL's
`pg_current_xact_id()`). A page holds only rows of transactions older than the oldest one
still running when the page is read (`pg_snapshot_xmin`), ordered by (tx_id, pk): whatever
commits later has a tx_id at or above that horizon and lands after the cursor, never
behind it. On SQLite (one writer at a time) the trigger copies the rowid, which is already
in commit order.
"""

import base64
import binascii
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL

HORIZON_SQL = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
OWN_SQL = "pg_current_xact_id_if_assigned()::text::bigint"


def trigger_forwards(table: str):
    """A RunPython function that fills `table.tx_id` on every insert. Existing rows get 0 from
    the AddField's default (PostgreSQL stores it without rewriting or updating the rows, so
    the ledger's immutability trigger is not involved)."""

    def forwards(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(
                f"""
                CREATE FUNCTION {table}_tx_id() RETURNS trigger AS $$
                BEGIN
                    NEW.tx_id := pg_current_xact_id()::text::bigint;
                    RETURN NEW;
                END
                $$ LANGUAGE plpgsql;
                CREATE TRIGGER {table}_tx_id BEFORE INSERT ON {table}
                    FOR EACH ROW EXECUTE FUNCTION {table}_tx_id();
                """
            )
        elif vendor == "sqlite":
            # `table` is a migration's own constant, never input.
            schema_editor.execute(f"UPDATE {table} SET tx_id = rowid")  # noqa: S608
            trigger = f"CREATE TRIGGER {table}_tx_id AFTER INSERT ON {table} "
            trigger += f"BEGIN UPDATE {table} SET tx_id = NEW.rowid WHERE rowid = NEW.rowid; END"  # noqa: S608
            schema_editor.execute(trigger)

    return forwards


def trigger_backwards(table: str):
    def backwards(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(
                f"DROP TRIGGER IF EXISTS {table}_tx_id ON {table}; DROP FUNCTION IF EXISTS {table}_tx_id();"
            )
        elif vendor == "sqlite":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_tx_id")

    return backwards


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    tx_id: int
    pk: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.tx_id}:{self.pk}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> "Cursor":
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            tx_id, pk = raw.split(":", 1)
            return cls(int(tx_id), pk)
        except (binascii.Error, UnicodeDecodeError, ValueError) as error:
            raise InvalidCursor("Not a cursor this feed gave out.") from error


def settled(queryset: QuerySet) -> QuerySet:
    """Only rows whose transactions had all finished when the statement began: nothing
    that commits later can sort before them. The reader's own transaction's rows count too
    (they commit or roll back with whatever the reader records of them)."""
    if connection.vendor == "postgresql":
        horizon, own = RawSQL(HORIZON_SQL, []), RawSQL(OWN_SQL, [])  # noqa: S611 - constant SQL, no input
        return queryset.filter(Q(tx_id__lt=horizon) | Q(tx_id=own))
    return queryset.filter(tx_id__isnull=False)


def page_after(queryset: QuerySet, *, cursor: Cursor | None, limit: int) -> tuple[list, Cursor | None]:
    """The next `limit` settled rows after `cursor` in (tx_id, pk) order, and the cursor to
    read on from (the given one when the page is empty)."""
    rows = settled(queryset)
    if cursor is not None:
        rows = rows.filter(Q(tx_id__gt=cursor.tx_id) | Q(tx_id=cursor.tx_id, pk__gt=cursor.pk))
    page = list(rows.order_by("tx_id", "pk")[:limit])
    if not page:
        return page, cursor
    last = page[-1]
    return page, Cursor(last.tx_id, str(last.pk))
