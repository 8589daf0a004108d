"""Reads for campaigns, their catalogs (actions, coupon pools) and the incentives they issued,
always scoped by tenant."""

import uuid
from datetime import datetime

from django.db import connection
from django.db.models import Q, QuerySet

from campaigns.models import Action, Campaign, CouponPool, Incentive
from campaigns.rules import RuleContext
from core.exceptions import NotFound
from rewards.models import Member
from tenants.models import Tenant


class CampaignNotFound(NotFound):
    default_code = "campaign_not_found"
    default_message = "Campaign not found."


class CouponPoolNotFound(NotFound):
    default_code = "coupon_pool_not_found"
    default_message = "Coupon pool not found."


def _campaigns(tenant: Tenant) -> QuerySet[Campaign]:
    return Campaign.objects.filter(tenant=tenant).select_related("stats")


def campaign_get(*, tenant: Tenant, campaign_id) -> Campaign:
    """The tenant's campaign with its stats; another tenant's is not found."""
    try:
        pk = campaign_id if isinstance(campaign_id, uuid.UUID) else uuid.UUID(str(campaign_id))
    except ValueError:
        raise CampaignNotFound(field="campaignId") from None
    campaign = _campaigns(tenant).filter(pk=pk).first()
    if campaign is None:
        raise CampaignNotFound(field="campaignId")
    return campaign


def _triggered_by_action(rule: dict, action: str) -> bool:
    """`campaigns.config.CampaignRule.triggered_by` for an action event, on a stored rule."""
    if not isinstance(rule, dict):
        return False
    quest = rule.get("quest")
    if isinstance(quest, dict):
        return any(isinstance(s, dict) and s.get("actionCode") == action for s in quest.get("steps") or [])
    trigger = rule.get("trigger")
    if not isinstance(trigger, dict) or "action" not in (trigger.get("eventTypes") or []):
        return False
    codes = trigger.get("actionCodes")
    return not codes or action in codes


def action_trigger_q(action: str) -> Q:
    """Campaigns an action event with this code triggers, as JSONB containment (@>), which
    the GIN index on rule_json answers (PostgreSQL)."""
    listed = Q(rule_json__contains={"trigger": {"actionCodes": [action]}})
    step = Q(rule_json__contains={"quest": {"steps": [{"actionCode": action}]}})
    # A trigger on 'action' events that names no codes fires on every action, this one included.
    any_action = Q(rule_json__contains={"trigger": {"eventTypes": ["action"]}}) & (
        ~Q(rule_json__trigger__has_key="actionCodes") | Q(rule_json__trigger__actionCodes=[])
    )
    return listed | step | any_action


def _action_filter(queryset: QuerySet[Campaign], action: str) -> QuerySet[Campaign]:
    if connection.vendor != "postgresql":
        # SQLite (the embedded default) has no JSON containment; a tenant's campaigns are few.
        rules = queryset.values_list("pk", "rule_json")
        return queryset.filter(pk__in=[pk for pk, rule in rules if _triggered_by_action(rule, action)])
    return queryset.filter(action_trigger_q(action))


def campaign_list(
    *,
    tenant: Tenant,
    status: str | None = None,
    type: str | None = None,
    action: str | None = None,
    active_at: datetime | None = None,
) -> QuerySet[Campaign]:
    """The tenant's campaigns, newest first. `action`: those an action event with this code
    triggers (a listed trigger code, a quest step, or a trigger on every action).
    `active_at`: those ACTIVE whose window holds that moment (what the calculator applies)."""
    campaigns = _campaigns(tenant)
    if status:
        campaigns = campaigns.filter(status=status)
    if type:
        campaigns = campaigns.filter(type=type)
    if active_at is not None:
        campaigns = campaigns.filter(status=Campaign.Status.ACTIVE, start_at__lte=active_at).filter(
            Q(end_at__isnull=True) | Q(end_at__gt=active_at)
        )
    if action:
        campaigns = _action_filter(campaigns, action)
    return campaigns.order_by("-created_at", "-pk")


def action_list(*, tenant: Tenant) -> QuerySet[Action]:
    return Action.objects.filter(tenant=tenant).order_by("code")


def action_codes(*, tenant: Tenant) -> frozenset[str]:
    return frozenset(Action.objects.filter(tenant=tenant).values_list("code", flat=True))


def coupon_pool_codes(*, tenant: Tenant) -> frozenset[str]:
    return frozenset(CouponPool.objects.filter(tenant=tenant).values_list("code", flat=True))


def rule_context_get(*, tenant: Tenant) -> RuleContext:
    """What a rule may name: the tenant's action codes and coupon pools."""
    return RuleContext(action_codes=action_codes(tenant=tenant), coupon_pools=coupon_pool_codes(tenant=tenant))


def coupon_pool_get(*, tenant: Tenant, code: str) -> CouponPool:
    """The tenant's coupon pool with this code; another tenant's is not found."""
    if "\x00" in code:
        # No code holds NUL, and PostgreSQL refuses it in a query (it would be a 500).
        raise CouponPoolNotFound(field="code")
    pool = CouponPool.objects.filter(tenant=tenant, code=code).first()
    if pool is None:
        raise CouponPoolNotFound(field="code")
    return pool


def incentive_list(*, tenant: Tenant, member: Member) -> QuerySet[Incentive]:
    """The member's incentives, newest first."""
    return (
        Incentive.objects.filter(tenant=tenant, member=member)
        .select_related("campaign", "coupon")
        .order_by("-issued_at", "-id")
    )
