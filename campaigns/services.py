"""Writes for campaigns: create, update (PUT), the lifecycle DRAFT -> ACTIVE <-> PAUSED -> ENDED,
the schedule that ends campaigns at their endAt, and the catalogs rules name (actions,
coupon pools and their codes).

The active-campaign cache (`campaigns.config`) follows every saved campaign by itself (a
post_save signal, after commit), so these services save campaigns one by one, never with
a queryset `update()` that would bypass it.
"""

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns import selectors
from campaigns.models import Action, Campaign, CampaignStats, Cohort, CouponCode, CouponPool
from campaigns.rules import rule_check
from core.exceptions import Conflict, DomainError
from tenants.models import Tenant

logger = logging.getLogger(__name__)

# What a PUT replaces; status, version, stats and timestamps are the service's own.
EDITABLE = (
    "name",
    "description",
    "type",
    "start_at",
    "end_at",
    "rule_json",
    "cohort",
    "priority",
    "stacking",
    "budget_rewards",
    "budget_amount",
    "member_cap_rewards",
    "member_cap_amount",
    "member_cap_period",
)
MAX_COUPON_CODE = 128
_CHUNK = 5_000

Status = Campaign.Status
# verb -> (the statuses it may start from, the status it leads to)
TRANSITIONS = {
    "activate": ((Status.DRAFT, Status.PAUSED), Status.ACTIVE),
    "pause": ((Status.ACTIVE,), Status.PAUSED),
    "end": ((Status.ACTIVE, Status.PAUSED), Status.ENDED),
}


class CampaignInvalid(DomainError):
    default_code = "invalid"
    default_message = "The campaign is not valid."


class TypeLocked(Conflict):
    default_code = "campaign_type_locked"
    default_message = "A campaign's type can only change while it is a DRAFT."


class CampaignEnded(Conflict):
    default_code = "campaign_ended"
    default_message = "An ended campaign cannot be changed."


class IllegalTransition(Conflict):
    default_code = "illegal_transition"
    default_message = "The campaign's status does not allow this."


class CampaignExpired(Conflict):
    default_code = "campaign_expired"
    default_message = "The campaign's endAt has passed: move it later before activating."


class CouponPoolAlreadyExists(Conflict):
    default_code = "coupon_pool_exists"
    default_message = "A coupon pool with this code already exists."


def _campaign_validate(campaign: Campaign, *, tenant: Tenant) -> None:
    """Field rules (lengths, choices, ranges), the window, the cohort and the rule, each error
    naming its field."""
    campaign.full_clean(exclude=["tenant", "cohort", "rule_json"], validate_unique=False, validate_constraints=False)
    if campaign.end_at is not None and campaign.end_at <= campaign.start_at:
        raise CampaignInvalid("Must be after startAt.", field="end_at")
    if campaign.cohort is not None and campaign.cohort.tenant_id != tenant.pk:
        raise CampaignInvalid("No cohort of this tenant has this id.", field="cohort_id", code="does_not_exist")
    rule_check(campaign.rule_json, campaign_type=campaign.type, context=selectors.rule_context_get(tenant=tenant))


@transaction.atomic
def campaign_create(
    *,
    tenant: Tenant,
    name: str,
    type: str,
    start_at: datetime,
    end_at: datetime | None = None,
    rule_json: dict,
    cohort: Cohort | None = None,
    priority: int = 0,
    stacking: str = Campaign.Stacking.STACKABLE,
    budget_rewards: int | None = None,
    budget_amount: Decimal | None = None,
    member_cap_rewards: int | None = None,
    member_cap_amount: Decimal | None = None,
    member_cap_period: str = Campaign.Period.CAMPAIGN,
    description: str = "",
) -> Campaign:
    """Create a DRAFT campaign, and the stats row its budget is counted in."""
    campaign = Campaign(
        tenant=tenant,
        status=Status.DRAFT,
        name=name,
        description=description,
        type=type,
        start_at=start_at,
        end_at=end_at,
        rule_json=rule_json,
        cohort=cohort,
        priority=priority,
        stacking=stacking,
        budget_rewards=budget_rewards,
        budget_amount=budget_amount,
        member_cap_rewards=member_cap_rewards,
        member_cap_amount=member_cap_amount,
        member_cap_period=member_cap_period,
    )
    _campaign_validate(campaign, tenant=tenant)
    campaign.save(force_insert=True)
    CampaignStats.objects.create(campaign=campaign)  # also caches campaign.stats
    return campaign


