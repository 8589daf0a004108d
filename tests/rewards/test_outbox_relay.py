"""The outbox relay: every committed outbound event is published at least once, in order per
member, to the member's WebSocket group (and to webhooks); a process killed between commit and
publish loses nothing; the event log lists what was emitted."""

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from channels.layers import get_channel_layer
from django.db import connections
from django.utils import timezone

from rewards import services
from rewards.expiry import member_expiry_notice
from rewards.models import EarnedLot, OutboxEvent
from rewards.notifications import member_group, member_notifications
from rewards.outbox import outbox_write
from rewards.relay import RELAY_LOCK, outbox_relay_run
from tests.core.shapes import assert_error
from tests.factories import MemberFactory
from tests.integration.conftest import _database_url

ROOT = Path(__file__).resolve().parents[2]


class GroupListener:
    """A channel in a member's group, as a connected socket would be. It lives on an event
    loop of its own (a channel layer's receive buffers belong to one loop)."""

    def __init__(self, tenant_id, member_ref: str):
        self.layer = get_channel_layer()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.channel = self._run(self.layer.new_channel())
        self._run(self.layer.group_add(member_group(tenant_id, member_ref), self.channel))

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def drain(self, *, idle: float = 0.5) -> list[dict]:
        """Every message that arrives until none has for `idle` seconds."""

        async def receive_all():
            messages = []
            while True:
                try:
                    messages.append(await asyncio.wait_for(self.layer.receive(self.channel), timeout=idle))
                except TimeoutError:
                    return messages

        return self._run(receive_all())


def credit(member, points: int = 5, reason: str = "test"):
    return services.points_adjust(tenant=member.tenant, member=member, points=points, reason=reason, actor="test")


def unique_in_order(messages: list[dict]) -> list[str]:
    """Event ids as a consumer sees them after de-duplication, asserting positions rise."""
    seen, ids, last = set(), [], 0
    for message in messages:
        event_id = message["frame"]["eventId"]
        if event_id in seen:
            continue
        assert message["position"] > last, "frames out of order"
        last = message["position"]
        seen.add(event_id)
        ids.append(event_id)
    return ids


@pytest.mark.relay
@pytest.mark.django_db(transaction=True)
def test_committed_events_reach_the_members_group_in_order_once_published(tenant):
    member = MemberFactory(tenant=tenant)
    other = MemberFactory(tenant=tenant)
    listener = GroupListener(tenant.pk, member.external_ref)

    for n in range(1, 6):
        credit(member, n)
        credit(other, n)

    messages = listener.drain()
    frames = [m["frame"] for m in messages]
    assert [f["type"] for f in frames] == ["POINTS_UPDATED"] * 5
    assert [f["points"] for f in frames] == [1, 2, 3, 4, 5]
    assert [f["balance"] for f in frames] == [1, 3, 6, 10, 15]
    assert unique_in_order(messages) == [
        str(e.event_id) for e in OutboxEvent.objects.filter(member_ref=member.external_ref).order_by("position")
    ]
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    # a second run has nothing left to publish
    assert outbox_relay_run() == 0
    assert listener.drain(idle=0.2) == []


@pytest.mark.django_db(transaction=True)
def test_without_the_trigger_events_wait_for_the_sweep(tenant):
    member = MemberFactory(tenant=tenant)
    listener = GroupListener(tenant.pk, member.external_ref)
    for _ in range(3):
        credit(member)
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 3
    assert listener.drain(idle=0.2) == []

    assert outbox_relay_run() == 3

    assert len(listener.drain()) == 3


@pytest.mark.django_db(transaction=True)
def test_a_second_relay_does_nothing_while_one_holds_the_lock(tenant):
    member = MemberFactory(tenant=tenant)
    credit(member)
    other = connections.create_connection("default")
    try:
        with other.cursor() as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", [RELAY_LOCK])
            assert outbox_relay_run() == 0  # another relay is at work: it publishes them
            holder.execute("SELECT pg_advisory_unlock(%s)", [RELAY_LOCK])
    finally:
        other.close()
    assert outbox_relay_run() == 1


@pytest.mark.django_db(transaction=True)
def test_events_committed_while_a_relay_finishes_are_not_left_for_the_sweep(tenant, monkeypatch):
    # given a relay at work, during whose last batch another transaction commits an event,
    # and that transaction's own relay finds the lock held and gives up
    from rewards import relay

    member = MemberFactory(tenant=tenant)
    credit(member)
    original, late = relay._publish_batch, []

    def batch_then_a_late_commit():
        count = original()
        if not late:

            def commit_and_relay():
                credit(member, reason="late")
                late.append(outbox_relay_run())  # its own relay: the lock is held
                connections["default"].close()

            thread = threading.Thread(target=commit_and_relay)
            thread.start()
            thread.join(timeout=60)
        return count

    monkeypatch.setattr(relay, "_publish_batch", batch_then_a_late_commit)

    # when the first relay finishes
    published = outbox_relay_run()

    # then it published the late event too, nothing waits for the sweep
    assert late == [0]
    assert published == 2
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()


