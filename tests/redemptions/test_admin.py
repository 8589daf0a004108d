"""The redemptions back office: the operations queue (scoping, filters, the detail page's
history and partner calls, "Retry now" and "Cancel and refund" by role) and the partner
configurations (the kinds checkboxes, validation, the health columns, "Close circuit")."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from catalog import services as catalog
from catalog.models import Item, Partner
from redemptions import services
from redemptions.models import FulfilmentAttempt, PartnerConfig, Redemption
from redemptions.partners import (
    FulfilmentResult,
    PartnerUnavailable,
    circuit_call,
    circuit_health,
)
from redemptions.workflow import fulfil
from rewards.selectors import member_balance
from rewards.services import points_adjust
from tenants.models import Operator
from tests.factories import MemberFactory, OperatorFactory

pytestmark = pytest.mark.django_db

STUB = "tests.redemptions.test_admin"


class OkPartner:
    """A partner that fulfils every order and voids any."""

    def __init__(self, settings):
        self.settings = settings

    def fulfil(self, request):
        return FulfilmentResult(
            partner_order_id=f"order-{request.redemption_id[:8]}",
            reference="GC-1234-5678",
            reference_kind="giftCardCode",
            details={},
        )

    def void(self, *, redemption_id):
        return True

    def lookup(self, *, redemption_id):
        return None


class DownPartner(OkPartner):
    """A partner answering 503 to every order (a void still works)."""

    def fulfil(self, request):
        raise PartnerUnavailable("partner answered 503")


@pytest.fixture
def partner_ok(settings):
    settings.REDEMPTION_PARTNER_ADAPTERS = {"GIFT_CARD": f"{STUB}.OkPartner"}


@pytest.fixture
def partner_down(settings):
    settings.REDEMPTION_PARTNER_ADAPTERS = {"GIFT_CARD": f"{STUB}.DownPartner"}


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


def login_operator(client, tenant, role=Operator.Role.SUPPORT) -> Operator:
    operator = OperatorFactory(tenant=tenant, role=role)
    client.force_login(operator.user)
    return operator


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def partner_config(tenant, code="acme", name="Acme Gifts", **fields) -> PartnerConfig:
    partner = Partner.objects.create(tenant=tenant, code=code, name=name)
    fields.setdefault("enabled_kinds", [kind.value for kind in Item.Kind])
    return PartnerConfig.objects.create(
        tenant=tenant, partner=partner, base_url="https://api.partner.example/v1", **fields
    )


def gift_card(tenant, name="Coffee Card", sku="GC-10", point_cost=300, stock=5) -> Item:
    return catalog.item_create(
        tenant=tenant,
        name=name,
        sku=sku,
        kind=Item.Kind.GIFT_CARD,
        point_cost=point_cost,
        cash_value=Decimal("10.00"),
        stock_quantity=stock,
    )


def member_with(tenant, points=1000, **fields):
    member = MemberFactory(tenant=tenant, **fields)
    points_adjust(tenant=tenant, member=member, points=points, reason="setup", actor="test")
    return member


def redeem(member, item, quantity=1) -> Redemption:
    redemption, _ = services.redemption_request(
        tenant=member.tenant, member=member, item_id=item.pk, quantity=quantity, actor="test"
    )
    return redemption


def stock_of(item) -> int | None:
    return Item.objects.values_list("stock_quantity", flat=True).get(pk=item.pk)


def listed(response) -> set:
    assert response.status_code == 200, response.status_code
    return {r.pk for r in response.context["cl"].result_list}


def run_action(client, action, redemptions, **extra):
    data = {"action": action, "_selected_action": [str(r.pk) for r in redemptions], **extra}
    return client.post(url("redemptions_redemption_changelist"), data)


def cancel_by_action(client, redemptions, reason="member asked"):
    """The changelist action as a browser runs it: choose it, then confirm with a reason."""
    confirm = run_action(client, "cancel_and_refund", redemptions, index=0)
    assert confirm.status_code == 200, confirm.status_code
    assert "redemption_cancel_form" in confirm.content.decode()
    return run_action(client, "cancel_and_refund", redemptions, post="yes", reason=reason)


@pytest.fixture
def shop(tenant):
    """A partner, a gift card with 5 in stock (300 points) and a member with 1,000 points."""
    partner_config(tenant)
    return gift_card(tenant), member_with(tenant, 1000)


# The queue -------------------------------------------------------------------------------


def test_the_queue_lists_only_the_operators_tenants_redemptions(client, tenant, other_tenant, shop):
    item, member = shop
    mine = redeem(member, item)
    partner_config(other_tenant, code="hidden", name="Hidden Partner")
    theirs = redeem(member_with(other_tenant, 1000, external_ref="their-member"), gift_card(other_tenant))
    login_operator(client, tenant, Operator.Role.VIEWER)

    queue = client.get(url("redemptions_redemption_changelist"))
    searched = client.get(url("redemptions_redemption_changelist"), {"q": str(theirs.pk)[:8]})
    by_filter = client.get(url("redemptions_redemption_changelist"), {"partner": str(theirs.partner_config_id)})

    assert listed(queue) == {mine.pk}
    page = queue.content.decode()
    assert "their-member" not in page and "Hidden Partner" not in page
    assert listed(searched) == set() and listed(by_filter) == set()
    assert client.get(url("redemptions_redemption_change", theirs.pk)).status_code == 404
    assert client.get(url("redemptions_redemption_cancel", theirs.pk)).status_code == 404
    assert client.get(url("redemptions_partnerconfig_change", theirs.partner_config_id)).status_code == 404


def test_status_age_and_partner_filters_and_search_narrow_the_list(client, tenant, shop):
    item, member = shop
    stuck = redeem(member, item)
    fresh = redeem(member, item)
    old_cancelled = redeem(member, item)
    services.redemption_cancel(redemption=old_cancelled, actor="test")
    Redemption.objects.filter(pk__in=[stuck.pk, old_cancelled.pk]).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    other_partner = partner_config(tenant, code="beta", name="Beta Travel", enabled_kinds=["TRAVEL"])
    login_operator(client, tenant, Operator.Role.VIEWER)
    changelist = url("redemptions_redemption_changelist")

    assert listed(client.get(changelist)) == {stuck.pk, fresh.pk, old_cancelled.pk}
    assert listed(client.get(changelist, {"status__exact": "PENDING"})) == {stuck.pk, fresh.pk}
    assert listed(client.get(changelist, {"status__exact": "CANCELLED"})) == {old_cancelled.pk}
    assert listed(client.get(changelist, {"open_for": "5m"})) == {stuck.pk}
    assert listed(client.get(changelist, {"open_for": "1h"})) == {stuck.pk}
    assert listed(client.get(changelist, {"open_for": "1d"})) == set()
    assert listed(client.get(changelist, {"partner": str(stuck.partner_config_id)})) == {
        stuck.pk,
        fresh.pk,
        old_cancelled.pk,
    }
    assert listed(client.get(changelist, {"partner": str(other_partner.pk)})) == set()
    assert listed(client.get(changelist, {"item_kind__exact": "TRAVEL"})) == set()
    assert listed(client.get(changelist, {"q": str(fresh.pk)[:8]})) == {fresh.pk}
    assert listed(client.get(changelist, {"q": member.external_ref})) == {stuck.pk, fresh.pk, old_cancelled.pk}
    assert listed(client.get(changelist, {"q": "coffee"})) == {stuck.pk, fresh.pk, old_cancelled.pk}
    assert listed(client.get(changelist, {"q": "nothing-like-it"})) == set()


def test_the_queue_costs_no_query_per_row(client, tenant, shop):
    item, member = shop
    redeem(member, item)
    login_operator(client, tenant, Operator.Role.VIEWER)
    changelist = url("redemptions_redemption_changelist")
    client.get(changelist)  # the session and the like, once

    with CaptureQueriesContext(connection) as one_row:
        client.get(changelist)
    for _ in range(2):
        redeem(member, item)
    with CaptureQueriesContext(connection) as three_rows:
        client.get(changelist)

    assert len(three_rows) == len(one_row)


def test_platform_staff_see_every_tenants_redemptions(client, tenant, other_tenant, shop, platform_admin):
    item, member = shop
    mine = redeem(member, item)
    partner_config(other_tenant, code="beta", name="Beta Travel")
    theirs = redeem(member_with(other_tenant, 1000), gift_card(other_tenant))
    client.force_login(platform_admin)

    queue = client.get(url("redemptions_redemption_changelist"))

    assert listed(queue) == {mine.pk, theirs.pk}
    assert f"Beta Travel ({other_tenant})" in queue.content.decode()


def test_the_detail_page_shows_the_calculation_history_and_partner_calls(client, tenant, shop, partner_ok):
    item, member = shop
    redemption = redeem(member, item, quantity=2)
    assert fulfil(redemption.pk).outcome == "completed"
    login_operator(client, tenant, Operator.Role.VIEWER)

    page = client.get(url("redemptions_redemption_change", redemption.pk))

    assert page.status_code == 200
    content = page.content.decode()
    assert "GC-1234-5678" in content and "Value calculation" in content
    history, calls = page.context["inline_admin_formsets"]
    assert [(f.original.from_status, f.original.to_status, f.original.reason) for f in history] == [
        ("", "PENDING", "requested"),
        ("PENDING", "FULFILLING", "fulfilment started"),
        ("FULFILLING", "COMPLETED", "fulfilled"),
    ]
    assert [(f.original.operation, f.original.outcome) for f in calls] == [("fulfil", "ok")]
    assert "status history" in content.lower() and "partner calls" in content.lower()
    # A final redemption offers neither button, and the row itself cannot be edited.
    assert url("redemptions_redemption_retry", redemption.pk) not in content
    post = client.post(url("redemptions_redemption_change", redemption.pk), {"status": "CANCELLED"})
    assert post.status_code == 403


# Cancel and refund -----------------------------------------------------------------------


def test_cancel_and_refund_of_a_pending_redemption_gives_back_points_and_stock(client, tenant, shop):
    item, member = shop
    redemption = redeem(member, item)
    assert (member_balance(member=member), stock_of(item)) == (700, 4)
    operator = login_operator(client, tenant, Operator.Role.SUPPORT)

    response = cancel_by_action(client, [redemption], reason="member asked")

    assert response.status_code == 302
    redemption.refresh_from_db()
    assert redemption.status == Redemption.Status.CANCELLED
    assert (member_balance(member=member), stock_of(item)) == (1000, 5)
    last = redemption.transitions.order_by("at", "id").last()
    assert (last.to_status, last.actor, last.reason) == (
        "CANCELLED",
        f"operator:{operator.user.username}",
        "member asked",
    )
    assert any(m.startswith("Cancelled 1;") for m in messages_of(response))


def test_cancel_reports_a_completed_redemption_and_changes_nothing(client, tenant, shop, partner_ok):
    item, member = shop
    completed = redeem(member, item)
    fulfil(completed.pk)
    pending = redeem(member, item)
    login_operator(client, tenant, Operator.Role.OWNER)

    response = cancel_by_action(client, [completed, pending])

    assert response.status_code == 302
    completed.refresh_from_db()
    pending.refresh_from_db()
    assert (completed.status, pending.status) == ("COMPLETED", "CANCELLED")
    assert completed.refund_transfer_id is None
    assert (member_balance(member=member), stock_of(item)) == (700, 4)
    notes = messages_of(response)
    assert f"Left 1 as they were, already final: {str(completed.pk)[:8]} (completed)." in notes
    assert any(m.startswith("Cancelled 1;") for m in notes)


def test_cancelling_a_redemption_with_the_partner_voids_and_refunds_it(client, tenant, shop, partner_down):
    item, member = shop
    redemption = redeem(member, item)
    assert fulfil(redemption.pk).outcome == "retry"  # the partner is down: still FULFILLING
    login_operator(client, tenant, Operator.Role.SUPPORT)

    response = cancel_by_action(client, [redemption], reason="partner outage")

    redemption.refresh_from_db()
    assert redemption.status == Redemption.Status.REFUNDED
    assert redemption.failure_code == "cancelled_by_operator"
    assert (member_balance(member=member), stock_of(item)) == (1000, 5)
    assert list(redemption.fulfilment_attempts.order_by("at", "id").values_list("operation", "outcome")) == [
        ("fulfil", "unavailable"),
        ("void", "ok"),
    ]
    assert any(m.startswith("Failed and refunded 1") for m in messages_of(response))


def test_the_cancel_page_of_one_redemption_needs_a_reason(client, tenant, shop):
    item, member = shop
    redemption = redeem(member, item)
    login_operator(client, tenant, Operator.Role.SUPPORT)
    cancel = url("redemptions_redemption_cancel", redemption.pk)

    detail = client.get(url("redemptions_redemption_change", redemption.pk)).content.decode()
    page = client.get(cancel)
    refused = client.post(cancel, {"reason": ""})
    redemption.refresh_from_db()
    status_after_refusal = redemption.status
    done = client.post(cancel, {"reason": "duplicate order"})

    assert cancel in detail and url("redemptions_redemption_retry", redemption.pk) in detail
    assert page.status_code == 200 and "Coffee Card" in page.content.decode()
    assert refused.status_code == 200 and "reason" in refused.context["form"].errors
    assert status_after_refusal == Redemption.Status.PENDING
    assert done.status_code == 302 and done.url == url("redemptions_redemption_change", redemption.pk)
    redemption.refresh_from_db()
    assert redemption.status == Redemption.Status.CANCELLED
    assert member_balance(member=member) == 1000


# Retry now -------------------------------------------------------------------------------


def test_retry_now_runs_the_next_step_of_open_ones_and_skips_final_ones(
    client, tenant, shop, partner_ok, django_capture_on_commit_callbacks
):
    item, member = shop
    pending = redeem(member, item)
    cancelled = redeem(member, item)
    services.redemption_cancel(redemption=cancelled, actor="test")
    login_operator(client, tenant, Operator.Role.SUPPORT)

    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = run_action(client, "retry_now", [pending, cancelled], index=0)

    assert response.status_code == 302
    assert len(queued) == 1
    pending.refresh_from_db()
    assert pending.status == Redemption.Status.COMPLETED
    assert messages_of(response) == [
        f"Queued the next step of 1 redemption(s). Skipped 1 already final: {str(cancelled.pk)[:8]}."
    ]


def test_retry_button_on_the_detail_page(client, tenant, shop, partner_ok, django_capture_on_commit_callbacks):
    item, member = shop
    redemption = redeem(member, item)
    login_operator(client, tenant, Operator.Role.OWNER)
    retry = url("redemptions_redemption_retry", redemption.pk)

    assert client.get(retry).status_code == 405
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(retry)

    assert response.status_code == 302
    redemption.refresh_from_db()
    assert redemption.status == Redemption.Status.COMPLETED


# Roles -----------------------------------------------------------------------------------


def test_a_viewer_cannot_retry_or_cancel(client, tenant, shop, django_capture_on_commit_callbacks):
    item, member = shop
    redemption = redeem(member, item)
    login_operator(client, tenant, Operator.Role.VIEWER)

    queue = client.get(url("redemptions_redemption_changelist"))
    detail = client.get(url("redemptions_redemption_change", redemption.pk)).content.decode()
    with django_capture_on_commit_callbacks(execute=True) as queued:
        run_action(client, "retry_now", [redemption], index=0)
        run_action(client, "cancel_and_refund", [redemption], post="yes", reason="sneaky")
        retried = client.post(url("redemptions_redemption_retry", redemption.pk))
        cancel_page = client.get(url("redemptions_redemption_cancel", redemption.pk))
        cancelled = client.post(url("redemptions_redemption_cancel", redemption.pk), {"reason": "sneaky"})

    assert queue.context["action_form"] is None
    assert url("redemptions_redemption_cancel", redemption.pk) not in detail
    assert (retried.status_code, cancel_page.status_code, cancelled.status_code) == (403, 403, 403)
    assert queued == []
    redemption.refresh_from_db()
    assert redemption.status == Redemption.Status.PENDING
    assert (member_balance(member=member), stock_of(item)) == (700, 4)


# Partner configurations ------------------------------------------------------------------


def config_data(partner, **overrides) -> dict:
    """The form as a browser posts it; no partner on a change (it is fixed then)."""
    data = {
        "partner": partner.pk if partner is not None else None,
        "base_url": "https://93.184.216.34/v1",
        "credentials_ref": "ACME_API_TOKEN",
        "enabled_kinds": ["DIGITAL", "GIFT_CARD"],
        "priority": "0",
        "is_enabled": "on",
        "timeout_seconds": "5.00",
        "max_attempts": "3",
        "failure_threshold": "5",
        "reset_timeout_seconds": "30",
        "_save": "Save",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def test_an_owner_configures_a_partner_with_kinds_as_checkboxes(client, tenant, other_tenant):
    partner = Partner.objects.create(tenant=tenant, code="acme", name="Acme Gifts")
    Partner.objects.create(tenant=other_tenant, code="hidden", name="Hidden Partner")
    login_operator(client, tenant, Operator.Role.OWNER)

    form_page = client.get(url("redemptions_partnerconfig_add"))
    response = client.post(url("redemptions_partnerconfig_add"), config_data(partner))

    assert [p.name for p in form_page.context["adminform"].form.fields["partner"].queryset] == ["Acme Gifts"]
    assert 'type="checkbox" name="enabled_kinds" value="GIFT_CARD"' in form_page.content.decode()
    assert response.status_code == 302, response.context["adminform"].form.errors
    config = PartnerConfig.objects.get(partner=partner)
    assert config.tenant_id == tenant.pk
    assert config.enabled_kinds == ["GIFT_CARD", "DIGITAL"]

    changed = client.post(
        url("redemptions_partnerconfig_change", config.pk),
        config_data(None, enabled_kinds=["MERCHANDISE"]),
    )
    edit_page = client.get(url("redemptions_partnerconfig_change", config.pk))

    assert changed.status_code == 302, changed.context["adminform"].form.errors
    config.refresh_from_db()
    assert config.enabled_kinds == ["MERCHANDISE"]
    assert edit_page.context["adminform"].form.initial["enabled_kinds"] == ["MERCHANDISE"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"enabled_kinds": None}, "enabled_kinds"),
        ({"enabled_kinds": ["SPACESHIP"]}, "enabled_kinds"),
        ({"base_url": "not a url"}, "base_url"),
        ({"base_url": "ftp://files.acme.example/"}, "base_url"),
        ({"credentials_ref": "sk_live 9f8e-7d6c"}, "credentials_ref"),
        ({"timeout_seconds": "0"}, "timeout_seconds"),
    ],
)
def test_a_bad_partner_configuration_is_a_field_error_and_saves_nothing(client, tenant, overrides, field):
    partner = Partner.objects.create(tenant=tenant, code="acme", name="Acme Gifts")
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("redemptions_partnerconfig_add"), config_data(partner, **overrides))

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == [field]
    assert not PartnerConfig.objects.exists()


def test_another_tenants_partner_cannot_be_configured(client, tenant, other_tenant):
    theirs = Partner.objects.create(tenant=other_tenant, code="hidden", name="Hidden Partner")
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("redemptions_partnerconfig_add"), config_data(theirs))

    assert response.status_code == 200
    assert "partner" in response.context["adminform"].form.errors
    assert not PartnerConfig.objects.exists()


def test_only_an_owner_writes_partner_configurations(client, tenant):
    config = partner_config(tenant)
    login_operator(client, tenant, Operator.Role.SUPPORT)

    listed_page = client.get(url("redemptions_partnerconfig_changelist"))
    added = client.get(url("redemptions_partnerconfig_add"))
    changed = client.post(
        url("redemptions_partnerconfig_change", config.pk),
        config_data(None, base_url="https://evil.example/"),
    )

    assert listed_page.status_code == 200 and added.status_code == 403 and changed.status_code == 403
    config.refresh_from_db()
    assert config.base_url == "https://api.partner.example/v1"


# Partner health --------------------------------------------------------------------------


def trip(config) -> None:
    """Fail calls through the partner's breaker until its circuit opens."""

    def down():
        raise PartnerUnavailable("connection refused")

    for _ in range(config.failure_threshold):
        with pytest.raises(PartnerUnavailable):
            circuit_call(services.partner_settings(config), down)


