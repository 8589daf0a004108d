from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from core.cache import TenantCache
from core.exceptions import NotFound
from core.ids import uuid_or_none
from tenants.models import ApiKey, Limit, Tenant, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tenants.services import api_key_hash


def tenant_get(*, tenant_id) -> Tenant:
    pk = uuid_or_none(tenant_id)
    tenant = Tenant.objects.filter(pk=pk).first() if pk else None
    if tenant is None:
        raise NotFound("Tenant not found.")
    return tenant


def api_key_get_by_raw(*, raw: str) -> ApiKey | None:
    return ApiKey.objects.select_related("tenant").filter(key_hash=api_key_hash(raw)).first()


def api_key_list(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant=tenant).order_by("-created_at")


def api_key_get(*, tenant: Tenant, key_id) -> ApiKey:
    pk = uuid_or_none(key_id)
    api_key = ApiKey.objects.filter(tenant=tenant, pk=pk).first() if pk else None
    if api_key is None:
        raise NotFound("API key not found.")
    return api_key


@dataclass(frozen=True)
class EffectiveLimit:
    scope: str
    max_per_day: int | None
    max_total: int | None
    window_days: int | None
    source: str  # "tenant", "member" or "none"
    member_ref: str = ""


def _effective(limit: Limit | None, *, scope: str, source: str, member_ref: str = "") -> EffectiveLimit:
    if limit is None:
        return EffectiveLimit(scope, None, None, None, "none", member_ref)
    return EffectiveLimit(scope, limit.max_per_day, limit.max_total, limit.window_days, source, member_ref)


# Every earning checks the limits, so the tenant's limit rows are cached (a committed write
# retires them, below); a tenant with more member overrides than this is read each time.
LIMITS_CACHE_TTL = 10 * 60
MAX_CACHED_LIMITS = 1000
LIMIT_FIELDS = ("scope", "member_ref", "max_per_day", "max_total", "window_days")
limits_cache = TenantCache("limits", ttl=lambda: LIMITS_CACHE_TTL)


def _limits_of(tenant: Tenant) -> list[Limit]:
    def load():
        rows = list(Limit.objects.filter(tenant=tenant).values_list(*LIMIT_FIELDS)[: MAX_CACHED_LIMITS + 1])
        return rows if len(rows) <= MAX_CACHED_LIMITS else None

    rows, _ = limits_cache.get_or_load(tenant_pk=tenant.pk, load=load)
    if rows is None:
        return list(Limit.objects.filter(tenant=tenant))
    return [Limit(tenant=tenant, **dict(zip(LIMIT_FIELDS, row, strict=True))) for row in rows]


@receiver([post_save, post_delete], sender=Limit)
def _limit_written(sender, instance, **kwargs) -> None:
    limits_cache.retire_on_commit(instance.tenant_id)


def limits_effective(*, tenant: Tenant, member_ref: str | None = None) -> dict[str, EffectiveLimit]:
    """The limits in force: tenant-wide, and per member (a member's override wins)."""
    limits = {(lim.scope, lim.member_ref): lim for lim in _limits_of(tenant)}
    result = {
        "global": _effective(limits.get(("GLOBAL", "")), scope="GLOBAL", source="tenant"),
        "user": _effective(limits.get(("USER", "")), scope="USER", source="tenant"),
    }
    if member_ref:
        override = limits.get(("USER", member_ref))
        if override is not None:
            result["user"] = _effective(override, scope="USER", source="member", member_ref=member_ref)
        else:
            result["user"] = EffectiveLimit(**{**result["user"].__dict__, "member_ref": member_ref})
    return result


# Webhooks --------------------------------------------------------------------------------


def webhook_endpoint_list(*, tenant: Tenant) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(tenant=tenant).order_by("-created_at", "-id")


def webhook_endpoint_get(*, tenant: Tenant, endpoint_id) -> WebhookEndpoint:
    pk = uuid_or_none(endpoint_id)
    endpoint = WebhookEndpoint.objects.filter(tenant=tenant, pk=pk).first() if pk else None
    if endpoint is None:
        raise NotFound("Webhook endpoint not found.")
    return endpoint


def webhook_delivery_list(
    *, tenant: Tenant, endpoint: WebhookEndpoint, status: str | None = None
) -> QuerySet[WebhookDelivery]:
    """The endpoint's delivery log, newest first, each with its attempts."""
    deliveries = WebhookDelivery.objects.filter(tenant=tenant, endpoint=endpoint)
    if status:
        deliveries = deliveries.filter(status=status)
    attempts = Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("at", "id"))
    return deliveries.prefetch_related(attempts).order_by("-created_at", "-id")


def webhook_delivery_get(*, tenant: Tenant, endpoint: WebhookEndpoint, delivery_id) -> WebhookDelivery:
    pk = uuid_or_none(delivery_id)
    delivery = webhook_delivery_list(tenant=tenant, endpoint=endpoint).filter(pk=pk).first() if pk else None
    if delivery is None:
        raise NotFound("Webhook delivery not found.")
    return delivery


def webhook_endpoints_due(*, now=None) -> list:
    """Ids of active endpoints (all tenants: the beat sweep) whose oldest PENDING delivery is due."""
    now = now or timezone.now()
    due = WebhookDelivery.objects.filter(endpoint=OuterRef("pk"), status="PENDING", next_attempt_at__lte=now)
    return list(WebhookEndpoint.objects.filter(is_active=True).filter(Exists(due)).values_list("pk", flat=True))
