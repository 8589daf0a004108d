from decimal import Decimal

import pytest

from rewards.models import InboundEvent, OutboxEvent, Transfer
from rewards.selectors import ledger_verify

pytestmark = pytest.mark.django_db


def purchase(event_id="e-1", member_ref="m-1", amount="12.50", **extra):
    return {
        "type": "transaction.created",
        "eventId": event_id,
        "memberRef": member_ref,
        "amount": amount,
        "currency": "USD",
        "occurredAt": "2026-11-20T10:00:00Z",
        **extra,
    }


def test_a_purchase_earns_points_with_an_explanation(api_client, tenant):
    response = api_client.post("/api/v1/events", purchase(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["points"] == 12  # 12.50 x earn rate 1, rounded down
    assert body["explanation"]["lines"][0]["categoryFactor"] == "1"
    assert body["explanation"]["awardedPoints"] == 12
    assert api_client.get("/api/v1/members/m-1").json()["balance"] == 12
    assert OutboxEvent.objects.filter(tenant=tenant, type="points.credited").count() == 1
    assert ledger_verify(tenant=tenant).ok


def test_a_repeat_replays_and_a_different_body_is_a_409(api_client, tenant):
    first = api_client.post("/api/v1/events", purchase(), format="json")
    again = api_client.post("/api/v1/events", purchase(), format="json")
    other = api_client.post("/api/v1/events", purchase(amount="99.00"), format="json")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert other.status_code == 409 and other.json()["errors"][0]["attr"] == "eventId"
    assert Transfer.objects.filter(tenant=tenant, kind="EARN").count() == 1


def test_refunds_reverse_proportionally_and_never_more(api_client, tenant):
    api_client.post("/api/v1/events", purchase(amount="100.00"), format="json")
    refund = {"type": "transaction.refunded", "originalEventId": "e-1"}
    r1 = api_client.post("/api/v1/events", {**refund, "eventId": "r-1", "amount": "33.33"}, format="json")
    r2 = api_client.post("/api/v1/events", {**refund, "eventId": "r-2"}, format="json")  # the rest
    r3 = api_client.post("/api/v1/events", {**refund, "eventId": "r-3"}, format="json")
    assert r1.status_code == 201, r1.json()
    assert r1.json()["points"] == -33
    assert r2.json()["points"] == -67
    assert r3.status_code == 422 and r3.json()["errors"][0]["code"] == "refund_exceeds_original"
    assert api_client.get("/api/v1/members/m-1").json()["balance"] == 0
    assert InboundEvent.objects.get(event_id="r-3").status == "REJECTED"
    assert ledger_verify(tenant=tenant).ok


def test_a_dry_run_writes_nothing(api_client, tenant):
    response = api_client.post("/api/v1/events?dryRun=true", purchase(), format="json")
    assert response.status_code == 200
    assert response.json()["points"] == 12 and response.json()["dryRun"] is True
    assert not InboundEvent.objects.exists() and not Transfer.objects.exists()


def test_daily_limit_caps_the_award_and_says_so(api_client, tenant):
    api_client.post(
        f"/api/v1/tenants/{tenant.pk}/user-limits",
        {"memberRef": "m-1", "maxPerDay": 20},
        format="json",
    )
    first = api_client.post("/api/v1/events", purchase("e-1", amount="15.00"), format="json").json()
    second = api_client.post("/api/v1/events", purchase("e-2", amount="15.00"), format="json").json()
    assert first["points"] == 15
    assert second["points"] == 5
    assert second["explanation"]["capsHit"][0]["type"] == "limit"
    assert Decimal(api_client.get("/api/v1/members/m-1").json()["balance"]) == 20


def test_batch_applies_the_valid_and_reports_the_rest(api_client, tenant):
    events = [purchase("b-1"), {**purchase("b-2"), "amount": "-3"}, purchase("b-1"), purchase("b-3", currency="EUR")]
    response = api_client.post("/api/v1/events:batch", {"events": events}, format="json")
    assert response.status_code == 200, response.json()
    statuses = [r["status"] for r in response.json()["results"]]
    assert statuses == ["applied", "invalid", "duplicate", "rejected"]
    assert response.json()["results"][1]["errors"][0]["attr"] == "amount"


def test_validation_reuses_one_serializer_per_thread_and_carries_nothing_between_events():
    # given events validated one after another (the batch's serializer is reused) and each afresh
    from rest_framework import serializers
    from rest_framework.exceptions import ValidationError

    from rewards.api.events import EVENT_SERIALIZERS, event_validate

    def fresh(body):
        serializer = EVENT_SERIALIZERS[body["type"]](data=body)
        if not serializer.is_valid():
            return ("invalid", serializer.errors)
        return ("valid", {**serializer.validated_data, "type": body["type"]})

    def reused(body):
        try:
            return ("valid", event_validate(body))
        except ValidationError as exc:
            return ("invalid", exc.detail)

    def snake(event_id, member_ref, **extra):  # as the parser hands events over
        return {
            "type": "transaction.created",
            "event_id": event_id,
            "member_ref": member_ref,
            "amount": "12.50",
            "currency": "USD",
            **extra,
        }

    bodies = [
        snake("v-1", "m-1", line_items=[{"amount": "2.00", "sku": "a"}]),
        snake("v-2", "m-1", currency="usd"),
        snake("v-3", "m-2", line_items=[{"amount": "99.00"}]),
        snake("v-4", "m-3"),
    ]

    # then every outcome, error and value is the same, and nothing of an earlier event leaks
    outcomes = [reused(body) for body in bodies]
    assert outcomes == [fresh(body) for body in bodies]
    assert [kind for kind, _ in outcomes] == ["valid", "invalid", "invalid", "valid"]
    assert set(outcomes[1][1]) == {"currency"}
    assert set(outcomes[2][1]) == {"line_items"}
    assert "line_items" not in outcomes[3][1] and outcomes[3][1]["member_ref"] == "m-3"
    assert isinstance(outcomes[1][1]["currency"][0], serializers.ErrorDetail)
