"""The fulfilment workflow against the sandbox partner over real HTTP: success, refusal,
outage, lost answers, circuit breaking, crashed workers and operators, each ending
COMPLETED or REFUNDED with points and stock where they belong and at most one effective
order at the partner."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.test import APIClient

from catalog.models import Item
from redemptions import services, workflow
from redemptions.models import FulfilmentAttempt, Redemption
from redemptions.partners import circuit_health
from redemptions.states import S, transition
from redemptions.tasks import redemptions_reconcile
from rewards.models import OutboxEvent
from rewards.notifications import frame
from rewards.services import member_token_issue
from tests.redemptions.helpers import assert_books_balance, balance, member_with, partner_config, reward, stock

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _quick(settings):
    settings.REDEMPTION_MAX_ATTEMPTS = 3
    settings.REDEMPTION_RETRY_BASE_SECONDS = 0.01
    settings.REDEMPTION_LEASE_MARGIN_SECONDS = 1


@pytest.fixture
def config(tenant, partner_sandbox):
    return partner_config(tenant, partner_sandbox.url, max_attempts=1, threshold=50)


def requested(tenant, *, points=1000, cost=100, stock_quantity=5, kind=Item.Kind.GIFT_CARD, quantity=1):
    member = member_with(tenant, points)
    item = reward(tenant, point_cost=cost, stock=stock_quantity, kind=kind)
    redemption, _ = services.redemption_request(tenant=tenant, member=member, item_id=item.pk, quantity=quantity)
    return redemption, member, item


def history(redemption) -> list[str]:
    return list(redemption.transitions.order_by("at", "id").values_list("to_status", flat=True))


def events(member) -> list[str]:
    return list(
        OutboxEvent.objects.filter(member_ref=member.external_ref, type__startswith="redemption.")
        .order_by("position", "created_at")
        .values_list("type", flat=True)
    )


def placed(partner_sandbox, redemption) -> int:
    return partner_sandbox.orders().get(str(redemption.pk), {}).get("placed", 0)


def effective(partner_sandbox, redemption) -> int:
    order = partner_sandbox.orders().get(str(redemption.pk), {})
    return 0 if order.get("void") else order.get("placed", 0)


@pytest.mark.parametrize(
    ("kind", "reference_kind"),
    [
        (Item.Kind.GIFT_CARD, "giftCardCode"),
        (Item.Kind.MERCHANDISE, "shipmentReference"),
        (Item.Kind.TRAVEL, "bookingReference"),
        (Item.Kind.STATEMENT_CREDIT, "creditReference"),
        (Item.Kind.DIGITAL, "digitalCode"),
    ],
)
def test_a_fulfilled_redemption_completes_with_the_partners_reference(
    tenant, config, partner_sandbox, kind, reference_kind
):
    redemption, member, item = requested(tenant, kind=kind)

    step = workflow.fulfil(redemption.pk)

    redemption.refresh_from_db()
    assert step.outcome == "completed"
    assert redemption.status == "COMPLETED"
    assert redemption.partner_reference_kind == reference_kind
    assert redemption.partner_reference
    assert history(redemption) == ["PENDING", "FULFILLING", "COMPLETED"]
    assert events(member) == ["redemption.requested", "redemption.completed"]
    completed = OutboxEvent.objects.get(type="redemption.completed")
    assert completed.data["reference"] == redemption.partner_reference
    assert completed.data["status"] == "COMPLETED"
    assert placed(partner_sandbox, redemption) == 1
    assert (balance(member), stock(item)) == (900, 4)
    assert list(FulfilmentAttempt.objects.values_list("outcome", flat=True)) == ["ok"]


def test_running_the_step_again_changes_nothing(tenant, config, partner_sandbox):
    redemption, member, _ = requested(tenant)
    workflow.fulfil(redemption.pk)

    assert workflow.fulfil(redemption.pk).outcome == "final"

    assert placed(partner_sandbox, redemption) == 1
    assert events(member) == ["redemption.requested", "redemption.completed"]


def test_a_refusal_fails_and_refunds_at_once(tenant, config, partner_sandbox):
    partner_sandbox.set_mode("reject")
    redemption, member, item = requested(tenant)

    step = workflow.fulfil(redemption.pk)

    redemption.refresh_from_db()
    assert step.outcome == "refunded"
    assert redemption.status == "REFUNDED"
    assert redemption.failure_code == "partner_rejected"
    assert history(redemption) == ["PENDING", "FULFILLING", "FAILED", "REFUNDED"]
    assert events(member) == ["redemption.requested", "redemption.failed", "redemption.refunded"]
    assert (balance(member), stock(item)) == (1000, 5)
    assert placed(partner_sandbox, redemption) == 0
    assert_books_balance(tenant)


def test_a_partner_that_stays_down_is_retried_then_the_redemption_refunded(tenant, config, partner_sandbox):
    partner_sandbox.set_mode("fail")
    redemption, member, item = requested(tenant)

    steps = [workflow.fulfil(redemption.pk) for _ in range(3)]

    assert [s.outcome for s in steps] == ["retry", "retry", "refunded"]
    assert all(s.retry_in is not None and s.retry_in > 0 for s in steps[:2])
    redemption.refresh_from_db()
    assert redemption.status == "REFUNDED"
    assert redemption.failure_code == "partner_unavailable"
    assert redemption.attempts == 3
    assert not redemption.maybe_placed  # a 503 places nothing: no void needed
    assert (balance(member), stock(item)) == (1000, 5)
    assert placed(partner_sandbox, redemption) == 0
    assert_books_balance(tenant)


def test_a_lost_answer_is_retried_under_the_same_key_and_orders_once(tenant, config, partner_sandbox):
    # the partner places the order but its answer comes after the client's timeout
    partner_sandbox.set_mode("timeout", delay=2.5)
    redemption, member, _ = requested(tenant)

    first = workflow.fulfil(redemption.pk)
    redemption.refresh_from_db()
    assert first.outcome == "retry"
    assert redemption.status == "FULFILLING"
    assert redemption.maybe_placed

    partner_sandbox.set_mode("ok")
    assert workflow.fulfil(redemption.pk).outcome == "completed"

    redemption.refresh_from_db()
    assert redemption.status == "COMPLETED"
    assert placed(partner_sandbox, redemption) == 1
    assert balance(member) == 900


def test_a_redemption_whose_order_may_exist_is_voided_before_its_refund(tenant, config, partner_sandbox):
    partner_sandbox.set_mode("timeout", delay=2.5)
    redemption, member, item = requested(tenant)

    outcomes = [workflow.fulfil(redemption.pk).outcome for _ in range(3)]

    # the last attempt gave up; the void ran (the sandbox answers voids in this mode too)
    redemption.refresh_from_db()
    assert outcomes[:2] == ["retry", "retry"]
    assert redemption.status in ("FAILED", "REFUNDED")
    if redemption.status == "FAILED":
        # the void's answer was late as well: the refund waits for it
        assert outcomes[2] == "void_pending"
        partner_sandbox.set_mode("ok")
        assert workflow.fulfil(redemption.pk).outcome == "refunded"
        redemption.refresh_from_db()
    assert redemption.status == "REFUNDED"
    assert partner_sandbox.orders()[str(redemption.pk)]["void"] is True
    assert effective(partner_sandbox, redemption) == 0
    assert (balance(member), stock(item)) == (1000, 5)
    assert FulfilmentAttempt.objects.filter(redemption=redemption, operation="void").exists()
    assert_books_balance(tenant)


def test_the_refund_waits_while_the_void_cannot_reach_the_partner(tenant, config, partner_sandbox):
    redemption, member, _ = requested(tenant)
    Redemption.objects.filter(pk=redemption.pk).update(maybe_placed=True)
    partner_sandbox.set_mode("fail")
    redemption.refresh_from_db()
    assert transition(redemption, S.FULFILLING, actor="test")
    workflow.fail(redemption, code="partner_unavailable", reason="down")

    step = workflow.fulfil(redemption.pk)

    redemption.refresh_from_db()
    assert step.outcome == "void_pending"
    assert redemption.status == "FAILED"
    assert balance(member) == 900  # not refunded while an order may stand
    partner_sandbox.set_mode("ok")
    assert workflow.fulfil(redemption.pk).outcome == "refunded"
    assert balance(member) == 1000


def test_the_circuit_opens_and_spares_the_partner(tenant, partner_sandbox):
    config = partner_config(tenant, partner_sandbox.url, max_attempts=1, threshold=2, reset=60)
    partner_sandbox.set_mode("fail")
    redemptions = [requested(tenant)[0] for _ in range(5)]

    for redemption in redemptions:
        workflow.fulfil(redemption.pk)

    outcomes = list(FulfilmentAttempt.objects.order_by("at", "id").values_list("outcome", flat=True))
    assert outcomes[:2] == ["unavailable", "unavailable"]
    assert set(outcomes[2:]) == {"circuit_open"}
    assert sum(order["requests"] for order in partner_sandbox.orders().values()) == 2
    assert circuit_health(workflow.partner_settings(config))["state"] == "open"


def test_a_redemption_held_by_a_live_worker_is_left_alone(tenant, config, partner_sandbox):
    redemption, _, _ = requested(tenant)
    assert transition(
        redemption, S.FULFILLING, actor="w1", attempts=1, lease_expires_at=timezone.now() + timedelta(minutes=5)
    )

    assert workflow.fulfil(redemption.pk).outcome == "busy"

    assert placed(partner_sandbox, redemption) == 0
    assert Redemption.objects.get(pk=redemption.pk).attempts == 1


def test_a_worker_that_died_mid_call_is_taken_over_after_its_lease(tenant, config, partner_sandbox):
    # given a worker that claimed the redemption, placed the order, and died before recording it
    redemption, _, _ = requested(tenant)
    assert transition(
        redemption, S.FULFILLING, actor="w1", attempts=1, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    adapter_first = workflow.partner_adapter(workflow.partner_settings(config), redemption.item_kind)
    first = adapter_first.fulfil(workflow.fulfilment_request(redemption))

    # when another worker runs the step
    step = workflow.fulfil(redemption.pk)

    # then it takes over, gets the same order back, and the partner holds one order
    redemption.refresh_from_db()
    assert step.outcome == "completed"
    assert redemption.partner_order_id == first.partner_order_id
    assert redemption.maybe_placed  # the dead worker's call may have reached the partner
    assert placed(partner_sandbox, redemption) == 1
    assert "resumed" in list(redemption.transitions.values_list("reason", flat=True))


def test_an_operator_cancel_during_fulfilment_voids_and_refunds(tenant, config, partner_sandbox):
    redemption, member, item = requested(tenant)
    assert transition(
        redemption, S.FULFILLING, actor="w1", attempts=1, lease_expires_at=timezone.now() + timedelta(minutes=5)
    )

    services.redemption_operator_cancel(redemption=redemption, actor="operator:ops", reason="customer called")

    redemption.refresh_from_db()
    assert redemption.status == "REFUNDED"
    assert redemption.failure_code == "cancelled_by_operator"
    assert partner_sandbox.orders()[str(redemption.pk)]["void"] is True
    assert (balance(member), stock(item)) == (1000, 5)
    # the worker's late success can no longer complete it
    result = workflow.FulfilmentResult(
        partner_order_id="late", reference="X", reference_kind="giftCardCode", details={}
    )
    assert workflow.complete(redemption, result).outcome == "final"
    assert Redemption.objects.get(pk=redemption.pk).status == "REFUNDED"


def test_an_operator_cannot_cancel_a_completed_redemption(tenant, config, partner_sandbox):
    redemption, member, _ = requested(tenant)
    workflow.fulfil(redemption.pk)

    with pytest.raises(services.NotCancellable):
        services.redemption_operator_cancel(redemption=redemption, actor="operator:ops", reason="")

    assert Redemption.objects.get(pk=redemption.pk).status == "COMPLETED"
    assert balance(member) == 900


def test_reconciliation_picks_up_what_sat_still(tenant, config, settings):
    settings.REDEMPTION_STUCK_AFTER = timedelta(minutes=2)
    old = timezone.now() - timedelta(minutes=10)
    pending_old, _, _ = requested(tenant)
    requested(tenant)  # pending, but only just
    held, _, _ = requested(tenant)
    abandoned, _, _ = requested(tenant)
    for redemption, lease in ((held, timedelta(minutes=5)), (abandoned, -timedelta(seconds=1))):
        transition(redemption, S.FULFILLING, actor="w", attempts=1, lease_expires_at=timezone.now() + lease)
    Redemption.objects.filter(pk=pending_old.pk).update(updated_at=old)

    stuck = set(workflow.stuck().values_list("pk", flat=True))

    assert stuck == {pending_old.pk, abandoned.pk}


@pytest.mark.fulfil
@pytest.mark.django_db(transaction=True)
def test_a_committed_request_is_fulfilled_by_the_queued_task(tenant, partner_sandbox):
    # no broker in tests: Celery runs the queued task in the committing thread after commit
    partner_config(tenant, partner_sandbox.url)
    member = member_with(tenant, 500)
    item = reward(tenant, point_cost=100, stock=2)
    token, _ = member_token_issue(member=member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = client.post("/api/v1/redemptions", {"itemId": str(item.pk)}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert response.status_code == 201
    rid = response.json()["redemptionId"]
    detail = client.get(f"/api/v1/redemptions/{rid}").json()
    assert detail["status"] == "COMPLETED"
    assert detail["referenceKind"] == "giftCardCode"
    assert detail["reference"]
    assert [h["toStatus"] for h in detail["history"]] == ["PENDING", "FULFILLING", "COMPLETED"]
    assert redemptions_reconcile() == 0


def test_a_partner_url_on_the_platforms_own_network_is_never_called(tenant, config, partner_sandbox, settings):
    settings.REDEMPTION_PARTNER_ALLOW_PRIVATE_TARGETS = False
    redemption, member, item = requested(tenant)

    step = workflow.fulfil(redemption.pk)

    redemption.refresh_from_db()
    assert step.outcome == "refunded"
    assert redemption.failure_code == "partner_target_refused"
    assert partner_sandbox.orders() == {}
    assert (balance(member), stock(item)) == (1000, 5)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8026", False),
        ("http://10.1.2.3/partner", False),
        ("http://169.254.169.254/latest", False),
        ("http://[::ffff:192.168.0.1]/", False),
        ("ftp://93.184.216.34/", False),
        ("https://93.184.216.34/v1", True),
    ],
)
def test_a_partner_url_is_checked_when_saved(tenant, config, settings, url, allowed):
    settings.REDEMPTION_PARTNER_ALLOW_PRIVATE_TARGETS = False
    config.base_url = url
    if allowed:
        config.full_clean()
    else:
        with pytest.raises(ValidationError) as refused:
            config.full_clean()
        assert "base_url" in refused.value.message_dict


def test_the_member_is_told_each_status_with_the_code_once_completed(tenant, config):
    redemption, member, _ = requested(tenant)
    workflow.fulfil(redemption.pk)
    redemption.refresh_from_db()

    frames = [
        frame(event)
        for event in OutboxEvent.objects.filter(
            member_ref=member.external_ref, type__startswith="redemption."
        ).order_by("position", "created_at")
    ]

    assert [(f["type"], f["status"]) for f in frames] == [
        ("REDEMPTION_STATUS", "PENDING"),
        ("REDEMPTION_STATUS", "COMPLETED"),
    ]
    completed = frames[-1]
    assert completed["redemptionId"] == str(redemption.pk)
    assert completed["reference"] == redemption.partner_reference
    assert completed["referenceKind"] == "giftCardCode"
    assert "memberRef" not in completed
