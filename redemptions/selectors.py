"""Reads of redemptions, always scoped by tenant (and by member for a member's app)."""

from datetime import datetime, timedelta

from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from core.ids import uuid_or_none
from redemptions.exceptions import RedemptionNotFound
from redemptions.models import FulfilmentAttempt, PartnerConfig, Redemption
from rewards.models import Member
from tenants.models import Tenant


def redemption_list(
    *,
    tenant: Tenant,
    member: Member | None = None,
    status: str | None = None,
    item_id=None,
    partner: str | None = None,
    older_than: datetime | None = None,
) -> QuerySet[Redemption]:
    """Newest first."""
    redemptions = Redemption.objects.filter(tenant=tenant).select_related("member", "item", "partner_config__partner")
    if member is not None:
        redemptions = redemptions.filter(member=member)
    if status:
        redemptions = redemptions.filter(status=status)
    if item_id is not None:
        redemptions = redemptions.filter(item_id=item_id)
    if partner:
        redemptions = redemptions.filter(partner_config__partner__code=partner)
    if older_than is not None:
        redemptions = redemptions.filter(created_at__lt=older_than)
    return redemptions.order_by("-created_at", "-id")


def redemption_get(*, tenant: Tenant, redemption_id, member: Member | None = None) -> Redemption:
    """The tenant's redemption (the member's own, when a member asks); else not found."""
    pk = uuid_or_none(redemption_id)
    redemption = redemption_list(tenant=tenant, member=member).filter(pk=pk).first() if pk else None
    if redemption is None:
        raise RedemptionNotFound(field="redemptionId")
    return redemption


def partner_health(*, config: PartnerConfig, window_minutes: int = 60) -> dict:
    """Calls made to the partner in the last `window_minutes`, by outcome, and the last failure."""
    since = timezone.now() - timedelta(minutes=window_minutes)
    attempts = FulfilmentAttempt.objects.filter(partner_config=config, at__gte=since)
    counts = attempts.aggregate(
        total=Count("id"),
        failed=Count("id", filter=~Q(outcome=FulfilmentAttempt.Outcome.OK)),
        last_failure=Max("at", filter=~Q(outcome=FulfilmentAttempt.Outcome.OK)),
    )
    recent = list(
        attempts.exclude(outcome=FulfilmentAttempt.Outcome.OK)
        .order_by("-at")
        .values("at", "operation", "outcome", "error", "redemption_id")[:10]
    )
    return {**counts, "recent_failures": recent, "window_minutes": window_minutes}
