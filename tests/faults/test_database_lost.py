"""The database connection lost in the middle of a batch of events.

A PostgreSQL restart ends every session: each open transaction is rolled back and the
client's connection is gone. Here the session serving a `POST /events:batch` is ended by the
server itself (`pg_terminate_backend`, which is what a restart does to each session) while
the batch is half-written, from a trigger on the ledger, so the fault lands inside an event's
transaction whatever the code path. What must hold: no partial batch (a batch is one
transaction: none of its events is applied, and none half applied: an inbound event without its
transfer, a transfer without its balance), the ledger verifies, and posting the same batch again
applies every event exactly once.
"""

import threading

import pytest
from django.db import connection
from django.db.models import Sum

from rewards import selectors
from rewards.models import InboundEvent, Transfer
from tests.rewards.test_earning_concurrency import key_client, purchase

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = 40
KILL_AT = 17  # the 17th ledger transfer written ends the session


@pytest.fixture
def session_killed_at_transfer():
    """A trigger that ends its own session when the KILL_AT-th transfer is inserted (a
    sequence counts them, outside any transaction, so it counts rolled-back ones too)."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE fault_transfers")
        cursor.execute(
            f"""
            CREATE FUNCTION fault_kill_session() RETURNS trigger AS $$
            BEGIN
                IF nextval('fault_transfers') = {KILL_AT} THEN
                    PERFORM pg_terminate_backend(pg_backend_pid());
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql
            """
        )
        cursor.execute(
            "CREATE TRIGGER fault_kill_session AFTER INSERT ON rewards_transfer "
            "FOR EACH ROW EXECUTE FUNCTION fault_kill_session()"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS fault_kill_session ON rewards_transfer")
        cursor.execute("DROP FUNCTION IF EXISTS fault_kill_session()")
        cursor.execute("DROP SEQUENCE IF EXISTS fault_transfers")


def post_batch(tenant, events: list[dict]):
    """POST the batch on a connection of its own (a thread), as a server process would."""
    outcome: dict = {}

    def run():
        try:
            outcome["response"] = key_client(tenant.raw_api_key).post(
                "/api/v1/events:batch", {"events": events}, format="json"
            )
        except Exception as exc:  # noqa: BLE001 - the lost connection surfaces here
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive(), "the batch hung"
    return outcome


def assert_nothing_half_applied(tenant):
    """Every applied event has its transfer and every transfer its event; balances equal
    the ledger (`ledger_verify` checks each member's balance against its transfers)."""
    applied = InboundEvent.objects.filter(tenant=tenant, status=InboundEvent.Status.APPLIED)
    earns = Transfer.objects.filter(tenant=tenant, kind=Transfer.Kind.EARN, reference_type="event")
    assert sorted(earns.values_list("reference_id", flat=True)) == sorted(applied.values_list("event_id", flat=True))
    assert (earns.aggregate(s=Sum("amount"))["s"] or 0) == (applied.aggregate(s=Sum("points"))["s"] or 0)
    assert selectors.ledger_verify(tenant=tenant).ok


def test_a_batch_cut_by_a_lost_session_leaves_no_half_event_and_completes_on_retry(tenant, session_killed_at_transfer):
    events = [purchase(f"batch-{i}", f"m-{i % 5}") for i in range(EVENTS)]

    # when the session serving the batch ends while the 17th transfer is being written
    cut = post_batch(tenant, events)

    # then the request failed (the client sees an error, not a success)
    assert "error" in cut or cut["response"].status_code >= 500, cut
    # and nothing of the batch was stored: no partial batch, no half event
    stored = InboundEvent.objects.filter(tenant=tenant).count()
    assert stored == 0
    assert not Transfer.objects.filter(tenant=tenant).exists()
    assert_nothing_half_applied(tenant)

    # when the client posts the same batch again (the database is back: a new session)
    retried = post_batch(tenant, events)

    # then every event is applied exactly once: the earlier ones as duplicates
    assert "error" not in retried, retried
    body = retried["response"].json()
    assert retried["response"].status_code == 200, body
    assert body["summary"]["applied"] + body["summary"]["duplicate"] == EVENTS
    assert body["summary"]["duplicate"] == stored
    assert InboundEvent.objects.filter(tenant=tenant, status=InboundEvent.Status.APPLIED).count() == EVENTS
    assert Transfer.objects.filter(tenant=tenant, kind=Transfer.Kind.EARN).aggregate(s=Sum("amount"))["s"] == 400
    assert_nothing_half_applied(tenant)