def _locked(*, tenant: Tenant, campaign: Campaign) -> Campaign:
    """The campaign's row, locked (not its stats row: the calculator spends budgets there)."""
    current = (
        Campaign.objects.select_for_update(of=("self",))
        .select_related("stats", "cohort")
        .filter(tenant=tenant, pk=campaign.pk)
        .first()
    )
    if current is None:
        raise selectors.CampaignNotFound(field="campaignId")
    return current


def _same(name: str, a, b) -> bool:
    if name == "rule_json":
        # JSON compares by its spelling: 1, 1.0 and true are three different rules to a reader.
        dump = {"sort_keys": True, "cls": DjangoJSONEncoder}
        return json.dumps(a, **dump) == json.dumps(b, **dump)
    return a == b


@transaction.atomic
def campaign_update(
    *,
    tenant: Tenant,
    campaign: Campaign,
    name: str,
    type: str,
    start_at: datetime,
    end_at: datetime | None = None,
    rule_json: dict,
    cohort: Cohort | None = None,
    priority: int = 0,
    stacking: str = Campaign.Stacking.STACKABLE,
    budget_rewards: int | None = None,
    budget_amount: Decimal | None = None,
    member_cap_rewards: int | None = None,
    member_cap_amount: Decimal | None = None,
    member_cap_period: str = Campaign.Period.CAMPAIGN,
    description: str = "",
) -> Campaign:
    """Replace the editable fields (a PUT: what is left out takes its default). Any change makes
    a new `version`; an ENDED campaign cannot be changed. Returns the campaign as saved."""
    fields = {
        "name": name,
        "description": description,
        "type": type,
        "start_at": start_at,
        "end_at": end_at,
        "rule_json": rule_json,
        "cohort": cohort,
        "priority": priority,
        "stacking": stacking,
        "budget_rewards": budget_rewards,
        "budget_amount": budget_amount,
        "member_cap_rewards": member_cap_rewards,
        "member_cap_amount": member_cap_amount,
        "member_cap_period": member_cap_period,
    }
    current = _locked(tenant=tenant, campaign=campaign)
    if current.status == Status.ENDED:
        raise CampaignEnded()
    changed = [name for name in EDITABLE if not _same(name, getattr(current, name), fields[name])]
    if "type" in changed and current.status != Status.DRAFT:
        # Quest progress and incentives already issued belong to the type they were issued under.
        raise TypeLocked(field="type")
    for name in EDITABLE:
        setattr(current, name, fields[name])
    _campaign_validate(current, tenant=tenant)
    if not changed:
        return current
    current.version += 1
    current.save(update_fields=[*changed, "version", "updated_at"])
    return current


def _transition(*, tenant: Tenant, campaign: Campaign, verb: str, now: datetime | None) -> Campaign:
    sources, target = TRANSITIONS[verb]
    now = now or timezone.now()
    with transaction.atomic():
        current = _locked(tenant=tenant, campaign=campaign)
        if current.status not in sources:
            allowed = " or ".join(str(s) for s in sources)
            raise IllegalTransition(f"Cannot {verb} a campaign that is {current.status}; only one that is {allowed}.")
        if target == Status.ACTIVE and current.end_at is not None and current.end_at <= now:
            raise CampaignExpired(
                f"The campaign ended at {current.end_at.isoformat()}: move endAt later to activate it.",
                field="end_at",
            )
        current.status = target
        fields = ["status", "updated_at"]
        if target == Status.ACTIVE and current.activated_at is None:
            current.activated_at = now
            fields.append("activated_at")
        if target == Status.ENDED:
            current.ended_at = now
            fields.append("ended_at")
        current.save(update_fields=fields)
    logger.info("campaign %s", verb, extra={"campaign": str(current.pk), "status": current.status})
    return current


