"""The member WebSocket (`/ws`): who may connect, what each socket receives, and resume."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async

from rewards import consumers
from rewards.models import Member
from rewards.notifications import frame
from rewards.services import member_update
from tenants.models import Tenant
from tests.factories import MemberFactory
from tests.realtime.conftest import (
    closed_with,
    communicator,
    connected,
    forged_token,
    frames,
    group_send,
    points_events,
    run,
    token_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


# Authentication ---------------------------------------------------------------------------


def test_subprotocol_token_is_accepted_and_the_member_is_told_ready(member, settings):
    async def scenario():
        ws = communicator(token=token_for(member))
        assert await ws.connect() == (True, "bearer")
        ready = await ws.receive_json_from()
        assert ready["type"] == "ready"
        assert ready["memberRef"] == member.external_ref
        assert ready["expiresAt"].endswith("Z")
        await ws.send_json_to({"type": "ping"})
        assert await ws.receive_json_from() == {"type": "pong"}
        await ws.disconnect()

    run(scenario)


def test_auth_frame_authenticates_a_socket_opened_without_a_token(member):
    async def scenario():
        ws = communicator()
        assert await ws.connect() == (True, None)
        assert await ws.receive_nothing(0.2)
        await ws.send_json_to({"type": "auth", "token": token_for(member)})
        ready = await ws.receive_json_from()
        assert (ready["type"], ready["memberRef"]) == ("ready", member.external_ref)
        await ws.disconnect()

    run(scenario)


def test_no_auth_frame_within_the_timeout_closes_4401(member, settings):
    settings.WEBSOCKET_AUTH_TIMEOUT = timedelta(seconds=0.3)

    async def scenario():
        ws = communicator()
        assert await ws.connect() == (True, None)
        assert await closed_with(ws) == 4401
        await ws.disconnect()

    run(scenario)


def test_a_first_frame_other_than_auth_closes_4401(member):
    async def scenario():
        ws = communicator()
        await ws.connect()
        await ws.send_json_to({"type": "resume", "after": "x"})
        assert await closed_with(ws) == 4401
        await ws.disconnect()

    run(scenario)


def test_a_token_in_the_query_string_is_ignored(member, settings):
    settings.WEBSOCKET_AUTH_TIMEOUT = timedelta(seconds=0.5)
    token = token_for(member)

    async def scenario():
        ws = communicator(path=f"/ws?token={token}&access_token={token}")
        assert await ws.connect() == (True, None)
        assert await closed_with(ws) == 4401  # never ready: it still waited for an auth frame
        await ws.disconnect()

    run(scenario)


def _refused_token(kind: str, member, other_tenant_member) -> str:
    if kind == "expired":
        return forged_token(member, iat=1_000_000_000, exp=1_000_000_060)
    if kind == "alg none":
        return forged_token(member, algorithm="none")
    if kind == "wrong audience":
        return forged_token(member, aud="someone-else")
    if kind == "wrong issuer":
        return forged_token(member, iss="someone-else")
    if kind == "wrong key":
        return forged_token(member, key="not-the-signing-key-but-long-enough-for-hs256")
    if kind == "another tenant's id":
        return forged_token(member, tid=str(other_tenant_member.tenant_id))
    if kind == "garbage":
        return "not-a-jwt"
    if kind == "closed member":
        token = token_for(member)
        member_update(member=member, status=Member.Status.CLOSED)
        return token
    if kind == "suspended tenant":
        token = token_for(member)
        Tenant.objects.filter(pk=member.tenant_id).update(status=Tenant.Status.SUSPENDED)
        return token
    raise AssertionError(kind)


REFUSED = [
    "expired",
    "alg none",
    "wrong audience",
    "wrong issuer",
    "wrong key",
    "another tenant's id",
    "garbage",
    "closed member",
    "suspended tenant",
]


@pytest.mark.parametrize("kind", REFUSED)
def test_a_refused_token_closes_4401_by_subprotocol(kind, member, other_tenant):
    token = _refused_token(kind, member, MemberFactory(tenant=other_tenant))

    async def scenario():
        ws = communicator(token=token)
        assert await ws.connect() == (True, "bearer")
        assert await closed_with(ws) == 4401
        await ws.disconnect()

    run(scenario)


@pytest.mark.parametrize("kind", ["expired", "alg none", "wrong audience", "another tenant's id", "closed member"])
def test_a_refused_token_closes_4401_in_an_auth_frame(kind, member, other_tenant):
    token = _refused_token(kind, member, MemberFactory(tenant=other_tenant))

    async def scenario():
        ws = communicator()
        await ws.connect()
        await ws.send_json_to({"type": "auth", "token": token})
        assert await closed_with(ws) == 4401
        await ws.disconnect()

    run(scenario)


def test_the_socket_closes_4401_when_the_token_expires(member, settings):
    settings.MEMBER_TOKEN_TTL = timedelta(seconds=2)

    async def scenario():
        ws = await connected(member)
        await ws.send_json_to({"type": "ping"})
        assert await ws.receive_json_from() == {"type": "pong"}
        assert await closed_with(ws, timeout=4) == 4401
        await ws.disconnect()

    run(scenario)


# Origin -----------------------------------------------------------------------------------


def test_a_browser_origin_not_allowed_is_refused(member, settings):
    settings.WEBSOCKET_ALLOWED_ORIGINS = ["https://app.example.com", "localhost"]
    token = token_for(member)

    async def scenario():
        for origin in (
            "https://evil.example.net",
            "https://app.example.com.evil.net",
            "http://app.example.com",
            "null",
        ):
            ws = communicator(token=token, origin=origin)
            accepted, _ = await ws.connect()
            assert not accepted, origin
            await ws.disconnect()
        for origin in ("https://app.example.com", "http://localhost:3000", None):  # None: a native app
            ws = await connected(token, origin=origin)
            await ws.disconnect()

    run(scenario)


def test_allowed_origins_default_to_allowed_hosts(settings):
    from config.settings import ALLOWED_HOSTS, WEBSOCKET_ALLOWED_ORIGINS

    assert WEBSOCKET_ALLOWED_ORIGINS == ALLOWED_HOSTS


# Who receives what ------------------------------------------------------------------------


def test_a_frame_for_one_member_reaches_only_that_member(tenant, other_tenant):
    alice = MemberFactory(tenant=tenant, external_ref="alice")
    bob = MemberFactory(tenant=tenant, external_ref="bob")
    other_alice = MemberFactory(tenant=other_tenant, external_ref="alice")  # the same memberRef elsewhere
    (event,) = points_events(alice, 1)

    async def scenario():
        sockets = {name: await connected(m) for name, m in [("alice", alice), ("bob", bob), ("other", other_alice)]}
        await group_send(alice, event)
        assert await sockets["alice"].receive_json_from() == frame(event)
        assert await sockets["bob"].receive_nothing(0.5)
        assert await sockets["other"].receive_nothing(0.1)
        for ws in sockets.values():
            await ws.disconnect()

    run(scenario)


def test_a_frame_delivered_twice_is_sent_once(member):
    events = points_events(member, 3)

    async def scenario():
        ws = await connected(member)
        for event in [events[0], events[0], events[1], events[0], events[2], events[1], events[2]]:
            await group_send(member, event)
        assert [f["eventId"] for f in await frames(ws)] == [str(e.event_id) for e in events]
        await ws.disconnect()

    run(scenario)


def test_every_socket_of_a_member_receives_the_frame(member):
    (event,) = points_events(member, 1)

    async def scenario():
        phone, tablet = await connected(member), await connected(member)
        await group_send(member, event)
        assert (await phone.receive_json_from())["eventId"] == str(event.event_id)
        assert (await tablet.receive_json_from())["eventId"] == str(event.event_id)
        await phone.disconnect()
        await tablet.disconnect()

    run(scenario)


# Client frames ----------------------------------------------------------------------------


def test_unknown_and_malformed_frames_get_an_error_frame_and_the_socket_stays(member):
    async def scenario():
        ws = await connected(member)
        await ws.send_json_to({"type": "subscribe"})
        assert (await ws.receive_json_from())["code"] == "unknown_frame"
        await ws.send_to(text_data="not json")
        assert (await ws.receive_json_from())["code"] == "invalid_frame"
        await ws.send_json_to({"type": "resume"})
        assert (await ws.receive_json_from())["code"] == "invalid_frame"
        await ws.send_json_to({"type": "auth", "token": "again"})
        assert (await ws.receive_json_from())["code"] == "already_authenticated"
        await ws.send_json_to({"type": "ping"})
        assert await ws.receive_json_from() == {"type": "pong"}
        await ws.disconnect()

    run(scenario)


def test_resume_after_an_unknown_or_someone_elses_event_is_an_error_frame(member, tenant):
    (someone_elses,) = points_events(MemberFactory(tenant=tenant), 1)

    async def scenario():
        ws = await connected(member)
        for after in ("3f2c1b0a-9e8d-4c7b-a6f5-e4d3c2b1a090", "not-a-uuid", str(someone_elses.event_id)):
            await ws.send_json_to({"type": "resume", "after": after})
            error = await ws.receive_json_from()
            assert (error["type"], error["code"], error["field"]) == ("error", "notification_not_found", "after")
        await ws.send_json_to({"type": "ping"})
        assert await ws.receive_json_from() == {"type": "pong"}
        await ws.disconnect()

    run(scenario)


# Resume -----------------------------------------------------------------------------------


def test_a_member_offline_for_100_events_resumes_with_exactly_those_100(member):
    # given a member who saw the first event, then was offline for 100 more
    seen, *missed = points_events(member, 101)

    async def scenario():
        # when it reconnects and resumes after the last event it saw
        ws = await connected(member)
        await ws.send_json_to({"type": "resume", "after": str(seen.event_id)})
        received = await frames(ws, expect=len(missed))
        # then it gets exactly those 100, in order, as the relay would have sent them
        assert received == [frame(event) for event in missed]
        await ws.send_json_to({"type": "resume", "after": str(missed[-1].event_id)})
        assert await frames(ws, idle=0.3) == []
        await ws.disconnect()

    run(scenario)


def test_a_resume_longer_than_one_page_is_replayed_whole(member, monkeypatch):
    monkeypatch.setattr(consumers, "REPLAY_PAGE_SIZE", 7)
    seen, *missed = points_events(member, 31)

    async def scenario():
        ws = await connected(member)
        await ws.send_json_to({"type": "resume", "after": str(seen.event_id)})
        assert [f["eventId"] for f in await frames(ws, expect=len(missed))] == [str(e.event_id) for e in missed]
        await ws.disconnect()

    run(scenario)


def test_live_frames_arriving_during_a_resume_are_neither_lost_nor_duplicated(member, monkeypatch):
    # given 120 events, of which the member saw the first 20
    events = points_events(member, 120)
    read_page = consumers.MemberNotificationConsumer.replay_page
    replay_read, release = asyncio.Event(), asyncio.Event()

    async def held_page(self, after):
        # The replay has read the database; it waits here until the test has sent live frames.
        page = await read_page(self, after)
        replay_read.set()
        await release.wait()
        return page

    monkeypatch.setattr(consumers.MemberNotificationConsumer, "replay_page", held_page)

    async def scenario():
        ws = await connected(member)
        # when it resumes after event 19 ...
        await ws.send_json_to({"type": "resume", "after": str(events[19].event_id)})
        await replay_read.wait()
        # ... and, while the replay is on its way, the relay publishes new events 120-124 and
        # (at least once) again some the replay also holds
        newer = await database_sync_to_async(points_events)(member, 5)
        for event in [*events[110:], *newer, newer[2], events[115]]:
            await group_send(member, event)
        assert await ws.receive_nothing(0.3)  # read by the consumer and held back meanwhile
        release.set()
        # then every event after 19 arrives exactly once, in order
        received = [f["eventId"] for f in await frames(ws)]
        assert received == [str(e.event_id) for e in [*events[20:], *newer]]
        await ws.disconnect()

    run(scenario)


def test_a_live_frame_sent_before_resume_is_not_sent_again_by_the_replay(member):
    events = points_events(member, 10)

    async def scenario():
        ws = await connected(member)
        await group_send(member, events[5])
        assert (await ws.receive_json_from())["eventId"] == str(events[5].event_id)
        await ws.send_json_to({"type": "resume", "after": str(events[0].event_id)})
        replayed = [f["eventId"] for f in await frames(ws)]
        assert replayed == [str(e.event_id) for e in events[1:] if e is not events[5]]
        # and nothing at or below the last replayed position comes through live again
        await group_send(member, events[9])
        assert await ws.receive_nothing(0.3)
        await ws.disconnect()

    run(scenario)
