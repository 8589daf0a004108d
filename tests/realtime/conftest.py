"""The member WebSocket in-process: the ASGI application driven by WebsocketCommunicator on the
in-memory channel layer, with group messages sent by the test as the outbox relay would."""

import asyncio
import time

import jwt
import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings

from config.asgi import application
from rewards.models import OutboxEvent
from rewards.notifications import GROUP_MESSAGE_TYPE, frame, member_group
from rewards.outbox import outbox_write
from rewards.services import member_token_issue
from tests.factories import member_claims


@pytest.fixture(autouse=True)
def _in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # The tests send group messages themselves; the relay stays out of the way.
    settings.OUTBOX_RELAY_ON_COMMIT = False


def token_for(member) -> str:
    return member_token_issue(member=member)[0]


def forged_token(member, *, algorithm: str = "HS256", key: str | None = None, **overrides) -> str:
    """A member token signed (or not, with algorithm "none") as the caller says."""
    claims = member_claims(member, **{"exp": int(time.time()) + 600, "jti": "forged", **overrides})
    return jwt.encode(claims, None if algorithm == "none" else (key or settings.MEMBER_TOKEN_SIGNING_KEY), algorithm)


def communicator(*, token: str | None = None, path: str = "/ws", origin: str | None = None) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode())] if origin else []
    return WebsocketCommunicator(
        application, path, headers=headers, subprotocols=["bearer", token] if token is not None else None
    )


async def connected(member_or_token, **kwargs) -> WebsocketCommunicator:
    """A socket authenticated by subprotocol, its `ready` frame read."""
    token = member_or_token if isinstance(member_or_token, str) else token_for(member_or_token)
    ws = communicator(token=token, **kwargs)
    accepted, subprotocol = await ws.connect()
    assert (accepted, subprotocol) == (True, "bearer")
    ready = await ws.receive_json_from()
    assert ready["type"] == "ready", ready
    return ws


async def closed_with(ws: WebsocketCommunicator, *, timeout: float = 2) -> int:
    """The code the server closed the socket with (fails if it sends a frame instead)."""
    message = await ws.receive_output(timeout)
    assert message["type"] == "websocket.close", message
    return message["code"]


async def frames(ws: WebsocketCommunicator, *, idle: float = 0.5, expect: int = 0) -> list[dict]:
    """Every frame sent until the socket has been quiet for `idle` seconds, after waiting up to
    30 s for each of the first `expect` (a busy machine may take longer than `idle` to start)."""
    received = [await ws.receive_json_from(timeout=30) for _ in range(expect)]
    while not await ws.receive_nothing(idle):
        received.append(await ws.receive_json_from())
    return received


async def group_send(member, event: OutboxEvent) -> None:
    """What the outbox relay does for `event`."""
    await get_channel_layer().group_send(
        member_group(member.tenant_id, member.external_ref),
        {"type": GROUP_MESSAGE_TYPE, "frame": frame(event), "position": event.position},
    )


def points_events(member, count: int) -> list[OutboxEvent]:
    """`count` points.credited events for the member, as outbox rows with their positions."""
    written = [
        outbox_write(
            tenant=member.tenant,
            type="points.credited",
            member_ref=member.external_ref,
            data={"memberRef": member.external_ref, "points": 1, "reason": f"event {i}", "balanceAfter": i + 1},
        ).pk
        for i in range(count)
    ]
    return list(OutboxEvent.objects.filter(pk__in=written).order_by("position"))


def run(coroutine_function, *args, timeout: float = 60):
    """Run a test scenario on a fresh event loop (sync_to_async calls come back to this thread)."""
    from asgiref.sync import async_to_sync

    async def bounded():
        return await asyncio.wait_for(coroutine_function(*args), timeout)

    return async_to_sync(bounded)()