def test_partner_health_shows_the_open_circuit_and_failures_and_an_owner_closes_it(client, tenant, partner_down):
    config = partner_config(tenant, failure_threshold=2)
    item, member = gift_card(tenant), member_with(tenant, 1000)
    redemption = redeem(member, item)
    fulfil(redemption.pk)  # one failed call, recorded
    trip(config)
    login_operator(client, tenant, Operator.Role.OWNER)
    changelist = url("redemptions_partnerconfig_changelist")

    health = client.get(changelist).content.decode()
    detail = client.get(url("redemptions_partnerconfig_change", config.pk)).content.decode()
    response = client.post(changelist, {"action": "close_circuit", "_selected_action": [config.pk], "index": 0})
    after = client.get(changelist).content.decode()

    assert '<td class="field-circuit">open</td>' in health
    assert '<td class="field-failures_last_hour">1 / 1</td>' in health
    assert "partner answered 503" in detail and str(redemption.pk)[:8] in detail
    assert url("redemptions_partnerconfig_close_circuit", config.pk) in detail
    assert response.status_code == 302
    assert messages_of(response) == ["Closed the circuit of Acme Gifts."]
    assert circuit_health(services.partner_settings(config))["state"] == "closed"
    assert '<td class="field-circuit">closed</td>' in after