def campaign_activate(*, tenant: Tenant, campaign: Campaign, now: datetime | None = None) -> Campaign:
    """DRAFT or PAUSED -> ACTIVE. A campaign whose start is still ahead is then scheduled: the
    calculator applies it from startAt. `activated_at` records the first activation."""
    return _transition(tenant=tenant, campaign=campaign, verb="activate", now=now)


def campaign_pause(*, tenant: Tenant, campaign: Campaign, now: datetime | None = None) -> Campaign:
    """ACTIVE -> PAUSED: no incentives until it is activated again."""
    return _transition(tenant=tenant, campaign=campaign, verb="pause", now=now)


def campaign_end(*, tenant: Tenant, campaign: Campaign, now: datetime | None = None) -> Campaign:
    """ACTIVE or PAUSED -> ENDED, for good."""
    return _transition(tenant=tenant, campaign=campaign, verb="end", now=now)


@dataclass(frozen=True)
class ScheduleRun:
    """What one run of the schedule changed."""

    ended: tuple[uuid.UUID, ...]


def campaigns_schedule_run(*, now: datetime, batch_size: int = 500) -> ScheduleRun:
    """End the ACTIVE and PAUSED campaigns (of every tenant) whose endAt is at or before `now`;
    `ended_at` is their endAt, when they stopped applying. Starting needs no change: an
    ACTIVE campaign is applied from its startAt. Safe to run twice at once: rows another run
    (or a lifecycle call) holds are skipped, and picked up by the next run if still due."""
    ended: list[uuid.UUID] = []
    while True:
        with transaction.atomic():
            due = list(
                Campaign.objects.select_for_update(skip_locked=True)
                .filter(status__in=(Status.ACTIVE, Status.PAUSED), end_at__lte=now)
                .order_by("pk")[:batch_size]
            )
            for campaign in due:
                campaign.status = Status.ENDED
                campaign.ended_at = campaign.end_at
                campaign.save(update_fields=["status", "ended_at", "updated_at"])
                ended.append(campaign.pk)
        if len(due) < batch_size:
            break
    if ended:
        logger.info("campaigns ended on schedule", extra={"count": len(ended)})
    return ScheduleRun(ended=tuple(ended))


# Catalogs -----------------------------------------------------------------------------------


def action_upsert(*, tenant: Tenant, code: str, description: str = "") -> tuple[Action, bool]:
    """Add an action code to the tenant's catalog, or change its description. Returns the
    action and whether it was created."""
    Action(tenant=tenant, code=code, description=description).full_clean(
        exclude=["tenant"], validate_unique=False, validate_constraints=False
    )
    return Action.objects.update_or_create(tenant=tenant, code=code, defaults={"description": description})


@transaction.atomic
def coupon_pool_create(*, tenant: Tenant, code: str, name: str) -> CouponPool:
    """A pool of coupon codes that a COUPON reward (`reward.pool`) hands out."""
    pool = CouponPool(tenant=tenant, code=code, name=name)
    pool.full_clean(exclude=["tenant"], validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            pool.save(force_insert=True)
    except IntegrityError as exc:
        raise CouponPoolAlreadyExists(field="code") from exc
    return pool


def coupon_codes_add(*, tenant: Tenant, pool: CouponPool, codes: list[str]) -> int:
    """Add codes to a pool, skipping those it already has (and repeats). Returns how many
    were added."""
    if pool.tenant_id != tenant.pk:
        raise selectors.CouponPoolNotFound(field="code")
    for i, code in enumerate(codes):
        if not isinstance(code, str) or not code or len(code) > MAX_COUPON_CODE or "\x00" in code:
            raise CampaignInvalid(f"A code is 1 to {MAX_COUPON_CODE} characters.", field=f"codes.{i}")
    wanted = list(dict.fromkeys(codes))
    added = 0
    with transaction.atomic():
        # Adds to one pool take turns, so the count is exact; issuing takes code rows, not this one.
        CouponPool.objects.select_for_update().filter(pk=pool.pk).first()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            have = set(CouponCode.objects.filter(pool=pool, code__in=chunk).values_list("code", flat=True))
            new = [CouponCode(tenant=tenant, pool=pool, code=code) for code in chunk if code not in have]
            CouponCode.objects.bulk_create(new, ignore_conflicts=True)
            added += len(new)
    return added
