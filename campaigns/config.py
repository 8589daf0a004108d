"""The campaigns the incentive calculator reads: a tenant's ACTIVE campaigns, cached.

Cached per tenant (`campaigns:{tenant}:v1`, ten minutes) under a generation that every
committed campaign write replaces (a signal, after commit; core.cache.TenantCache), so an
edit, an activation or a pause is seen by the next event.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from campaigns.models import Campaign, Cohort
from core.cache import TenantCache
from tenants.models import Tenant

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


active_cache = TenantCache("campaigns", ttl=lambda: CACHE_TTL)


def active_campaigns_get(*, tenant: Tenant) -> tuple[CampaignRule, ...]:
    """The tenant's ACTIVE campaigns, highest priority first (whether each is live at a given
    moment is `CampaignRule.live_at`)."""
    return active_cache.get_or_load(tenant_pk=tenant.pk, load=lambda: _load(tenant.pk))[0]


def campaign_cache_invalidate(*, tenant_pk) -> None:
    """Retire the tenant's cached campaigns (never raises)."""
    active_cache.retire(tenant_pk)


@receiver(post_save, sender=Campaign)
@receiver(post_delete, sender=Campaign)
@receiver(post_save, sender=Cohort)
def _campaign_changed(sender, instance, **kwargs) -> None:
    active_cache.retire_on_commit(instance.tenant_id)
