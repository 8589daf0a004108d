"""Every endpoint tried with another tenant's ids: tenant B's credentials against tenant A's
tenantId, memberRef and API key id get a 404 (or B's own data), and nothing in A changes.

The table below must name every route and method under /api/v1/: a new endpoint fails
`test_every_api_route_is_in_the_table` until it is added here.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from campaigns.cohorts import cohort_create
from campaigns.models import Action, Campaign, Cohort, CohortMember, CohortRun, CouponCode, Incentive
from campaigns.services import action_upsert, campaign_activate, campaign_create, coupon_codes_add, coupon_pool_create
from catalog import services as catalog_services
from catalog.models import Category as CatalogCategory
from catalog.models import Item as CatalogItem
from catalog.models import Partner as CatalogPartner
from catalog.models import StockMovement
from redemptions.models import PartnerConfig, Redemption
from redemptions.services import redemption_request
from rewards import categories, credit, selectors, services
from rewards.earning import event_ingest
from rewards.models import (
    Account,
    CreditPackage,
    CreditPurchase,
    InboundEvent,
    Member,
    Multiplier,
    OutboxEvent,
    SpendCategory,
    Transfer,
)
from tenants.models import ApiKey, Limit, WebhookDelivery, WebhookEndpoint
from tenants.services import limit_upsert
from tenants.webhooks import webhook_deliveries_enqueue, webhook_endpoint_create
from tests.core.shapes import assert_error
from tests.factories import MemberFactory
from tiers import services as tier_services
from tiers.models import Tier, TierPolicy

A_REF = "alice-of-a"
B_REF = "bob-of-b"
A_CAT = "a-dining"
B_CAT = "b-travel"
A_COHORT = "a-vips"
CATEGORY = "api/v1/categories/<str:code>"
MULTIPLIERS = "api/v1/categories/<str:code>/multipliers"
MULTIPLIER = "api/v1/categories/<str:code>/multipliers/<int:multiplier_id>"
COHORT = "api/v1/cohorts/<uuid:cohort_id>"
CAMPAIGN = "api/v1/campaigns/<uuid:campaign_id>"
A_ACTION = "a.only"
A_POOL = "a-pool"
A_TIER = "a-gold"
TIER = "api/v1/tiers/<str:tier_id>"
A_SHELF = "a-gadgets"
CATALOG_CATEGORY = "api/v1/catalog/categories/<str:code>"
CATALOG_ITEM = "api/v1/catalog/items/<str:item_id>"
STOCK = "api/v1/catalog/items/<str:item_id>/stock-movements"
PACKAGE = "api/v1/credit-packages/<str:package_id>"
PURCHASES = "api/v1/credit-purchases"
PURCHASE = "api/v1/credit-purchases/<str:purchase_id>"
A_PACK = "a-pack"
IDEMPOTENT = (("Idempotency-Key", "b-buys"),)
WEBHOOK = "api/v1/webhooks/<uuid:webhook_id>"
REDEMPTIONS = "api/v1/redemptions"
ONCE = IDEMPOTENT
REDEMPTION = "api/v1/redemptions/<str:redemption_id>"
REDEMPTION_CANCEL = "api/v1/redemptions/<str:redemption_id>:cancel"
B_CAMPAIGN = {
    "name": "B's",
    "type": "SIMPLE",
    "startAt": "2030-01-01T00:00:00Z",
    "ruleJson": {"trigger": {"eventTypes": ["action"]}, "reward": {"type": "POINTS", "points": 5}},
}
METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Case:
    route: str  # as Django spells it, e.g. "api/v1/members/<str:member_ref>"
    method: str
    path: str  # with {a_tenant}, {b_tenant}, {a_ref}, {a_key}
    status: int
    body: dict | None = None
    caller: str = "b_key"  # or "b_token": tenant B's member app
    headers: tuple = ()  # (name, value) pairs, e.g. an Idempotency-Key

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.path}" + (" (member token)" if self.caller == "b_token" else "")


CASES = [
    # Platform-admin endpoints: a tenant's key gets nothing, whatever it names.
    Case("api/v1/tenants", "get", "/api/v1/tenants", 403),
    Case("api/v1/tenants", "post", "/api/v1/tenants", 403, {"name": "Hijack", "slug": "hijack"}),
    # Tenant A named in the path.
    Case("api/v1/tenants/<str:tenant_id>", "get", "/api/v1/tenants/{a_tenant}", 404),
    Case("api/v1/tenants/<str:tenant_id>/limits", "get", "/api/v1/tenants/{a_tenant}/limits", 404),
    Case("api/v1/tenants/<str:tenant_id>/limits", "get", "/api/v1/tenants/{a_tenant}/limits?memberRef={a_ref}", 404),
    Case(
        "api/v1/tenants/<str:tenant_id>/limits",
        "post",
        "/api/v1/tenants/{a_tenant}/limits",
        404,
        {"scope": "GLOBAL", "maxPerDay": 1},
    ),
    Case(
        "api/v1/tenants/<str:tenant_id>/user-limits",
        "post",
        "/api/v1/tenants/{a_tenant}/user-limits",
        404,
        {"memberRef": A_REF, "maxPerDay": 1},
    ),
    Case("api/v1/tenants/<str:tenant_id>/api-keys", "get", "/api/v1/tenants/{a_tenant}/api-keys", 404),
    Case("api/v1/tenants/<str:tenant_id>/api-keys", "post", "/api/v1/tenants/{a_tenant}/api-keys", 404, {"name": "x"}),
    Case(
        "api/v1/tenants/<str:tenant_id>/api-keys/<str:key_id>:revoke",
        "post",
        "/api/v1/tenants/{a_tenant}/api-keys/{a_key}:revoke",
        404,
    ),
    # B's own tenant id with A's key id: the key is looked up within B.
    Case(
        "api/v1/tenants/<str:tenant_id>/api-keys/<str:key_id>:revoke",
        "post",
        "/api/v1/tenants/{b_tenant}/api-keys/{a_key}:revoke",
        404,
    ),
    # Members: memberRefs are per tenant, so B's lists and creations are B's own.
    Case("api/v1/members", "get", "/api/v1/members?memberRefPrefix={a_ref}", 200),
    Case("api/v1/members", "post", "/api/v1/members", 201, {"memberRef": A_REF, "attributes": {"from": "b"}}),
    Case("api/v1/members/<str:member_ref>", "get", "/api/v1/members/{a_ref}", 404),
    Case("api/v1/members/<str:member_ref>", "patch", "/api/v1/members/{a_ref}", 404, {"status": "CLOSED"}),
    Case(
        "api/v1/members/<str:member_ref>/adjustments",
        "post",
        "/api/v1/members/{a_ref}/adjustments",
        404,
        {"points": -100, "reason": "take it"},
    ),
    Case("api/v1/members/<str:member_ref>/transfers", "get", "/api/v1/members/{a_ref}/transfers", 404),
    Case("api/v1/members/<str:member_ref>", "delete", "/api/v1/members/{a_ref}", 404),
    Case("api/v1/members/<str:member_ref>/export", "get", "/api/v1/members/{a_ref}/export", 404),
    Case("api/v1/members/<str:member_ref>/token", "post", "/api/v1/members/{a_ref}/token", 404),
    # Categories: codes and MCCs are per tenant, so B's lists and creations are B's own.
    Case("api/v1/categories", "get", "/api/v1/categories", 200),
    Case("api/v1/categories", "post", "/api/v1/categories", 201, {"code": A_CAT, "name": "B's", "mccCodes": ["5812"]}),
    Case("api/v1/categories", "post", "/api/v1/categories", 400, {"code": "b-new", "name": "x", "parent": A_CAT}),
    Case(CATEGORY, "get", "/api/v1/categories/{a_cat}", 404),
    Case(CATEGORY, "patch", "/api/v1/categories/{a_cat}", 404, {"name": "Hijacked", "mccCodes": []}),
    Case(CATEGORY, "patch", "/api/v1/categories/{b_cat}", 400, {"parent": A_CAT}),
    Case(MULTIPLIERS, "get", "/api/v1/categories/{a_cat}/multipliers", 404),
    Case(MULTIPLIERS, "post", "/api/v1/categories/{a_cat}/multipliers", 404, {"factor": "9"}),
    Case(MULTIPLIER, "get", "/api/v1/categories/{a_cat}/multipliers/{a_mult}", 404),
    Case(MULTIPLIER, "patch", "/api/v1/categories/{a_cat}/multipliers/{a_mult}", 404, {"factor": "9"}),
    Case(MULTIPLIER, "delete", "/api/v1/categories/{a_cat}/multipliers/{a_mult}", 404),
    # B's own category with A's multiplier id: the multiplier is looked up within B's category.
    Case(MULTIPLIER, "get", "/api/v1/categories/{b_cat}/multipliers/{a_mult}", 404),
    Case(MULTIPLIER, "patch", "/api/v1/categories/{b_cat}/multipliers/{a_mult}", 404, {"factor": "9"}),
    Case(MULTIPLIER, "delete", "/api/v1/categories/{b_cat}/multipliers/{a_mult}", 404),
    # Cohorts: codes and memberRefs are per tenant; A's cohort ids are unknown to B.
    Case("api/v1/cohorts", "get", "/api/v1/cohorts", 200),
    Case("api/v1/cohorts", "post", "/api/v1/cohorts", 201, {"name": "B's", "code": A_COHORT, "kind": "STATIC"}),
    Case(
        "api/v1/cohorts",
        "post",
        "/api/v1/cohorts",
        400,
        {"name": "B's", "code": "b-vips", "kind": "STATIC", "memberRefs": [A_REF]},
    ),
    Case(COHORT, "get", "/api/v1/cohorts/{a_cohort}", 404),
    Case(COHORT + ":recompute", "post", "/api/v1/cohorts/{a_cohort}:recompute", 404),
    Case(COHORT + "/runs", "get", "/api/v1/cohorts/{a_cohort}/runs", 404),
    # Campaigns: A's campaign ids are unknown to B, and so are A's action codes and coupon pools.
    Case("api/v1/campaigns", "post", "/api/v1/campaigns", 201, B_CAMPAIGN),
    Case(
        "api/v1/campaigns",
        "post",
        "/api/v1/campaigns",
        400,
        {
            **B_CAMPAIGN,
            "ruleJson": {**B_CAMPAIGN["ruleJson"], "trigger": {"eventTypes": ["action"], "actionCodes": [A_ACTION]}},
        },
    ),
    Case(
        "api/v1/campaigns",
        "post",
        "/api/v1/campaigns",
        400,
        {
            **B_CAMPAIGN,
            "ruleJson": {"trigger": {"eventTypes": ["action"]}, "reward": {"type": "COUPON", "pool": A_POOL}},
        },
    ),
    Case("api/v1/campaigns/rule-schema", "get", "/api/v1/campaigns/rule-schema", 200),
    Case(CAMPAIGN, "get", "/api/v1/campaigns/{a_campaign}", 404),
    Case(CAMPAIGN, "put", "/api/v1/campaigns/{a_campaign}", 404, B_CAMPAIGN),
    Case(CAMPAIGN + ":activate", "post", "/api/v1/campaigns/{a_campaign}:activate", 404),
    Case(CAMPAIGN + ":pause", "post", "/api/v1/campaigns/{a_campaign}:pause", 404),
    Case(CAMPAIGN + ":end", "post", "/api/v1/campaigns/{a_campaign}:end", 404),
    Case("api/v1/tenants/<uuid:tenant_id>/campaigns", "get", "/api/v1/tenants/{a_tenant}/campaigns", 404),
    Case(
        "api/v1/tenants/<uuid:tenant_id>/campaigns",
        "get",
        "/api/v1/tenants/{b_tenant}/campaigns?action=" + A_ACTION,
        200,
    ),
    Case("api/v1/actions", "get", "/api/v1/actions", 200),
    Case("api/v1/actions", "post", "/api/v1/actions", 201, {"code": A_ACTION, "description": "B's"}),
    Case("api/v1/coupon-pools", "post", "/api/v1/coupon-pools", 201, {"code": A_POOL, "name": "B's"}),
    Case(
        "api/v1/coupon-pools/<slug:code>/codes", "post", f"/api/v1/coupon-pools/{A_POOL}/codes", 404, {"codes": ["B"]}
    ),
    Case("api/v1/members/<str:member_ref>/incentives", "get", "/api/v1/members/{a_ref}/incentives", 404),
    Case("api/v1/me/incentives", "get", "/api/v1/me/incentives", 200, caller="b_token"),
    # A member app of tenant B sees only its own member.
    Case("api/v1/me", "get", "/api/v1/me", 200, caller="b_token"),
    Case("api/v1/me/transfers", "get", "/api/v1/me/transfers", 200, caller="b_token"),
    Case("api/v1/me", "get", "/api/v1/me", 403),
    Case("api/v1/me/notifications", "get", "/api/v1/me/notifications", 200, caller="b_token"),
    Case("api/v1/me/notifications", "get", "/api/v1/me/notifications?after={a_event}", 404, caller="b_token"),
    Case("api/v1/me/notifications", "get", "/api/v1/me/notifications", 403),
    # insights
    Case("api/v1/members/<str:member_ref>/insights", "get", "/api/v1/members/{a_ref}/insights", 404),
    Case("api/v1/me/insights", "get", "/api/v1/me/insights", 200, caller="b_token"),
    Case("api/v1/me/insights", "get", "/api/v1/me/insights", 403),
    Case("api/v1/members/<str:member_ref>/recommendations", "get", "/api/v1/members/{a_ref}/recommendations", 404),
    Case("api/v1/me/recommendations", "get", "/api/v1/me/recommendations", 200, caller="b_token"),
    Case("api/v1/me/recommendations", "get", "/api/v1/me/recommendations", 403),
    Case("api/v1/ai/recommendation", "post", "/api/v1/ai/recommendation", 404, {"memberRef": A_REF}),
    Case("api/v1/ai/recommendation", "post", "/api/v1/ai/recommendation", 200, {}, caller="b_token"),
    Case("api/v1/exports/transfers", "get", "/api/v1/exports/transfers", 200),
    Case("api/v1/exports/incentives", "get", "/api/v1/exports/incentives", 200),
    Case("api/v1/exports/transfers", "get", "/api/v1/exports/transfers", 403, caller="b_token"),
    Case("api/v1/insights/program", "get", "/api/v1/insights/program", 200),
    Case("api/v1/insights/program", "get", "/api/v1/insights/program", 403, caller="b_token"),
    # Events name members and events in the caller's own namespace: A's memberRef from B's key
    # enrols a member of B, and A's eventId is unknown to B.
    Case(
        "api/v1/events",
        "post",
        "/api/v1/events",
        201,
        {
            "type": "transaction.created",
            "eventId": "a-purchase-1",
            "memberRef": A_REF,
            "amount": "10.00",
            "currency": "USD",
        },
    ),
    Case(
        "api/v1/events",
        "post",
        "/api/v1/events",
        422,
        {"type": "transaction.refunded", "eventId": "b-refund-1", "originalEventId": "a-purchase-1"},
    ),
    Case(
        "api/v1/events:batch",
        "post",
        "/api/v1/events:batch",
        200,
        {"events": [{"type": "transaction.refunded", "eventId": "b-refund-2", "originalEventId": "a-purchase-1"}]},
    ),
    # Webhooks: A's endpoint and delivery ids are unknown to B, even under B's own endpoint.
    Case("api/v1/webhooks", "get", "/api/v1/webhooks", 200),
    Case("api/v1/webhooks", "post", "/api/v1/webhooks", 201, {"url": "http://127.0.0.1:9/b", "eventTypes": ["*"]}),
    Case("api/v1/webhooks", "get", "/api/v1/webhooks", 403, caller="b_token"),
    Case(WEBHOOK, "get", "/api/v1/webhooks/{a_webhook}", 404),
    Case(WEBHOOK, "patch", "/api/v1/webhooks/{a_webhook}", 404, {"url": "http://127.0.0.1:9/hijack"}),
    Case(WEBHOOK, "delete", "/api/v1/webhooks/{a_webhook}", 404),
    Case(WEBHOOK + ":rotate-secret", "post", "/api/v1/webhooks/{a_webhook}:rotate-secret", 404),
    Case(WEBHOOK + ":replay-dead-letters", "post", "/api/v1/webhooks/{a_webhook}:replay-dead-letters", 404),
    Case(WEBHOOK + "/deliveries", "get", "/api/v1/webhooks/{a_webhook}/deliveries", 404),
    Case(
        WEBHOOK + "/deliveries/<uuid:delivery_id>:replay",
        "post",
        "/api/v1/webhooks/{a_webhook}/deliveries/{a_delivery}:replay",
        404,
    ),
    Case(
        WEBHOOK + "/deliveries/<uuid:delivery_id>:replay",
        "post",
        "/api/v1/webhooks/{b_webhook}/deliveries/{a_delivery}:replay",
        404,
    ),
    # The event log is the caller's own; A's event ids are unknown to B, and members have none.
    Case("api/v1/events/outbound", "get", "/api/v1/events/outbound", 200),
    Case("api/v1/events/outbound", "get", "/api/v1/events/outbound?after={a_event}", 404),
    Case("api/v1/events/outbound", "get", "/api/v1/events/outbound", 403, caller="b_token"),
    # Simulations read only the caller's own events.
    Case(
        "api/v1/simulations",
        "post",
        "/api/v1/simulations",
        200,
        {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", "changes": {"earnRate": "2"}},
    ),
    # VIP tiers: tierIds are per tenant, so B's lists, creations and policy are B's own.
    Case("api/v1/tiers", "get", "/api/v1/tiers", 200),
    Case("api/v1/tiers", "get", "/api/v1/tiers", 200, caller="b_token"),
    Case("api/v1/tiers", "post", "/api/v1/tiers", 201, {"tierId": A_TIER, "names": {"en": "B's gold"}}),
    Case(TIER, "get", f"/api/v1/tiers/{A_TIER}", 404),
    Case(TIER, "get", f"/api/v1/tiers/{A_TIER}", 404, caller="b_token"),
    Case(TIER, "put", f"/api/v1/tiers/{A_TIER}", 404, {"names": {"en": "Hijacked"}, "minPoints": 1}),
    Case(TIER, "patch", f"/api/v1/tiers/{A_TIER}", 404, {"minPoints": 1}),
    Case("api/v1/tier-policy", "get", "/api/v1/tier-policy", 200),
    Case("api/v1/tier-policy", "put", "/api/v1/tier-policy", 200, {"qualification": "ROLLING", "windowMonths": 1}),
    # Catalog: category codes and skus are per tenant; A's item ids are unknown to B.
    Case("api/v1/catalog/categories", "get", "/api/v1/catalog/categories", 200),
    Case("api/v1/catalog/categories", "get", "/api/v1/catalog/categories", 200, caller="b_token"),
    Case("api/v1/catalog/categories", "post", "/api/v1/catalog/categories", 201, {"code": A_SHELF, "name": "B's"}),
    Case(CATALOG_CATEGORY, "get", f"/api/v1/catalog/categories/{A_SHELF}", 404),
    Case(CATALOG_CATEGORY, "patch", f"/api/v1/catalog/categories/{A_SHELF}", 404, {"name": "Hijacked"}),
    Case("api/v1/catalog/items", "get", "/api/v1/catalog/items", 200),
    Case("api/v1/catalog/items", "get", "/api/v1/catalog/items", 200, caller="b_token"),
    Case("api/v1/catalog/items", "get", "/api/v1/catalog/items?memberRef={a_ref}&affordable=true", 404),
    Case("api/v1/catalog/items", "post", "/api/v1/catalog/items", 201, {"sku": "A-1", "name": "B's", "pointCost": 1}),
    Case(
        "api/v1/catalog/items",
        "post",
        "/api/v1/catalog/items",
        400,
        {"name": "B's", "pointCost": 1, "category": A_SHELF},
    ),
    Case("api/v1/catalog/search", "get", "/api/v1/catalog/search?q=gadget", 200),
    Case("api/v1/catalog/search", "get", "/api/v1/catalog/search?q=gadget", 200, caller="b_token"),
    Case(CATALOG_ITEM, "get", "/api/v1/catalog/items/{a_item}", 404),
    Case(CATALOG_ITEM, "get", "/api/v1/catalog/items/{a_item}", 404, caller="b_token"),
    Case(
        CATALOG_ITEM, "put", "/api/v1/catalog/items/{a_item}", 404, {"name": "Hijacked", "pointCost": 1, "version": 1}
    ),
    Case(CATALOG_ITEM, "patch", "/api/v1/catalog/items/{a_item}", 404, {"pointCost": 1, "version": 1}),
    Case(CATALOG_ITEM, "delete", "/api/v1/catalog/items/{a_item}", 404),
    Case(STOCK, "get", "/api/v1/catalog/items/{a_item}/stock-movements", 404),
    Case(STOCK, "post", "/api/v1/catalog/items/{a_item}/stock-movements", 404, {"kind": "ADJUST", "quantity": -5}),
    # Credit packages: codes are per tenant; A's package and purchase ids are unknown to B, so
    # B can neither buy A's package nor buy anything for A's member.
    Case("api/v1/credit-packages", "get", "/api/v1/credit-packages", 200),
    Case("api/v1/credit-packages", "get", "/api/v1/credit-packages", 200, caller="b_token"),
    Case(
        "api/v1/credit-packages",
        "post",
        "/api/v1/credit-packages",
        201,
        {"code": A_PACK, "name": "B's", "price": "1.00", "rewardPoints": 10},
    ),
    Case(PACKAGE, "get", "/api/v1/credit-packages/{a_package}", 404),
    Case(PACKAGE, "get", "/api/v1/credit-packages/{a_package}", 404, caller="b_token"),
    Case(PACKAGE, "patch", "/api/v1/credit-packages/{a_package}", 404, {"rewardPoints": 99999}),
    Case(PURCHASES, "get", "/api/v1/credit-purchases", 200),
    Case(PURCHASES, "get", "/api/v1/credit-purchases?memberRef={a_ref}", 404),
    Case(PURCHASES, "get", "/api/v1/credit-purchases", 200, caller="b_token"),
    Case(
        PURCHASES,
        "post",
        "/api/v1/credit-purchases",
        404,
        {"packageId": "{a_package}", "paymentToken": "tok_approve", "memberRef": B_REF},
        headers=IDEMPOTENT,
    ),
    Case(
        PURCHASES,
        "post",
        "/api/v1/credit-purchases",
        404,
        {"packageId": "{a_package}", "paymentToken": "tok_approve"},
        caller="b_token",
        headers=IDEMPOTENT,
    ),
    Case(PURCHASE, "get", "/api/v1/credit-purchases/{a_purchase}", 404),
    Case(PURCHASE, "get", "/api/v1/credit-purchases/{a_purchase}", 404, caller="b_token"),
    Case(REDEMPTIONS, "get", "/api/v1/redemptions", 200),
    Case(REDEMPTIONS, "get", "/api/v1/redemptions?memberRef={a_ref}", 404),
    Case(REDEMPTIONS, "get", "/api/v1/redemptions", 200, caller="b_token"),
    Case(
        REDEMPTIONS, "post", "/api/v1/redemptions", 404, {"itemId": "{a_item}", "memberRef": B_REF}, headers=IDEMPOTENT
    ),
    Case(REDEMPTIONS, "post", "/api/v1/redemptions", 404, {"itemId": "{a_item}"}, caller="b_token", headers=IDEMPOTENT),
    Case(
        REDEMPTIONS, "post", "/api/v1/redemptions", 404, {"itemId": "{a_item}", "memberRef": A_REF}, headers=IDEMPOTENT
    ),
    Case(REDEMPTION, "get", "/api/v1/redemptions/{a_redemption}", 404),
    Case(REDEMPTION, "get", "/api/v1/redemptions/{a_redemption}", 404, caller="b_token"),
    Case(REDEMPTION_CANCEL, "post", "/api/v1/redemptions/{a_redemption}:cancel", 404, {}),
    Case(REDEMPTION_CANCEL, "post", "/api/v1/redemptions/{a_redemption}:cancel", 404, {}, caller="b_token"),
]


def api_routes() -> dict[str, set[str]]:
    """Every route under api/v1/ with the HTTP methods its view handles."""
    routes: dict[str, set[str]] = {}

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
                view = getattr(pattern.callback, "view_class", None)
                assert view is not None, f"{route} is not a class-based view; list its methods by hand"
                routes[route] = {m for m in METHODS if hasattr(view, m)}

    walk(get_resolver().url_patterns, "")
    return routes


def test_every_api_route_is_in_the_table():
    routes = api_routes()
    served = {(route, method) for route, methods in routes.items() for method in methods}
    tabled = {(case.route, case.method) for case in CASES}

    assert routes, "no routes found under api/v1/"
    assert not served - tabled, f"add these to the tenant isolation table: {sorted(served - tabled)}"
    assert not tabled - served, f"the table names routes the API does not serve: {sorted(tabled - served)}"


def client_with(**credentials) -> APIClient:
    client = APIClient()
    client.credentials(**credentials)
    return client


@pytest.fixture
def world(tenant, other_tenant, settings):
    """Tenant A with a member holding points, a member limit and an API key; tenant B with
    its own member and a token for it."""
    a_member = MemberFactory(tenant=tenant, external_ref=A_REF, attributes={"tier": "gold"})
    services.points_adjust(tenant=tenant, member=a_member, points=95, reason="seed", actor="test")
    limit_upsert(tenant=tenant, scope="USER", member_ref=A_REF, max_per_day=10)
    b_member = MemberFactory(tenant=other_tenant, external_ref=B_REF)
    services.points_adjust(tenant=other_tenant, member=b_member, points=7, reason="b seed", actor="test")
    b_token, _ = services.member_token_issue(member=b_member)
    a_category = categories.category_create(tenant=tenant, code=A_CAT, name="A's dining", mcc_codes=["5812"])
    a_multiplier = categories.multiplier_create(tenant=tenant, category=a_category, factor=Decimal("2"))
    categories.category_create(tenant=other_tenant, code=B_CAT, name="B's travel")
    tier_services.tier_create(tenant=tenant, tier_id=A_TIER, names={"en": "A's gold"}, min_points=1000)
    tier_services.tier_policy_update(tenant=tenant, qualification="LIFETIME", downgrade_grace_days=7)
    catalog_services.category_create(tenant=tenant, code=A_SHELF, name="A's gadgets")
    a_item = catalog_services.item_create(
        tenant=tenant, sku="A-1", name="A's gadget", point_cost=10, category=A_SHELF, stock_quantity=5
    )
    a_package = credit.credit_package_create(
        tenant=tenant, code=A_PACK, name="A's pack", price=Decimal("4.99"), reward_points=500
    )
    a_purchase = CreditPurchase.objects.create(
        tenant=tenant, member=a_member, package=a_package, amount_paid="4.99", currency="USD", points_awarded=500
    )
    a_partner = CatalogPartner.objects.create(tenant=tenant, code="a-partner", name="A's partner")
    PartnerConfig.objects.create(
        tenant=tenant, partner=a_partner, base_url="http://127.0.0.1:9", enabled_kinds=["MERCHANDISE"]
    )
    a_redemption, _ = redemption_request(tenant=tenant, member=a_member, item_id=a_item.pk)
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # nothing is delivered: the endpoints only need to exist
    a_webhook = webhook_endpoint_create(tenant=tenant, url="http://127.0.0.1:9/a", description="A's")
    b_webhook = webhook_endpoint_create(tenant=other_tenant, url="http://127.0.0.1:9/b")
    webhook_deliveries_enqueue(
        tenant_id=tenant.pk,
        envelope={"eventId": "00000000-0000-0000-0000-00000000000a", "type": "points.credited", "position": 1},
    )
    a_delivery = WebhookDelivery.objects.get(endpoint=a_webhook)
    WebhookDelivery.objects.filter(pk=a_delivery.pk).update(status=WebhookDelivery.Status.DEAD_LETTERED)
    a_cohort = cohort_create(tenant=tenant, name="A's VIPs", code=A_COHORT, kind="STATIC", member_refs=[A_REF])
    action_upsert(tenant=tenant, code=A_ACTION, description="A's")
    coupon_codes_add(tenant=tenant, pool=coupon_pool_create(tenant=tenant, code=A_POOL, name="A's"), codes=["A-1"])
    a_campaign = campaign_create(
        tenant=tenant,
        name="A's",
        type="SIMPLE",
        start_at=datetime(2030, 1, 1, tzinfo=UTC),
        rule_json={
            "trigger": {"eventTypes": ["action"], "actionCodes": [A_ACTION]},
            "reward": {"type": "COUPON", "pool": A_POOL},
        },
    )
    campaign_activate(tenant=tenant, campaign=a_campaign)
    Incentive.objects.create(
        tenant=tenant,
        campaign=a_campaign,
        member=a_member,
        type="POINTS",
        reward_currency="POINTS",
        reward_amount=Decimal(10),
        event_id="a-action-1",
        issued_at=datetime(2030, 1, 2, tzinfo=UTC),
    )
    purchase = {"type": "transaction.created", "event_id": "a-purchase-1", "member_ref": A_REF}
    # 95 adjusted + 5 earned: A's member holds 100 points
    event_ingest(tenant=tenant, event={**purchase, "amount": Decimal("5.00"), "currency": "USD", "occurred_at": None})
    return SimpleNamespace(
        a=tenant,
        b=other_tenant,
        a_member=a_member,
        b_member=b_member,
        a_key=ApiKey.objects.get(tenant=tenant),
        a_multiplier=a_multiplier,
        a_cohort=a_cohort,
        a_campaign=a_campaign,
        a_item=a_item,
        a_package=a_package,
        a_purchase=a_purchase,
        a_redemption=a_redemption,
        a_webhook=a_webhook,
        b_webhook=b_webhook,
        a_delivery=a_delivery,
        a_client=client_with(HTTP_X_API_KEY=tenant.raw_api_key),
        callers={
            "b_key": client_with(HTTP_X_API_KEY=other_tenant.raw_api_key),
            "b_token": client_with(HTTP_AUTHORIZATION=f"Bearer {b_token}"),
        },
    )


def tenant_state(tenant) -> dict:
    return {
        "tenant": (tenant.slug, tenant.name, tenant.status),
        "members": list(
            Member.objects.filter(tenant=tenant)
            .order_by("external_ref")
            .values_list("external_ref", "status", "locale", "attributes")
        ),
        "balances": list(Account.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "balance")),
        "transfers": Transfer.objects.filter(tenant=tenant).count(),
        "limits": list(
            Limit.objects.filter(tenant=tenant)
            .order_by("scope", "member_ref")
            .values_list("scope", "member_ref", "max_per_day", "max_total", "window_days")
        ),
        "keys": list(ApiKey.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "revoked_at")),
        "categories": list(
            SpendCategory.objects.filter(tenant=tenant)
            .order_by("pk")
            .values_list("code", "name", "parent", "mcc_codes")
        ),
        "multipliers": list(
            Multiplier.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "category", "factor", "version")
        ),
        "outbox": OutboxEvent.objects.filter(tenant=tenant).count(),
        "events": list(InboundEvent.objects.filter(tenant=tenant).order_by("pk").values_list("event_id", "status")),
        "cohorts": list(
            Cohort.objects.filter(tenant=tenant).order_by("code").values_list("code", "name", "member_count")
        ),
        "cohort_members": CohortMember.objects.filter(tenant=tenant).count(),
        "cohort_runs": CohortRun.objects.filter(tenant=tenant).count(),
        "campaigns": list(
            Campaign.objects.filter(tenant=tenant)
            .order_by("pk")
            .values_list("pk", "name", "status", "version", "rule_json", "activated_at", "ended_at")
        ),
        "actions": list(Action.objects.filter(tenant=tenant).order_by("code").values_list("code", "description")),
        "coupon_codes": list(CouponCode.objects.filter(tenant=tenant).order_by("code").values_list("code", flat=True)),
        "incentives": Incentive.objects.filter(tenant=tenant).count(),
        "tiers": list(
            Tier.objects.filter(tenant=tenant)
            .order_by("tier_id")
            .values_list("tier_id", "names", "min_points", "benefits", "version")
        ),
        "catalog_categories": list(
            CatalogCategory.objects.filter(tenant=tenant).order_by("code").values_list("code", "name", "is_active")
        ),
        "catalog_items": list(
            CatalogItem.objects.filter(tenant=tenant)
            .order_by("pk")
            .values_list("pk", "sku", "name", "point_cost", "stock_quantity", "is_active", "version")
        ),
        "stock_movements": StockMovement.objects.filter(tenant=tenant).count(),
        "webhooks": list(
            WebhookEndpoint.objects.filter(tenant=tenant)
            .order_by("pk")
            .values_list("pk", "url", "secret", "is_active", "description")
        ),
        "webhook_deliveries": list(
            WebhookDelivery.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "status", "attempts")
        ),
        "credit_packages": list(
            CreditPackage.objects.filter(tenant=tenant)
            .order_by("code")
            .values_list("code", "name", "price", "reward_points", "is_active")
        ),
        "credit_purchases": list(
            CreditPurchase.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "status", "transfer")
        ),
        "redemptions": list(
            Redemption.objects.filter(tenant=tenant).order_by("pk").values_list("pk", "status", "points")
        ),
        "tier_policy": list(
            TierPolicy.objects.filter(tenant=tenant).values_list(
                "qualification", "window_months", "downgrade_grace_days"
            )
        ),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_another_tenants_ids_are_not_found_and_nothing_changes(world, case):
    # given tenant A's state
    before = tenant_state(world.a)
    path = case.path.format(
        a_tenant=world.a.pk,
        b_tenant=world.b.pk,
        a_ref=A_REF,
        a_key=world.a_key.pk,
        a_cat=A_CAT,
        b_cat=B_CAT,
        a_mult=world.a_multiplier.pk,
        a_cohort=world.a_cohort.pk,
        a_campaign=world.a_campaign.pk,
        a_item=world.a_item.pk,
        a_package=world.a_package.pk,
        a_purchase=world.a_purchase.pk,
        a_redemption=world.a_redemption.pk,
        a_webhook=world.a_webhook.pk,
        b_webhook=world.b_webhook.pk,
        a_delivery=world.a_delivery.pk,
        a_event=OutboxEvent.objects.filter(tenant=world.a).order_by("position").first().pk,
    )
    # bodies may name A's ids too
    body = (
        None
        if case.body is None
        else json.loads(
            json.dumps(case.body)
            .replace("{a_package}", str(world.a_package.pk))
            .replace("{a_item}", str(world.a_item.pk))
        )
    )

    # when tenant B calls with A's ids
    headers = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in case.headers}
    response = world.callers[case.caller].generic(
        case.method.upper(), path, "" if body is None else json.dumps(body), content_type="application/json", **headers
    )

    # then it gets a 404 (or its own data), never a sight of A's
    if case.status >= 400:
        assert_error(response, case.status)
    else:
        assert response.status_code == case.status, response.json()
    content = response.content.decode()
    secrets = (world.a.pk, world.a_member.pk, world.a_key.pk, world.a_cohort.pk, world.a_campaign.pk, world.a_item.pk)
    others = (
        world.a_purchase.pk,
        world.a_redemption.pk,
        world.a_webhook.pk,
        world.a_delivery.pk,
        world.a_webhook.secret,
    )
    for secret in (*secrets, *others):
        assert str(secret) not in content

    # and nothing in tenant A changed, and its key still works
    assert tenant_state(world.a) == before
    assert world.a_client.get(f"/api/v1/members/{A_REF}").json()["balance"] == 90  # 100 less A's redemption


@pytest.mark.django_db
def test_member_lists_show_only_the_callers_own_tenant(world):
    listed = world.callers["b_key"].get("/api/v1/members").json()

    assert [m["memberRef"] for m in listed["results"]] == [B_REF]
    assert listed["count"] == 1


@pytest.mark.django_db
def test_the_same_member_ref_in_two_tenants_is_two_members(world):
    # given tenant B creates a member with A's memberRef
    created = world.callers["b_key"].post("/api/v1/members", {"memberRef": A_REF}, format="json")
    assert created.status_code == 201, created.json()

    # when B adjusts it
    adjusted = world.callers["b_key"].post(
        f"/api/v1/members/{A_REF}/adjustments", {"points": 3, "reason": "b"}, format="json"
    )

    # then B's member moved and A's did not
    assert adjusted.status_code == 201, adjusted.json()
    assert adjusted.json()["balance"] == 3
    assert created.json()["id"] != str(world.a_member.pk)
    assert selectors.member_get(tenant=world.a, external_ref=A_REF).balance == 90
    assert selectors.member_get(tenant=world.b, external_ref=A_REF).balance == 3


@pytest.mark.django_db
def test_a_member_token_of_one_tenant_cannot_see_another_tenants_member(world):
    app = world.callers["b_token"]

    # its own profile and ledger are B's member's
    me = app.get("/api/v1/me").json()
    assert me["memberRef"] == B_REF
    assert me["balance"] == 7
    reasons = [t["reason"] for t in app.get("/api/v1/me/transfers").json()["results"]]
    assert reasons == ["b seed"]

    # and A's member cannot be reached with it, no differently from a member who does not exist
    to_a = app.get(f"/api/v1/members/{A_REF}")
    to_nobody = app.get("/api/v1/members/nobody")
    assert_error(to_a, 403)
    assert to_a.status_code == to_nobody.status_code
    assert to_a.json()["errors"] == to_nobody.json()["errors"]
    assert_error(app.post(f"/api/v1/members/{A_REF}/token"), 403)


@pytest.mark.django_db
def test_tier_lists_show_only_the_callers_own_tenant(world):
    listed = world.callers["b_key"].get("/api/v1/tiers").json()

    assert listed["results"] == []
    assert world.a_client.get("/api/v1/tiers").json()["results"][0]["tierId"] == A_TIER


@pytest.mark.django_db
def test_category_lists_show_only_the_callers_own_tenant(world):
    listed = world.callers["b_key"].get("/api/v1/categories").json()

    assert [c["code"] for c in listed["results"]] == [B_CAT]
    assert listed["count"] == 1
