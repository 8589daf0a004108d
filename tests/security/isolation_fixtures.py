"""Two tenants for the schema-driven isolation suite (tests/security/test_isolation_from_schema.py):
each holds one row of every kind the API names by id, built through the services, with every
name, code and memberRef of a tenant carrying its tag ("alpha" or "bravo"), so that a response
to tenant A showing anything of tenant B's is found by searching it for "bravo"."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection

from campaigns.cohorts import cohort_create
from campaigns.models import Incentive
from campaigns.services import action_upsert, campaign_activate, campaign_create, coupon_codes_add, coupon_pool_create
from catalog import services as catalog_services
from catalog.models import Partner as CatalogPartner
from core import rls
from redemptions.models import PartnerConfig
from redemptions.services import redemption_request
from rewards import categories, credit, services
from rewards.earning import event_ingest
from rewards.models import CreditPurchase, OutboxEvent
from tenants.models import Tenant, WebhookDelivery
from tenants.services import api_key_create, limit_upsert
from tenants.webhooks import webhook_deliveries_enqueue, webhook_endpoint_create
from tests.factories import MemberFactory, TenantFactory
from tiers import services as tier_services


@dataclass
class World:
    """One tenant's rows, by the names the API's path parameters give them."""

    tag: str
    tenant: Tenant
    raw_api_key: str
    member: object
    member_token: str
    ids: dict = field(default_factory=dict)  # path parameter kind -> this tenant's value
    secrets: tuple = ()  # values of this tenant's that never contain the tag

    def __getitem__(self, kind: str):
        return self.ids[kind]


def populate(tag: str) -> World:
    """A tenant tagged `tag` with a member holding points and one of everything else."""
    tenant = TenantFactory(name=f"{tag.title()} Merchant", slug=f"{tag}-merchant")
    ref = f"{tag}-member"
    member = MemberFactory(tenant=tenant, external_ref=ref, attributes={"nickname": f"{tag}-nick"})
    services.points_adjust(tenant=tenant, member=member, points=500, reason=f"{tag} seed", actor="test")
    limit_upsert(tenant=tenant, scope="USER", member_ref=ref, max_per_day=10)
    token, _ = services.member_token_issue(member=member)
    second_key = api_key_create(tenant=tenant, name=f"{tag}-second-key").api_key

    category = categories.category_create(tenant=tenant, code=f"{tag}-dining", name=f"{tag} dining", mcc_codes=["5812"])
    multiplier = categories.multiplier_create(tenant=tenant, category=category, factor=Decimal("2"))
    tier_services.tier_create(tenant=tenant, tier_id=f"{tag}-gold", names={"en": f"{tag} gold"}, min_points=1000)
    tier_services.tier_policy_update(tenant=tenant, qualification="LIFETIME", downgrade_grace_days=7)

    catalog_services.category_create(tenant=tenant, code=f"{tag}-shelf", name=f"{tag} shelf")
    item = catalog_services.item_create(
        tenant=tenant,
        sku=f"{tag}-sku-1",
        name=f"{tag} gadget",
        point_cost=10,
        category=f"{tag}-shelf",
        stock_quantity=5,
    )
    package = credit.credit_package_create(
        tenant=tenant, code=f"{tag}-pack", name=f"{tag} pack", price=Decimal("4.99"), reward_points=500
    )
    purchase = CreditPurchase.objects.create(
        tenant=tenant, member=member, package=package, amount_paid="4.99", currency="USD", points_awarded=500
    )
    partner = CatalogPartner.objects.create(tenant=tenant, code=f"{tag}-partner", name=f"{tag} partner")
    PartnerConfig.objects.create(
        tenant=tenant, partner=partner, base_url="http://127.0.0.1:9", enabled_kinds=["MERCHANDISE"]
    )
    redemption, _ = redemption_request(tenant=tenant, member=member, item_id=item.pk)

    webhook = webhook_endpoint_create(tenant=tenant, url=f"http://127.0.0.1:9/{tag}", description=f"{tag} hook")
    webhook_deliveries_enqueue(
        tenant_id=tenant.pk,
        envelope={"eventId": f"{tag}-envelope", "type": "points.credited", "position": 1},
    )
    delivery = WebhookDelivery.objects.get(endpoint=webhook)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.DEAD_LETTERED)

    cohort = cohort_create(tenant=tenant, name=f"{tag} vips", code=f"{tag}-vips", kind="STATIC", member_refs=[ref])
    action_upsert(tenant=tenant, code=f"{tag}.login", description=f"{tag} login")
    pool = coupon_pool_create(tenant=tenant, code=f"{tag}-pool", name=f"{tag} pool")
    coupon_codes_add(tenant=tenant, pool=pool, codes=[f"{tag}-coupon-1"])
    campaign = campaign_create(
        tenant=tenant,
        name=f"{tag} campaign",
        type="SIMPLE",
        start_at=datetime(2030, 1, 1, tzinfo=UTC),
        rule_json={
            "trigger": {"eventTypes": ["action"], "actionCodes": [f"{tag}.login"]},
            "reward": {"type": "COUPON", "pool": f"{tag}-pool"},
        },
    )
    campaign_activate(tenant=tenant, campaign=campaign)
    Incentive.objects.create(
        tenant=tenant,
        campaign=campaign,
        member=member,
        type="POINTS",
        reward_currency="POINTS",
        reward_amount=Decimal(10),
        event_id=f"{tag}-action-1",
        issued_at=datetime(2030, 1, 2, tzinfo=UTC),
    )
    event_ingest(
        tenant=tenant,
        event={
            "type": "transaction.created",
            "event_id": f"{tag}-purchase-1",
            "member_ref": ref,
            "amount": Decimal("5.00"),
            "currency": "USD",
            "occurred_at": None,
        },
    )
    outbound = OutboxEvent.objects.filter(tenant=tenant, member_ref=ref).order_by("position").first()
    return World(
        tag=tag,
        tenant=tenant,
        raw_api_key=tenant.raw_api_key,
        member=member,
        member_token=token,
        ids={
            "tenant_id": str(tenant.pk),
            "member_ref": ref,
            "key_id": str(second_key.pk),
            "category_code": category.code,
            "multiplier_id": str(multiplier.pk),
            "tier_id": f"{tag}-gold",
            "shelf_code": f"{tag}-shelf",
            "item_id": str(item.pk),
            "package_id": str(package.pk),
            "purchase_id": str(purchase.pk),
            "redemption_id": str(redemption.pk),
            "webhook_id": str(webhook.pk),
            "delivery_id": str(delivery.pk),
            "cohort_id": str(cohort.pk),
            "campaign_id": str(campaign.pk),
            "action_code": f"{tag}.login",
            "pool_code": f"{tag}-pool",
            "partner_code": partner.code,
            "outbound_event_id": str(outbound.event_id),
            "inbound_event_id": f"{tag}-purchase-1",
            # a window around the events above, for reports over a period
            "since": (datetime.now(UTC) - timedelta(days=30)).isoformat().replace("+00:00", "Z"),
            "until": (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        },
        secrets=(tenant.raw_api_key, webhook.secret, str(member.pk)),
    )


def _uuid_columns() -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type = 'uuid' AND table_name = ANY(%s)",
            [rls.tenant_tables()],
        )
        columns: dict[str, list[str]] = {}
        for table, column in cursor.fetchall():
            columns.setdefault(table, []).append(column)
    return columns


def uuids_of(tenant: Tenant) -> set[str]:
    """Every UUID held in the tenant's rows of every tenant table (ids, references, event ids)."""
    found = {str(tenant.pk)}
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table, columns in _uuid_columns().items():
            cursor.execute(
                f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table)} WHERE tenant_id = %s",
                [tenant.pk],
            )
            found.update(str(value) for row in cursor.fetchall() for value in row if value is not None)
    return found


def tenant_snapshot(tenant: Tenant) -> dict[str, tuple[int, str | None]]:
    """Per tenant table, the tenant's row count and a checksum of the rows' every column
    (balances included), and the tenant's own row."""
    quote = connection.ops.quote_name
    snapshot = {}
    with connection.cursor() as cursor:
        for table in rls.tenant_tables():
            cursor.execute(
                f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {quote(table)} t "
                "WHERE tenant_id = %s",
                [tenant.pk],
            )
            snapshot[table] = cursor.fetchone()
        cursor.execute(f"SELECT t::text FROM {quote(Tenant._meta.db_table)} t WHERE id = %s", [tenant.pk])
        snapshot["tenant"] = cursor.fetchone()
    return snapshot
