"""A webhook receiver that flaps: up, answering 503, refusing connections, answering too late,
changing at random between drains for hours. Every event still arrives, in position order,
once after de-duplication by its id, and nothing is dead-lettered inside the retry budget.
The clock is passed in (`now=`), so hours of backoff take no time."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from tenants.models import WebhookDelivery
from tenants.webhooks import webhook_endpoint_drain
from tests.tenants.test_webhooks import endpoint, enqueue, receiver, webhook_settings  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

STATES = ("ok", 503, 500, "down", "hang")


@pytest.mark.parametrize("seed", [3, 11, 2027])
def test_a_flapping_receiver_gets_every_event_in_order_once(tenant, endpoint, receiver, seed):  # noqa: F811
    chaos = random.Random(seed)
    events = enqueue(tenant, *chaos.sample(range(1, 1000), 25))
    in_order = [e["eventId"] for e in sorted(events, key=lambda e: e["position"])]
    receiver.hang_seconds = 0.8  # past the 0.5 s timeout: processed, but answered too late
    now, states_seen, up = timezone.now(), set(), True

    # every failure first, in a random order, then at random, "ok" one time in five
    failures_first = chaos.sample(STATES[1:], len(STATES) - 1)
    for round_ in range(400):
        state = failures_first[round_] if round_ < len(failures_first) else chaos.choice((*STATES[1:], "ok"))
        states_seen.add(state)
        if state == "down" and up:
            receiver.stop()
            up = False
        elif state != "down":
            if not up:
                receiver.start()
                up = True
            receiver.mode = state
        webhook_endpoint_drain(endpoint_id=endpoint.pk, now=now)
        if not WebhookDelivery.objects.exclude(status=WebhookDelivery.Status.DELIVERED).exists():
            break
        now += timedelta(seconds=chaos.choice([5, 30, 300, 1800]))

    if not up:
        receiver.start()
    statuses = set(WebhookDelivery.objects.values_list("status", flat=True))
    assert statuses == {WebhookDelivery.Status.DELIVERED}, statuses
    assert states_seen == set(STATES)
    assert now - timezone.now() < timedelta(hours=25)  # inside the retry budget
    # each event arrived, verified, in position order, once after de-duplication
    assert receiver.delivered_once() == in_order
    assert all(record.verified for record in receiver.accepted)
    # and the flapping really cost attempts: the delivery log has every failure
    failures = sum(d.attempts for d in WebhookDelivery.objects.all()) - len(events)
    assert failures > 0
