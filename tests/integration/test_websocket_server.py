"""The member WebSocket on a real ASGI server: daphne in its own process on the test database
and Redis, a `websockets` client, and frames sent into the channel layer from this process."""

import asyncio
import json

import pytest
from channels.layers import get_channel_layer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rewards.notifications import GROUP_MESSAGE_TYPE, frame, member_group
from rewards.services import member_token_issue
from tests.factories import MemberFactory
from tests.realtime.conftest import forged_token, points_events

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_real_server_delivers_a_members_frame_to_that_member_only(daphne_url, tenant):
    alice = MemberFactory(tenant=tenant, external_ref="alice")
    bob = MemberFactory(tenant=tenant, external_ref="bob")
    (event,) = points_events(alice, 1)
    tokens = {m.external_ref: member_token_issue(member=m)[0] for m in (alice, bob)}

    async def scenario():
        async with (
            connect(daphne_url, subprotocols=["bearer", tokens["alice"]]) as alice_ws,
            connect(daphne_url, subprotocols=["bearer", tokens["bob"]]) as bob_ws,
        ):
            assert alice_ws.subprotocol == "bearer"
            for ws, ref in ((alice_ws, "alice"), (bob_ws, "bob")):
                ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert (ready["type"], ready["memberRef"]) == ("ready", ref)
            # a frame sent into alice's group from this process, through Redis
            await get_channel_layer().group_send(
                member_group(alice.tenant_id, alice.external_ref),
                {"type": GROUP_MESSAGE_TYPE, "frame": frame(event), "position": event.position},
            )
            assert json.loads(await asyncio.wait_for(alice_ws.recv(), 10)) == frame(event)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(bob_ws.recv(), 1.5)

    asyncio.run(scenario())


def test_a_real_server_closes_4401_for_a_forged_token(daphne_url, member):
    async def scenario():
        async with connect(daphne_url, subprotocols=["bearer", forged_token(member, algorithm="none")]) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd.code == 4401

    asyncio.run(scenario())


def test_a_real_server_refuses_a_foreign_browser_origin(daphne_url, member):
    token = member_token_issue(member=member)[0]

    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            async with connect(daphne_url, subprotocols=["bearer", token], origin="https://evil.example.net"):
                pass
        assert refused.value.response.status_code == 403

    asyncio.run(scenario())


def test_a_quiet_socket_stays_open_past_the_channel_layers_blocking_read(daphne_url, member):
    """The server waits on Redis for frames in blocking reads of 5 s; the Redis client's own
    read timeout must be longer, or a socket with nothing to say dies (1011) after 5 s."""
    token = member_token_issue(member=member)[0]
    (event,) = points_events(member, 1)

    async def scenario():
        async with connect(daphne_url, subprotocols=["bearer", token]) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 12)  # quiet for longer than two blocking reads
            await get_channel_layer().group_send(
                member_group(member.tenant_id, member.external_ref),
                {"type": GROUP_MESSAGE_TYPE, "frame": frame(event), "position": event.position},
            )
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == frame(event)

    asyncio.run(scenario())