@pytest.mark.parametrize("role", [Operator.Role.SUPPORT, Operator.Role.VIEWER])
def test_support_and_viewers_do_not_close_a_circuit(client, tenant, role):
    config = partner_config(tenant, failure_threshold=1)
    trip(config)
    login_operator(client, tenant, role)
    changelist = url("redemptions_partnerconfig_changelist")

    health = client.get(changelist)
    detail = client.get(url("redemptions_partnerconfig_change", config.pk)).content.decode()
    client.post(changelist, {"action": "close_circuit", "_selected_action": [config.pk], "index": 0})
    closed = client.post(url("redemptions_partnerconfig_close_circuit", config.pk))

    assert health.context["action_form"] is None
    assert url("redemptions_partnerconfig_close_circuit", config.pk) not in detail
    assert closed.status_code == 403
    assert circuit_health(services.partner_settings(config))["state"] == "open"


def test_the_health_page_with_no_calls(client, tenant):
    config = partner_config(tenant)
    login_operator(client, tenant, Operator.Role.VIEWER)

    health = client.get(url("redemptions_partnerconfig_changelist")).content.decode()
    detail = client.get(url("redemptions_partnerconfig_change", config.pk)).content.decode()

    assert '<td class="field-circuit">closed</td>' in health
    assert '<td class="field-failures_last_hour">0 / 0</td>' in health
    assert "None in the last 60 minutes." in detail
    assert not FulfilmentAttempt.objects.exists()
