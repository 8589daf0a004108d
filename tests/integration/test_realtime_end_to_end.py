"""End to end, as in production: the API commits a qualifying event in this process, a real
Celery worker (Redis broker) runs the outbox relay, a real daphne server pushes the frame to
the member's WebSocket, and a local webhook receiver gets the signed delivery."""

import asyncio
import json
import time

import pytest
from django.db import connection
from jsonschema import Draft202012Validator
from websockets.asyncio.client import connect

from rewards.services import member_token_issue
from tenants.webhooks import webhook_endpoint_create
from tests.campaigns.helpers import action_rule, campaign_make
from tests.campaigns.test_incentives import INCENTIVE_NOTIFICATION
from tests.factories import MemberFactory
from tests.tenants.webhook_receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.relay, pytest.mark.django_db(transaction=True)]

# The seed's frame, and the outbound event's id beside it.
FRAME_SCHEMA = {
    **INCENTIVE_NOTIFICATION,
    "properties": {**INCENTIVE_NOTIFICATION["properties"], "eventId": {"type": "string", "minLength": 36}},
    "required": [*INCENTIVE_NOTIFICATION["required"], "eventId"],
}


@pytest.fixture
def private_targets(monkeypatch, settings):
    """The receiver listens on 127.0.0.1: allowed here and in the worker (development setting)."""
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE_TARGETS", "1")
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture
def receiver():
    started = Receiver().start()
    yield started
    started.stop()


def test_a_qualifying_event_reaches_the_members_socket_and_the_webhook_signed(
    private_targets,
    celery_worker_process,
    daphne_url,
    receiver,
    tenant,
    api_client,
    settings,
):
    # given a live campaign, a member with an open socket, and a webhook endpoint
    settings.OUTBOX_RELAY_ON_COMMIT = True  # as in production: the commit queues the relay
    campaign = campaign_make(tenant, rule=action_rule("app.login", points=25))
    member = MemberFactory(tenant=tenant, external_ref="alice")
    endpoint = webhook_endpoint_create(tenant=tenant, url=receiver.url, event_types=["incentive.generated"])
    receiver.secret = endpoint.secret
    token, _ = member_token_issue(member=member)

    def post_login():
        try:
            body = {"type": "action", "eventId": "login-1", "memberRef": "alice", "actionCode": "app.login"}
            return api_client.post("/api/v1/events", body, format="json")
        finally:
            connection.close()  # this thread's own connection

    async def scenario():
        async with connect(daphne_url, subprotocols=["bearer", token]) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"

            # when the tenant's backend posts a qualifying event
            posted = time.monotonic()
            response = await asyncio.to_thread(post_login)
            assert response.status_code == 201, response.content

            # then the member's socket gets INCENTIVE_NOTIFICATION (how fast: `make bench
            # BENCH=realtime`; here only that it comes)
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, posted + 15 - time.monotonic())))
                if frame["type"] == "INCENTIVE_NOTIFICATION":
                    return frame, time.monotonic() - posted

    frame, took = asyncio.run(scenario())
    print(f"INCENTIVE_NOTIFICATION on the socket {took * 1000:.0f} ms after the POST was sent")
    assert not list(Draft202012Validator(FRAME_SCHEMA).iter_errors(frame))
    assert frame["campaignId"] == str(campaign.pk)
    assert frame["reward"] == {"currency": "POINTS", "amount": 25}

    # and the webhook receiver gets the same event, signed, and verifies the signature
    deadline = time.monotonic() + 15
    while not receiver.accepted and time.monotonic() < deadline:
        time.sleep(0.1)
    (delivery,) = receiver.accepted
    assert delivery.verified
    assert delivery.event_id == frame["eventId"]
    assert delivery.envelope["type"] == "incentive.generated"
    assert delivery.envelope["data"]["incentiveId"] == frame["incentiveId"]