WRITER = """
import os, sys, django
sys.path.insert(0, os.environ["ROOT"])
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
django.setup()
import time
from rewards import relay, services
from rewards.models import Member
# widen the window between a commit and its publication (the relay's real code runs after it),
# so that a kill at a random moment lands in it most of the time
publish_batch = relay._publish_batch
def slow_publish_batch():
    time.sleep(0.1)
    return publish_batch()
relay._publish_batch = slow_publish_batch
member = Member.objects.select_related("tenant").get(pk=os.environ["MEMBER_ID"])
print("ready", flush=True)
while True:
    services.points_adjust(tenant=member.tenant, member=member, points=1, reason="kill", actor="writer")
"""


@pytest.mark.relay
@pytest.mark.django_db(transaction=True)
def test_a_process_killed_between_commit_and_publish_loses_nothing(tenant):
    # given a member whose events a writer process commits and publishes inline (no broker:
    # the relay runs right after each commit, 0.1 s later), killed with SIGKILL at random moments
    member = MemberFactory(tenant=tenant)
    listener = GroupListener(tenant.pk, member.external_ref)
    env = {
        **os.environ,
        "ROOT": str(ROOT),
        "MEMBER_ID": str(member.pk),
        "DATABASE_URL": _database_url(),
        "OUTBOX_RELAY_ON_COMMIT": "1",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("CELERY_BROKER_URL", None)
    rng = random.Random(8)
    unpublished_after_kills = 0
    for _ in range(8):
        writer = subprocess.Popen([sys.executable, "-c", WRITER], env=env, stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.3, 1.0))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        unpublished_after_kills += OutboxEvent.objects.filter(published_at__isnull=True).count()

    # when the sweep runs
    outbox_relay_run()

    # then every committed event was published, and the member's group got each of them
    committed = list(
        OutboxEvent.objects.filter(member_ref=member.external_ref)
        .order_by("position")
        .values_list("event_id", flat=True)
    )
    assert len(committed) >= 8
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    received = unique_in_order(listener.drain())
    assert received == [str(event_id) for event_id in committed]
    # the kills did land between commit and publish at least once (else this proved nothing)
    assert unpublished_after_kills > 0
    print(f"{len(committed)} events from 8 killed writers; {unpublished_after_kills} found unpublished after kills")


@pytest.mark.django_db
def test_points_expiring_is_announced_once_per_lot(tenant):
    member = MemberFactory(tenant=tenant)
    now = timezone.now()
    soon = credit(member, 40).transfer
    EarnedLot.objects.filter(transfer=soon).update(expires_at=now + timedelta(days=3))
    later = credit(member, 60).transfer
    EarnedLot.objects.filter(transfer=later).update(expires_at=now + timedelta(days=30))

    assert member_expiry_notice(member=member, now=now, within=timedelta(days=7)) == 40
    assert member_expiry_notice(member=member, now=now, within=timedelta(days=7)) == 0

    frames = member_notifications(member=member)
    expiring = [f for f in frames if f["type"] == "POINTS_EXPIRING"]
    assert len(expiring) == 1
    assert expiring[0]["points"] == 40
    assert expiring[0]["expiresAt"] == (now + timedelta(days=3)).isoformat()


@pytest.mark.django_db
def test_the_event_log_lists_what_was_emitted_in_order(tenant, api_client, other_client):
    member = MemberFactory(tenant=tenant)
    for n in range(1, 4):
        credit(member, n)
    services.points_adjust(tenant=tenant, member=member, points=-1, reason="fix", actor="test")

    listed = api_client.get("/api/v1/events/outbound").json()
    events = listed["results"]
    assert [e["type"] for e in events] == ["points.credited"] * 3 + ["points.debited"]
    assert [e["data"]["points"] for e in events] == [1, 2, 3, 1]
    assert all(e["tenantId"] == str(tenant.pk) for e in events)
    assert [e["position"] for e in events] == sorted(e["position"] for e in events)
    assert listed["lastEventId"] == events[-1]["eventId"]

    page = api_client.get("/api/v1/events/outbound", {"after": events[1]["eventId"], "limit": 1}).json()
    assert [e["eventId"] for e in page["results"]] == [events[2]["eventId"]]
    debits = api_client.get("/api/v1/events/outbound", {"type": "points.debited"}).json()["results"]
    assert [e["eventId"] for e in debits] == [events[3]["eventId"]]

    # another tenant sees none of it, and cannot page from one of its ids
    assert other_client.get("/api/v1/events/outbound").json()["results"] == []
    assert_error(other_client.get("/api/v1/events/outbound", {"after": events[0]["eventId"]}), 404, attr="after")
    assert_error(api_client.get("/api/v1/events/outbound", {"after": "nope"}), 400, attr="after")
    assert_error(api_client.get("/api/v1/events/outbound", {"limit": 0}), 400, attr="limit")


@pytest.mark.relay
@pytest.mark.django_db(transaction=True)
def test_an_event_written_outside_a_transaction_is_published_at_once(tenant):
    member = MemberFactory(tenant=tenant)
    listener = GroupListener(tenant.pk, member.external_ref)

    # autocommit: the row is committed as it is written, and published right after
    event = outbox_write(
        tenant=tenant,
        type="points.credited",
        member_ref=member.external_ref,
        data={"memberRef": member.external_ref, "points": 3, "reason": "test", "balanceAfter": 3},
    )

    event.refresh_from_db()
    assert event.published_at is not None
    assert [m["frame"]["eventId"] for m in listener.drain()] == [str(event.event_id)]
