"""The campaigns the incentive calculator reads: a tenant's ACTIVE campaigns, cached.

Cached per tenant (`campaigns:{tenant}:v1`, ten minutes) under a generation that every
committed campaign write replaces (a signal, after commit), so an edit, an activation or a
pause is seen by the next event. A value computed while a write was in flight is stored
under the generation the reader saw first, which the write has retired, and is never served.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from campaigns.models import Campaign, Cohort
from tenants.models import Tenant

logger = logging.getLogger(__name__)

CACHE_TTL = 10 * 60


@dataclass(frozen=True)
class CampaignRule:
    """A campaign as the calculator needs it: plain data, safe to cache."""

    id: str
    name: str
    type: str
    start_at: datetime
    end_at: datetime | None
    rule: dict
    cohort_id: str | None
    cohort_code: str | None
    priority: int
    stacking: str
    budget_rewards: int | None
    budget_amount: Decimal | None
    member_cap_rewards: int | None
    member_cap_amount: Decimal | None
    member_cap_period: str
    version: int

    def live_at(self, at: datetime) -> bool:
        return self.start_at <= at and (self.end_at is None or at < self.end_at)

    def triggered_by(self, event_type: str, action_code: str | None) -> bool:
        if self.type == Campaign.Type.QUEST:
            return any(_step_matches(step, event_type, action_code) for step in self.rule["quest"]["steps"])
        trigger = self.rule["trigger"]
        if event_type not in trigger["eventTypes"]:
            return False
        codes = trigger.get("actionCodes")
        return event_type != "action" or not codes or action_code in codes


def _step_matches(step: dict, event_type: str, action_code: str | None) -> bool:
    step_type = step.get("eventType") or "action"
    return step_type == event_type and (step_type != "action" or step.get("actionCode") == action_code)


def campaign_rule_of(campaign: Campaign) -> CampaignRule:
    return CampaignRule(
        id=str(campaign.pk),
        name=campaign.name,
        type=campaign.type,
        start_at=campaign.start_at,
        end_at=campaign.end_at,
        rule=campaign.rule_json,
        cohort_id=str(campaign.cohort_id) if campaign.cohort_id else None,
        cohort_code=campaign.cohort.code if campaign.cohort_id else None,
        priority=campaign.priority,
        stacking=campaign.stacking,
        budget_rewards=campaign.budget_rewards,
        budget_amount=campaign.budget_amount,
        member_cap_rewards=campaign.member_cap_rewards,
        member_cap_amount=campaign.member_cap_amount,
        member_cap_period=campaign.member_cap_period,
        version=campaign.version,
    )


def _load(tenant_pk) -> tuple[CampaignRule, ...]:
    campaigns = (
        Campaign.objects.filter(tenant_id=tenant_pk, status=Campaign.Status.ACTIVE)
        .select_related("cohort")
        .order_by("-priority", "start_at", "pk")
    )
    return tuple(campaign_rule_of(c) for c in campaigns)


def _keys(tenant_pk) -> tuple[str, str]:
    key = f"campaigns:{tenant_pk}:v1"
    return key, f"{key}:generation"


def active_campaigns_get(*, tenant: Tenant) -> tuple[CampaignRule, ...]:
    """The tenant's ACTIVE campaigns, highest priority first (whether each is live at a given
    moment is `CampaignRule.live_at`)."""
    key, generation_key = _keys(tenant.pk)
    try:
        found = cache.get_many([key, generation_key])
        generation = found.get(generation_key)
        if generation is None:
            cache.add(generation_key, uuid.uuid4().hex, timeout=None)
            generation = cache.get(generation_key)
        cached = found.get(key)
        if cached is not None and generation is not None and cached[0] == generation:
            return cached[1]
    except Exception as exc:  # noqa: BLE001 - the database answers while the cache cannot
        logger.warning("campaigns read from the database: cache failed", extra={"error": str(exc)})
        return _load(tenant.pk)
    campaigns = _load(tenant.pk)
    try:
        cache.set(key, (generation, campaigns), CACHE_TTL)
    except Exception as exc:  # noqa: BLE001
        logger.warning("campaigns not cached", extra={"error": str(exc)})
    return campaigns


def campaign_cache_invalidate(*, tenant_pk) -> None:
    """Retire the tenant's cached campaigns. Never raises: it runs after commit."""
    key, generation_key = _keys(tenant_pk)
    try:
        cache.set(generation_key, uuid.uuid4().hex, timeout=None)
        cache.delete(key)
    except Exception as exc:  # noqa: BLE001
        logger.error("campaign cache not invalidated", extra={"error": str(exc), "tenant": str(tenant_pk)})


@receiver(post_save, sender=Campaign)
@receiver(post_delete, sender=Campaign)
@receiver(post_save, sender=Cohort)
def _campaign_changed(sender, instance, **kwargs) -> None:
    tenant_pk = instance.tenant_id
    transaction.on_commit(lambda: campaign_cache_invalidate(tenant_pk=tenant_pk))
