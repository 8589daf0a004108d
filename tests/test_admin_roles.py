"""Operator roles, table by table: what an owner, a manager, support and a viewer may do in
the back office and through the API, and that another tenant's objects are not found
whatever the role."""

import uuid
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns import services as campaigns
from campaigns.models import Campaign
from catalog import services as catalog
from catalog.models import Item, Partner
from core.admin_scoping import TenantScopedAdminMixin
from core.api.permissions import ROLE_REFUSED
from core.roles import ALL_ROLES
from redemptions import services as redemptions
from redemptions.models import PartnerConfig, Redemption
from rewards.selectors import member_balance
from rewards.services import points_adjust
from tenants.models import ApiKey, Operator, WebhookDelivery, WebhookEndpoint
from tenants.webhooks import webhook_deliveries_enqueue, webhook_endpoint_create
from tests.campaigns.helpers import campaign_admin_form
from tests.factories import MemberFactory, OperatorFactory, UserFactory
from tiers import services as tiers

pytestmark = pytest.mark.django_db

OWNER = Operator.Role.OWNER
MANAGER = Operator.Role.MANAGER
SUPPORT = Operator.Role.SUPPORT
VIEWER = Operator.Role.VIEWER
EVERYONE = {OWNER, MANAGER, SUPPORT, VIEWER}
OPERATIONS = {OWNER, MANAGER, SUPPORT}
PROGRAM = {OWNER, MANAGER}
ACCOUNT = {OWNER}
RULE = {"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "POINTS", "points": 100}}


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


@pytest.fixture(autouse=True)
def _webhooks_to_loopback(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


def world(tenant) -> SimpleNamespace:
    """One of each thing the roles are about, in `tenant`."""
    member = MemberFactory(tenant=tenant)
    points_adjust(tenant=tenant, member=member, points=1000, reason="setup", actor="test")
    campaign = campaigns.campaign_create(
        tenant=tenant, name="Welcome", type="SIMPLE", start_at=timezone.now() - timedelta(days=1), rule_json=RULE
    )
    partner = Partner.objects.create(tenant=tenant, code="acme", name="Acme Gifts")
    config = PartnerConfig.objects.create(
        tenant=tenant,
        partner=partner,
        base_url="http://127.0.0.1:9/v1",
        enabled_kinds=[kind.value for kind in Item.Kind],
    )
    item = catalog.item_create(
        tenant=tenant,
        name="Coffee Card",
        sku="GC-10",
        kind=Item.Kind.GIFT_CARD,
        point_cost=300,
        cash_value=Decimal("10.00"),
        stock_quantity=5,
    )
    redemption, _ = redemptions.redemption_request(
        tenant=tenant, member=member, item_id=item.pk, quantity=1, actor="test"
    )
    tier = tiers.tier_create(tenant=tenant, tier_id="gold", names={"en": "Gold"}, min_points=5000)
    endpoint = webhook_endpoint_create(tenant=tenant, url="http://127.0.0.1:9/hooks", description="CRM")
    event = {"eventId": str(uuid.uuid4()), "type": "points.credited", "tenantId": str(tenant.pk), "data": {}}
    webhook_deliveries_enqueue(tenant_id=tenant.pk, envelope=event)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.DEAD_LETTERED)
    colleague = OperatorFactory(tenant=tenant, role=VIEWER)
    return SimpleNamespace(
        tenant=tenant,
        member=member,
        campaign=campaign,
        config=config,
        item=item,
        redemption=redemption,
        tier=tier,
        endpoint=endpoint,
        delivery=delivery,
        colleague=colleague,
        api_key=tenant.api_keys.order_by("created_at").first(),
    )


def login(client, tenant, role) -> Operator:
    operator = OperatorFactory(tenant=tenant, role=role)
    client.force_login(operator.user)
    return operator


# What each role may do in the back office ------------------------------------------------
#
# Each row: the page that offers the control, the control (present only when allowed), the
# attempt (a browser's post), and whether it took effect.


def item_form(w) -> dict:
    item = w.item
    return {
        "sku": item.sku,
        "name": "Renamed card",
        "names": "{}",
        "description": "",
        "kind": item.kind,
        "category": "",
        "partner": "",
        "point_cost": str(item.point_cost),
        "cash_value": str(item.cash_value),
        "is_active": "on",
        "min_tier": "",
        "image_url": "",
        "loaded_version": str(item.version),
        "_save": "Save",
    }


def tier_form(w) -> dict:
    return {
        "names.en": "Gold",
        "names:new_locale": "",
        "names:new_name": "",
        "min_points": "6000",
        "rank": "0",
        "earn_multiplier": "1",
        "discount_percentage": "0",
        "bonus_points": "0",
        "custom_perks": "",
        "_save": "Save",
    }


def action(name: str, *objects) -> dict:
    return {"action": name, "_selected_action": [str(o.pk) for o in objects], "index": 0}


ROWS = {
    "change a campaign": (
        PROGRAM,
        lambda w: url("campaigns_campaign_change", w.campaign.pk),
        'name="_save"',
        lambda c, w: c.post(url("campaigns_campaign_change", w.campaign.pk), campaign_admin_form(RULE, name="After")),
        lambda w: Campaign.objects.get(pk=w.campaign.pk).name == "After",
    ),
    "activate a campaign": (
        PROGRAM,
        lambda w: url("campaigns_campaign_change", w.campaign.pk),
        lambda w: url("campaigns_campaign_activate", w.campaign.pk),
        lambda c, w: c.post(url("campaigns_campaign_activate", w.campaign.pk)),
        lambda w: Campaign.objects.get(pk=w.campaign.pk).status == Campaign.Status.ACTIVE,
    ),
    "edit a catalog item": (
        PROGRAM,
        lambda w: url("catalog_item_change", w.item.pk),
        'name="_save"',
        lambda c, w: c.post(url("catalog_item_change", w.item.pk), item_form(w)),
        lambda w: Item.objects.get(pk=w.item.pk).name == "Renamed card",
    ),
    "record stock": (
        PROGRAM,
        lambda w: url("catalog_item_change", w.item.pk),
        lambda w: url("catalog_item_stock", w.item.pk),
        lambda c, w: c.post(url("catalog_item_stock", w.item.pk), {"kind": "RESTOCK", "quantity": "3", "reason": ""}),
        lambda w: Item.objects.get(pk=w.item.pk).stock_quantity == 4 + 3,
    ),
    "change a tier": (
        PROGRAM,
        lambda w: url("tiers_tier_change", w.tier.pk),
        'name="_save"',
        lambda c, w: c.post(url("tiers_tier_change", w.tier.pk), tier_form(w)),
        lambda w: type(w.tier).objects.get(pk=w.tier.pk).min_points == 6000,
    ),
    "edit a member": (
        OPERATIONS,
        lambda w: url("rewards_member_change", w.member.pk),
        'name="_save"',
        lambda c, w: c.post(url("rewards_member_change", w.member.pk), {"status": "SUSPENDED", "locale": "fr"}),
        lambda w: type(w.member).objects.get(pk=w.member.pk).status == "SUSPENDED",
    ),
    "adjust points": (
        OPERATIONS,
        lambda w: url("rewards_member_change", w.member.pk),
        lambda w: url("rewards_member_adjust", w.member.pk),
        lambda c, w: c.post(
            url("rewards_member_adjust", w.member.pk),
            {"points": 50, "reason": "goodwill", "idempotency_key": str(uuid.uuid4())},
        ),
        lambda w: member_balance(member=w.member) == 1000 - 300 + 50,
    ),
    "retry a redemption": (
        OPERATIONS,
        lambda w: url("redemptions_redemption_change", w.redemption.pk),
        lambda w: url("redemptions_redemption_retry", w.redemption.pk),
        lambda c, w: c.post(url("redemptions_redemption_retry", w.redemption.pk)),
        lambda w: retries_logged(w.redemption) == 1,
    ),
    "cancel and refund a redemption": (
        OPERATIONS,
        lambda w: url("redemptions_redemption_change", w.redemption.pk),
        lambda w: url("redemptions_redemption_cancel", w.redemption.pk),
        lambda c, w: c.post(url("redemptions_redemption_cancel", w.redemption.pk), {"reason": "asked"}),
        lambda w: Redemption.objects.get(pk=w.redemption.pk).status == Redemption.Status.CANCELLED,
    ),
    "replay a dead letter": (
        OPERATIONS,
        lambda w: url("tenants_webhookdelivery_changelist"),
        'value="replay"',
        lambda c, w: c.post(url("tenants_webhookdelivery_changelist"), action("replay", w.delivery)),
        lambda w: WebhookDelivery.objects.get(pk=w.delivery.pk).status == WebhookDelivery.Status.PENDING,
    ),
    "rotate a webhook secret": (
        ACCOUNT,
        lambda w: url("tenants_webhookendpoint_changelist"),
        'value="rotate_secrets"',
        lambda c, w: c.post(url("tenants_webhookendpoint_changelist"), action("rotate_secrets", w.endpoint)),
        lambda w: WebhookEndpoint.objects.get(pk=w.endpoint.pk).secret != w.endpoint.secret,
    ),
    "add an operator": (
        ACCOUNT,
        lambda w: url("tenants_operator_changelist"),
        lambda w: url("tenants_operator_add"),
        lambda c, w: c.post(url("tenants_operator_add"), {"user": newcomer().pk, "role": "SUPPORT"}),
        lambda w: Operator.objects.filter(user__username="newcomer").exists(),
    ),
    "change an operator's role": (
        ACCOUNT,
        lambda w: url("tenants_operator_change", w.colleague.pk),
        'name="_save"',
        lambda c, w: c.post(url("tenants_operator_change", w.colleague.pk), {"role": "OWNER"}),
        lambda w: Operator.objects.get(pk=w.colleague.pk).role == "OWNER",
    ),
    "add an API key": (
        ACCOUNT,
        lambda w: url("tenants_apikey_changelist"),
        lambda w: url("tenants_apikey_add"),
        lambda c, w: c.post(url("tenants_apikey_add"), {"name": "ci"}),
        lambda w: ApiKey.objects.filter(tenant=w.tenant, name="ci").exists(),
    ),
    "revoke an API key": (
        ACCOUNT,
        lambda w: url("tenants_apikey_changelist"),
        'value="revoke_keys"',
        lambda c, w: c.post(url("tenants_apikey_changelist"), action("revoke_keys", w.api_key)),
        lambda w: ApiKey.objects.get(pk=w.api_key.pk).revoked_at is not None,
    ),
    "change a partner connection": (
        ACCOUNT,
        lambda w: url("redemptions_partnerconfig_change", w.config.pk),
        'name="_save"',
        lambda c, w: c.post(
            url("redemptions_partnerconfig_change", w.config.pk),
            {
                "base_url": "http://127.0.0.1:9/v1",
                "credentials_ref": "",
                "enabled_kinds": ["GIFT_CARD"],
                "priority": "3",
                "is_enabled": "on",
                "timeout_seconds": "5",
                "max_attempts": "3",
                "failure_threshold": "5",
                "reset_timeout_seconds": "30",
            },
        ),
        lambda w: PartnerConfig.objects.get(pk=w.config.pk).priority == 3,
    ),
}


def newcomer():
    return UserFactory(username="newcomer")


def retries_logged(redemption) -> int:
    """A retry only queues a task: what it leaves is the entry in the redemption's history."""
    history = AdminLogEntry.objects.filter(object_id=str(redemption.pk), change_message__startswith="Retry queued")
    return history.count()


@pytest.mark.parametrize("role", ALL_ROLES)
@pytest.mark.parametrize("row", list(ROWS))
def test_each_role_may_do_what_its_role_allows_and_nothing_else(client, tenant, role, row):
    allowed_roles, page_url, control, attempt, took_effect = ROWS[row]
    w = world(tenant)
    login(client, tenant, role)
    allowed = role in allowed_roles

    page = client.get(page_url(w))
    response = attempt(client, w)

    assert page.status_code == 200, page.status_code
    shown = control(w) if callable(control) else control
    assert (shown in page.content.decode()) is allowed, f"{row}: control shown to {role}?"
    if allowed:
        assert response.status_code in (200, 302), response.status_code
        assert took_effect(w), f"{row}: {role} may, but nothing changed"
    else:
        # A refused form or button is a 403; a refused changelist action is not offered, and
        # posting it anyway does nothing.
        assert response.status_code in (403, 200, 302), response.status_code
        assert not took_effect(w), f"{row}: {role} may not, yet it changed"


@pytest.mark.parametrize("role", ALL_ROLES)
def test_every_role_reads_every_list(client, tenant, role):
    world(tenant)
    login(client, tenant, role)
    lists = [
        "rewards_member_changelist",
        "rewards_transfer_changelist",
        "campaigns_campaign_changelist",
        "campaigns_cohort_changelist",
        "catalog_item_changelist",
        "tiers_tier_changelist",
        "redemptions_redemption_changelist",
        "redemptions_partnerconfig_changelist",
        "tenants_webhookendpoint_changelist",
        "tenants_webhookdelivery_changelist",
        "tenants_operator_changelist",
        "tenants_apikey_changelist",
        "auditlog_logentry_changelist",
    ]

    for name in lists:
        assert client.get(url(name)).status_code == 200, name


# The admins' own permissions for what is not an add, change or delete.
WRITE_PERMISSIONS = ("adjust", "lifecycle", "operate", "reconcile", "replay", "reset", "revoke", "rotate", "stock")
WRITE_PERMISSIONS += ("upload", "write")


def test_a_viewer_sees_no_add_change_delete_or_writing_action_anywhere(tenant):
    world(tenant)
    viewer = OperatorFactory(tenant=tenant, role=VIEWER)
    request = RequestFactory().get("/admin/")
    request.user = viewer.user
    scoped = [m for m in admin.site._registry.values() if isinstance(m, TenantScopedAdminMixin)]
    assert len(scoped) > 30

    for model_admin in scoped:
        name = type(model_admin).__name__
        assert model_admin.has_view_permission(request), name
        assert not model_admin.has_add_permission(request), name
        assert not model_admin.has_change_permission(request), name
        assert not model_admin.has_delete_permission(request), name
        assert not model_admin.get_actions(request), name
        for permission in WRITE_PERMISSIONS:
            check = getattr(model_admin, f"has_{permission}_permission", None)
            assert check is None or not check(request), f"{name}.has_{permission}_permission"
        if hasattr(model_admin, "has_import_permission"):
            assert not model_admin.has_import_permission(request), name


def test_the_roles_in_core_are_the_operator_roles():
    assert set(ALL_ROLES) == set(Operator.Role.values) == EVERYONE


# Another tenant's objects ----------------------------------------------------------------

OTHER_TENANTS_PAGES = [
    ("rewards_member_change", "member", "get"),
    ("rewards_member_adjust", "member", "post"),
    ("campaigns_campaign_change", "campaign", "get"),
    ("campaigns_campaign_activate", "campaign", "post"),
    ("catalog_item_change", "item", "get"),
    ("catalog_item_stock", "item", "post"),
    ("tiers_tier_change", "tier", "get"),
    ("redemptions_redemption_change", "redemption", "get"),
    ("redemptions_redemption_retry", "redemption", "post"),
    ("redemptions_redemption_cancel", "redemption", "post"),
    ("redemptions_partnerconfig_change", "config", "get"),
    ("tenants_webhookendpoint_change", "endpoint", "get"),
    ("tenants_webhookdelivery_change", "delivery", "get"),
    ("tenants_operator_change", "colleague", "post"),
    ("tenants_apikey_change", "api_key", "get"),
    ("tenants_tenant_change", "tenant", "get"),
]


@pytest.mark.parametrize("role", ALL_ROLES)
def test_another_tenants_object_urls_are_not_found_for_every_role(client, tenant, other_tenant, role):
    theirs = world(other_tenant)
    login(client, tenant, role)

    for route, name, method in OTHER_TENANTS_PAGES:
        response = getattr(client, method)(url(route, getattr(theirs, name).pk))
        assert response.status_code == 404, (route, response.status_code)

    assert Campaign.objects.get(pk=theirs.campaign.pk).status == Campaign.Status.DRAFT
    assert member_balance(member=theirs.member) == 700
    assert Redemption.objects.get(pk=theirs.redemption.pk).status == theirs.redemption.status


# The same roles through the API ------------------------------------------------------------


API_ROWS = {
    "adjust points": (OPERATIONS, "post", "/api/v1/members/{member}/adjustments", {"points": 5, "reason": "goodwill"}),
    "edit a member": (OPERATIONS, "patch", "/api/v1/members/{member}", {"locale": "fr"}),
    "replay dead letters": (OPERATIONS, "post", "/api/v1/webhooks/{endpoint}:replay-dead-letters", None),
    "add an action": (PROGRAM, "post", "/api/v1/actions", {"code": "app.opened", "description": "Opened"}),
    "add a catalog category": (PROGRAM, "post", "/api/v1/catalog/categories", {"code": "mugs", "name": "Mugs"}),
    "add a spend category": (PROGRAM, "post", "/api/v1/categories", {"code": "dining", "name": "Dining"}),
    "activate a campaign": (PROGRAM, "post", "/api/v1/campaigns/{campaign}:activate", None),
    "rotate a webhook secret": (ACCOUNT, "post", "/api/v1/webhooks/{endpoint}:rotate-secret", None),
    "add an API key": (ACCOUNT, "post", "/api/v1/tenants/{tenant}/api-keys", {"name": "ci"}),
}


@pytest.mark.parametrize("role", ALL_ROLES)
def test_each_role_writes_through_the_api_where_its_role_allows(tenant, role):
    w = world(tenant)
    api = APIClient()
    api.force_authenticate(OperatorFactory(tenant=tenant, role=role).user)
    ids = {
        "member": w.member.external_ref,
        "endpoint": w.endpoint.pk,
        "campaign": w.campaign.pk,
        "tenant": tenant.pk,
    }

    for row, (allowed_roles, method, path, body) in API_ROWS.items():
        response = getattr(api, method)(path.format(**ids), body, format="json")
        if role in allowed_roles:
            assert response.status_code in (200, 201, 202), (row, response.status_code, response.content)
        else:
            assert response.status_code == 403, (row, response.status_code)
            assert ROLE_REFUSED in response.content.decode(), row
    assert api.get(f"/api/v1/members/{w.member.external_ref}").status_code == 200
