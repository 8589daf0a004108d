"""The incentive calculator (seed 001 §5): on each event, the tenant's live campaigns that the
event triggers are evaluated for the member; what they give is written as INCENTIVE rows,
counted against budgets and per-member caps, and announced (`incentive.generated`).

It runs inside the earning engine's transaction (registered as an incentive provider and a
refund listener in `CampaignsConfig.ready`), after the member's account row is locked, so one
member's events are applied one at a time: quest progress and per-member caps need no more
locking than that. Budgets are shared by every member, so they are spent with a conditional
UPDATE on the campaign's stats row (`... WHERE rewards_issued < budget`), and a rolled-back
event gives its spend back. That row is the one every event of the campaign writes, and its
lock is held to commit, so the UPDATE is the last thing an event does (from the incentive's
`settle`, after the ledger, lots, tiers and outbox): events queue on it only for the end of
their transaction. Should the budget have run out meanwhile, the engine rolls the event back
and applies it again knowing (`EventRetry`), so the outcome is as if it had been checked first.

A dry run goes through all of this inside a transaction that is rolled back.
"""

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from zoneinfo import ZoneInfo

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone
from django_guid import get_guid
from prometheus_client import Counter

from campaigns.conditions import condition_evaluate
from campaigns.config import CampaignRule, active_campaigns_get, campaign_rule_of
from campaigns.models import (
    Campaign,
    CampaignMemberUsage,
    CampaignStats,
    CohortMember,
    CouponCode,
    Incentive,
    QuestProgress,
)
from rewards.contributions import EventRetry, IncentiveContext, RefundContext, TierContext, tier_for
from rewards.contributions import Incentive as EngineIncentive
from rewards.models import Member, OutboxEvent
from rewards.outbox import outbox_write
from tenants.models import Tenant

INCENTIVES = Counter("loyalty_incentives_total", "Campaign incentives by type and outcome", ["type", "outcome"])
CENT = Decimal("0.01")
QUEST_DONE = "quest"
PURCHASE = "transaction.created"


# Facts ------------------------------------------------------------------------------------


def event_facts(event: dict) -> dict:
    """The event as condition variables see it (camelCase, like the wire)."""
    facts = {
        "type": event.get("type"),
        "amount": event.get("amount"),
        "currency": event.get("currency"),
        "category": event.get("category"),
        "mcc": event.get("mcc"),
        "channel": event.get("channel"),
        "actionCode": event.get("action_code"),
        "attributes": event.get("attributes"),
        "payload": event.get("payload"),
    }
    return {key: value for key, value in facts.items() if value is not None}


def member_facts(*, tenant: Tenant, member: Member, cohort_codes: list[str], tier: TierContext | None = None) -> dict:
    return {
        "attributes": member.attributes or {},
        "locale": member.locale,
        "tier": (tier or tier_for(tenant, member)).code,
        "cohorts": cohort_codes,
        "createdDaysAgo": (timezone.now() - member.created_at).days if member.created_at else 0,
    }


def _cohorts_of(member: Member) -> dict[str, str]:
    """cohort id -> code, for the member's cohorts."""
    rows = CohortMember.objects.filter(member=member).values_list("cohort_id", "cohort__code")
    return {str(cohort_id): code for cohort_id, code in rows}


def _facts(
    *, tenant: Tenant, member: Member, event: dict, cohorts: dict[str, str], tier: TierContext | None = None
) -> dict:
    """Everything a campaign condition may read about this event and member."""
    return {
        "event": event_facts(event),
        "member": member_facts(tenant=tenant, member=member, cohort_codes=sorted(cohorts.values()), tier=tier),
    }


def _reads_cohorts(campaign: CampaignRule) -> bool:
    """Whether the member's cohorts matter to this campaign (its cohort, or a condition on them)."""
    return bool(campaign.cohort_id) or "member.cohorts" in json.dumps(campaign.rule.get("conditions") or {})


# Evaluation -------------------------------------------------------------------------------


@dataclass
class Decision:
    """What one campaign made of one event, for the explanation."""

    campaign: CampaignRule
    outcome: str
    detail: str = ""
    reward_type: str = ""
    currency: str = ""
    amount: Decimal = Decimal(0)
    points: int = 0
    coupon: CouponCode | None = None
    completes_quest: bool = False
    budget_deferred: bool = False  # counted in the stats (and budget) at the end of the event (`settle`)

    def explain(self) -> dict:
        explained = {"campaignId": self.campaign.id, "name": self.campaign.name, "outcome": self.outcome}
        if self.detail:
            explained["detail"] = self.detail
        if self.outcome == "issued":
            explained["reward"] = {"type": self.reward_type, "currency": self.currency, "amount": str(self.amount)}
        return explained


def _reward_for(campaign: CampaignRule, *, tenant: Tenant, event: dict, base_points: int) -> Decision:
    reward = campaign.rule["reward"]
    kind = reward["type"]
    decision = Decision(campaign, "issued", reward_type=kind)
    if kind == "POINTS":
        if "points" in reward:
            points = int(reward["points"])
        else:
            extra = Decimal(base_points) * (Decimal(str(reward["multiplier"])) - 1)
            points = max(0, int(extra.to_integral_value(rounding=ROUND_DOWN)))
        if "maxPoints" in reward:
            points = min(points, int(reward["maxPoints"]))
        decision.currency, decision.amount, decision.points = "POINTS", Decimal(points), points
        if points <= 0:
            decision.outcome, decision.detail = "nothing_to_give", "The multiplier adds no points to this event."
    elif kind == "CASHBACK":
        if "amount" in reward:
            amount = Decimal(str(reward["amount"]))
        else:
            amount = Decimal(event.get("amount") or 0) * Decimal(str(reward["percent"])) / 100
        if "maxAmount" in reward:
            amount = min(amount, Decimal(str(reward["maxAmount"])))
        amount = amount.quantize(CENT, rounding=ROUND_DOWN)
        decision.currency, decision.amount = tenant.currency, amount
        if amount <= 0:
            decision.outcome, decision.detail = "nothing_to_give", "The cashback rounds to nothing."
    else:
        decision.currency, decision.amount = "COUPON", Decimal(1)
    return decision


def _period_start(tenant: Tenant, campaign: CampaignRule, at: datetime) -> date:
    if campaign.member_cap_period == Campaign.Period.CAMPAIGN:
        return date(2000, 1, 1)
    day = at.astimezone(ZoneInfo(tenant.timezone)).date()
    if campaign.member_cap_period == Campaign.Period.WEEK:
        return day - timedelta(days=day.weekday())
    if campaign.member_cap_period == Campaign.Period.MONTH:
        return day.replace(day=1)
    return day


def _has_budget(campaign: CampaignRule) -> bool:
    return campaign.budget_rewards is not None or campaign.budget_amount is not None


def _budget_room(campaign: CampaignRule, amount: Decimal) -> Q:
    room = Q()
    if campaign.budget_rewards is not None:
        room &= Q(rewards_issued__lt=campaign.budget_rewards)
    if campaign.budget_amount is not None:
        room &= Q(amount_issued__lte=campaign.budget_amount - amount)
    return room


def _budget_spend(
    campaign: CampaignRule, amount: Decimal, *, charge: Decimal | None = None, rewards: int = 1, batch=None
) -> bool:
    """Spend one reward of `amount` from the campaign's budget, if it has room: atomic. The
    room is checked for `amount`; `charge` and `rewards` (less, when the limits let less
    through than was promised) are what is counted."""
    charge = amount if charge is None else charge
    if not _has_budget(campaign) and not rewards and not charge:
        return True  # nothing to count, and no budget to check
    if batch is not None:
        return _batch_budgets(batch).spend(campaign, amount, charge=charge, rewards=rewards)
    updated = CampaignStats.objects.filter(_budget_room(campaign, amount), pk=campaign.id).update(
        rewards_issued=F("rewards_issued") + rewards, amount_issued=F("amount_issued") + charge
    )
    if updated != 1:
        _exhausted_seen[campaign.id] = time.monotonic()
    return updated == 1


# Campaigns this process recently found out of budget. Only a hint to look before going on:
# an event of such a campaign reads its stats row (no lock) first, rather than find out at its
# end and be applied twice. What decides is always the conditional UPDATE.
_exhausted_seen: dict[str, float] = {}
_EXHAUSTED_HINT_SECONDS = 60.0
_hint_lock = threading.Lock()


def _budget_looks_spent(campaign: CampaignRule, amount: Decimal) -> bool:
    seen = _exhausted_seen.get(campaign.id)
    if seen is None:
        return False
    if (
        time.monotonic() - seen > _EXHAUSTED_HINT_SECONDS
        or CampaignStats.objects.filter(_budget_room(campaign, amount), pk=campaign.id).exists()
    ):
        with _hint_lock:
            _exhausted_seen.pop(campaign.id, None)  # stale, or budget given back (refunds, limits)
        return False
    return True


def _cap_spend(*, tenant: Tenant, member: Member, campaign: CampaignRule, amount: Decimal, at: datetime) -> bool:
    if campaign.member_cap_rewards is None and campaign.member_cap_amount is None:
        return True
    usage, _ = CampaignMemberUsage.objects.get_or_create(
        tenant=tenant, campaign_id=campaign.id, member=member, period_start=_period_start(tenant, campaign, at)
    )
    room = Q()
    if campaign.member_cap_rewards is not None:
        room &= Q(rewards__lt=campaign.member_cap_rewards)
    if campaign.member_cap_amount is not None:
        room &= Q(amount__lte=campaign.member_cap_amount - amount)
    updated = CampaignMemberUsage.objects.filter(room, pk=usage.pk).update(
        rewards=F("rewards") + 1, amount=F("amount") + amount
    )
    return updated == 1


def _coupon_take(*, tenant: Tenant, pool_code: str) -> CouponCode | None:
    """A free code from the pool; concurrent takers skip each other's rows. Only the code's
    row is locked (`of`): locking the joined pool row too would make every other taker skip
    every code while one event holds it."""
    return (
        CouponCode.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(tenant=tenant, pool__code=pool_code, member__isnull=True)
        .order_by("pk")
        .first()
    )


def _quest_step(campaign: CampaignRule, event: dict) -> dict | None:
    for step in campaign.rule["quest"]["steps"]:
        step_type = step.get("eventType") or "action"
        if step_type == event["type"] and (step_type != "action" or step.get("actionCode") == event.get("action_code")):
            return step
    return None


def _step_key(step: dict) -> str:
    return step.get("actionCode") or step.get("eventType") or PURCHASE


def _quest_advance(*, tenant: Tenant, member: Member, campaign: CampaignRule, event: dict) -> tuple[bool, str]:
    """Count this event towards its step; whether the quest is now complete, and why not."""
    if Incentive.objects.filter(campaign_id=campaign.id, member=member, completion_key=QUEST_DONE).exists():
        return False, "The member has already completed this quest."
    step = _quest_step(campaign, event)
    try:
        with transaction.atomic():
            QuestProgress.objects.create(
                tenant=tenant,
                campaign_id=campaign.id,
                member=member,
                action_code=_step_key(step),
                event_id=event["event_id"],
                occurred_at=event["occurred_at"],
            )
    except IntegrityError:
        return False, "This event already counted towards the quest."
    progress = QuestProgress.objects.filter(campaign_id=campaign.id, member=member, completed_at__isnull=True)
    latest = progress.aggregate(latest=Max("occurred_at"))["latest"]
    missing = []
    for step in campaign.rule["quest"]["steps"]:
        rows = progress.filter(action_code=_step_key(step))
        if "withinDays" in step:
            rows = rows.filter(occurred_at__gt=latest - timedelta(days=step["withinDays"]))
        done = rows.aggregate(n=Count("pk"))["n"]
        if done < step["count"]:
            missing.append(f"{_step_key(step)} {done}/{step['count']}")
    if missing:
        return False, "Quest in progress: " + ", ".join(missing) + "."
    return True, ""


def _evaluate_without_writes(
    *, tenant: Tenant, event: dict, context: IncentiveContext, campaign: CampaignRule, facts, cohorts, ignore_status
) -> Decision:
    """The part of a campaign's evaluation that reads only: time, cohort, conditions and the
    reward. "issued" here means it would go on to spend (quest, caps, budget, coupon)."""
    at = event["occurred_at"]
    if not ignore_status and not (campaign.live_at(context.now) and campaign.live_at(at)):
        return Decision(campaign, "not_live", "The campaign is not running at this time.")
    if campaign.cohort_id and campaign.cohort_id not in cohorts:
        return Decision(campaign, "not_in_cohort", f"The member is not in cohort {campaign.cohort_code!r}.")
    if "conditions" in campaign.rule and not condition_evaluate(campaign.rule["conditions"], facts):
        return Decision(campaign, "conditions_not_met", "The event or member does not meet the conditions.")
    return _reward_for(campaign, tenant=tenant, event=event, base_points=context.base_points)


def _evaluate(
    *,
    tenant: Tenant,
    member: Member,
    event: dict,
    context: IncentiveContext,
    campaign: CampaignRule,
    facts: dict,
    cohorts: dict[str, str],
    ignore_status: bool = False,
) -> Decision:
    """Whether and what one campaign gives for this event. Spends budget and caps, takes a
    coupon and records quest progress (all in the caller's transaction)."""
    decision = _evaluate_without_writes(
        tenant=tenant,
        event=event,
        context=context,
        campaign=campaign,
        facts=facts,
        cohorts=cohorts,
        ignore_status=ignore_status,
    )
    if decision.outcome != "issued":
        return decision
    batch = None if context.dry_run else context.batch
    if batch is not None and (_writes_per_event(campaign) or decision.reward_type == "COUPON"):
        batch.savepoint()  # quest progress, member caps, coupons: this event's own rows
    if campaign.type == Campaign.Type.QUEST:
        complete, why = _quest_advance(tenant=tenant, member=member, campaign=campaign, event=event)
        if not complete:
            return Decision(campaign, "quest_progress", why)
        decision.completes_quest = True
    if batch is not None:
        capped = not _batch_budgets(batch).cap_spend(member, campaign, decision.amount, context.now)
    else:
        capped = not _cap_spend(tenant=tenant, member=member, campaign=campaign, amount=decision.amount, at=context.now)
    if capped:
        return Decision(campaign, "member_cap_reached", "The member has had all this campaign gives per period.")
    budget_spent = Decision(campaign, "budget_exhausted", "The campaign's budget is spent.")
    if batch is not None:
        if campaign.id in context.exhausted or not _batch_budgets(batch).room(campaign, decision.amount):
            return budget_spent
    elif campaign.id in context.exhausted or (_has_budget(campaign) and _budget_looks_spent(campaign, decision.amount)):
        return budget_spent
    if context.dry_run:
        # Rolled back anyway, and a dry run or a preview has no end to wait for: spent here.
        if not _budget_spend(campaign, decision.amount):
            return budget_spent
    else:
        # Counted (and checked against the budget, if any) at the end of the event.
        decision.budget_deferred = True
    if decision.reward_type == "COUPON":
        decision.coupon = _coupon_take(tenant=tenant, pool_code=campaign.rule["reward"]["pool"])
        if decision.coupon is None:
            # Give back what was spent for it: nothing was issued.
            _spend_back(
                tenant=tenant,
                member=member,
                campaign_id=campaign.id,
                amount=decision.amount,
                rewards=1,
                budget=not decision.budget_deferred,
                batch=batch,
            )
            return Decision(campaign, "coupons_exhausted", "The coupon pool has no free codes left.")
    return decision


def _spend_back(
    *,
    tenant: Tenant,
    member: Member,
    campaign_id: str,
    amount: Decimal,
    rewards: int,
    at=None,
    budget: bool = True,
    batch=None,
) -> None:
    if batch is not None:
        # The event's own cap spend, not yet written (a budget is only counted at its end).
        _batch_budgets(batch).cap_give_back(member, campaign_id, amount=amount, rewards=rewards)
        return
    if budget:
        CampaignStats.objects.filter(pk=campaign_id).update(
            rewards_issued=F("rewards_issued") - rewards, amount_issued=F("amount_issued") - amount
        )
    usage = CampaignMemberUsage.objects.filter(campaign_id=campaign_id, member=member)
    if at is not None:
        usage = usage.filter(period_start__lte=at.date())
    usage = usage.order_by("-period_start").first()
    if usage is not None:
        CampaignMemberUsage.objects.filter(pk=usage.pk).update(
            rewards=F("rewards") - min(rewards, usage.rewards), amount=F("amount") - min(amount, usage.amount)
        )


def _writes_per_event(campaign: CampaignRule) -> bool:
    return campaign.type == Campaign.Type.QUEST


class _BatchCampaigns:
    """Campaigns' part of a set-based batch (rewards.batch): the incentives, their
    announcements and the stats of the batch's events, written once per batch; each event's
    share kept apart until the event is through (`event_end`).

    A budgeted campaign's stats row is locked (`SELECT … FOR UPDATE`) the first time an event
    of the batch may spend from it, and held to the batch's commit, so the room counted here
    is exact: what the conditional UPDATE of a single event would decide, decided in memory."""

    def __init__(self, batch):
        self.batch = batch
        self.tenant = batch.tenant
        self.locked: dict[str, list[Decimal]] = {}  # campaign id -> [rewards, amount] as read, locked
        self.done: dict[str, list[Decimal]] = {}  # counted by the batch's events, not yet written
        self.event: dict[str, list[Decimal]] = {}  # counted by the event being applied
        # Member caps: (campaign id, member pk, period start) -> [rewards, amount] as read (or as
        # the batch's applied events left it); the current event's share apart.
        self.caps: dict[tuple, list] = {}
        self.caps_done: dict[tuple, list] = {}
        self.event_caps: dict[tuple, list] = {}
        self.event_periods: dict[tuple, tuple] = {}  # (campaign id, member pk) -> the event's key
        self.incentives: list[Incentive] = []
        self.event_incentives: list[Incentive] = []
        self.announcements: list = []
        self.event_announcements: list = []

    def _counted(self, campaign: CampaignRule) -> tuple[Decimal, Decimal]:
        if campaign.id not in self.locked:
            # Every budgeted campaign's row at once, in id order: two batches never deadlock on them.
            budgeted = [c.id for c in active_campaigns_get(tenant=self.tenant) if _has_budget(c)]
            rows = (
                CampaignStats.objects.select_for_update()
                .filter(pk__in=sorted({*budgeted, campaign.id}))
                .order_by("pk")
                .values_list("pk", "rewards_issued", "amount_issued")
            )
            for pk, rewards, amount in rows:
                self.locked[str(pk)] = [Decimal(rewards), Decimal(amount)]
            self.locked.setdefault(campaign.id, [Decimal(0), Decimal(0)])
        base = self.locked[campaign.id]
        done = self.done.get(campaign.id, [0, 0])
        now = self.event.get(campaign.id, [0, 0])
        return base[0] + done[0] + now[0], base[1] + done[1] + now[1]

    def room(self, campaign: CampaignRule, amount: Decimal) -> bool:
        if not _has_budget(campaign):
            return True
        rewards, spent = self._counted(campaign)
        if campaign.budget_rewards is not None and not rewards < campaign.budget_rewards:
            return False
        return campaign.budget_amount is None or spent <= campaign.budget_amount - amount

    def spend(self, campaign: CampaignRule, amount: Decimal, *, charge: Decimal, rewards: int) -> bool:
        if not self.room(campaign, amount):
            return False
        counted = self.event.setdefault(campaign.id, [0, Decimal(0)])
        counted[0] += rewards
        counted[1] += charge
        return True

    def _cap_counted(self, member: Member, campaign: CampaignRule, at: datetime, batch) -> tuple:
        key = (campaign.id, member.pk, _period_start(self.tenant, campaign, at))
        if key not in self.caps:
            # The batch's members not read yet, for this campaign and period: one query. Those
            # read already keep what the batch's events added and has not written yet.
            members = {pk for pk in {member.pk, *batch.member_pks()} if (campaign.id, pk, key[2]) not in self.caps}
            for pk in members:
                self.caps[(campaign.id, pk, key[2])] = [0, Decimal(0)]
            rows = CampaignMemberUsage.objects.filter(
                campaign_id=campaign.id, member_id__in=members, period_start=key[2]
            ).values_list("member_id", "rewards", "amount")
            for pk, rewards, amount in rows:
                self.caps[(campaign.id, pk, key[2])] = [rewards, amount]
        mine = self.event_caps.get(key, [0, Decimal(0)])
        return key, self.caps[key][0] + mine[0], self.caps[key][1] + mine[1]

    def cap_spend(self, member: Member, campaign: CampaignRule, amount: Decimal, at: datetime) -> bool:
        if campaign.member_cap_rewards is None and campaign.member_cap_amount is None:
            return True
        key, rewards, spent = self._cap_counted(member, campaign, at, self.batch)
        if campaign.member_cap_rewards is not None and not rewards < campaign.member_cap_rewards:
            return False
        if campaign.member_cap_amount is not None and not spent <= campaign.member_cap_amount - amount:
            return False
        mine = self.event_caps.setdefault(key, [0, Decimal(0)])
        mine[0] += 1
        mine[1] += amount
        self.event_periods[(campaign.id, member.pk)] = key
        return True

    def cap_give_back(self, member: Member, campaign_id: str, *, amount: Decimal, rewards: int) -> None:
        key = self.event_periods.get((campaign_id, member.pk))
        if key is None:
            return  # no cap, so nothing was counted
        mine = self.event_caps[key]
        total_rewards = self.caps[key][0] + mine[0]
        total_amount = self.caps[key][1] + mine[1]
        mine[0] -= min(rewards, total_rewards)
        mine[1] -= min(amount, total_amount)

    def issue(self, incentive: Incentive) -> None:
        self.event_incentives.append(incentive)

    def drop(self, incentive: Incentive) -> None:
        self.event_incentives = [i for i in self.event_incentives if i is not incentive]

    def announce(self, incentive: Incentive) -> None:
        self.event_announcements.append(incentive)

    # The batch's calls ------------------------------------------------------------------

    def event_end(self, *, applied: bool) -> None:
        if applied:
            for campaign_id, (rewards, amount) in self.event.items():
                counted = self.done.setdefault(campaign_id, [0, Decimal(0)])
                counted[0] += rewards
                counted[1] += amount
            self.incentives += self.event_incentives
            self.announcements += self.event_announcements
            for key, (rewards, amount) in self.event_caps.items():
                for target in (self.caps_done.setdefault(key, [0, Decimal(0)]), self.caps[key]):
                    target[0] += rewards
                    target[1] += amount
        self.event, self.event_incentives, self.event_announcements = {}, [], []
        self.event_caps, self.event_periods = {}, {}

    def flush(self) -> None:
        Incentive.objects.bulk_create(self.incentives)
        OutboxEvent.objects.bulk_create(
            [
                OutboxEvent(
                    tenant=incentive.tenant,
                    type="incentive.generated",
                    member_ref=incentive.member.external_ref,
                    occurred_at=incentive.issued_at,
                    data=incentive_notification(incentive),
                    correlation_id=get_guid() or "",
                )
                for incentive in self.announcements
            ]
        )
        self._caps_write()
        for campaign_id, (rewards, amount) in sorted(self.done.items()):
            CampaignStats.objects.filter(pk=campaign_id).update(
                rewards_issued=F("rewards_issued") + rewards, amount_issued=F("amount_issued") + amount
            )
            if campaign_id in self.locked:
                self.locked[campaign_id][0] += rewards
                self.locked[campaign_id][1] += amount
        self.done, self.incentives, self.announcements = {}, [], []

    def _caps_write(self) -> None:
        rows = [(key, value) for key, value in sorted(self.caps_done.items(), key=str) if value[0] or value[1]]
        self.caps_done = {}
        if not rows:
            return
        table = connection.ops.quote_name(CampaignMemberUsage._meta.db_table)
        sql = (
            f"INSERT INTO {table} (tenant_id, campaign_id, member_id, period_start, rewards, amount) "  # noqa: S608
            f"VALUES {', '.join(['(%s, %s, %s, %s, %s, %s)'] * len(rows))} "
            "ON CONFLICT (campaign_id, member_id, period_start) DO UPDATE SET "
            f"rewards = {table}.rewards + EXCLUDED.rewards, amount = {table}.amount + EXCLUDED.amount"
        )
        params = []
        for (campaign_id, member_pk, period), (rewards, amount) in rows:
            params += [self.tenant.pk, campaign_id, member_pk, period, rewards, amount]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    def reread(self) -> None:
        """An event applied on its own may have spent from budgets or caps: read them again."""
        self.locked.clear()
        self.caps.clear()


def _batch_budgets(batch) -> _BatchCampaigns:
    return batch.extension("campaigns", lambda: _BatchCampaigns(batch))


def _announce(incentive: Incentive, batch=None) -> None:
    if batch is not None:
        _batch_budgets(batch).announce(incentive)
        return
    outbox_write(
        tenant=incentive.tenant,
        type="incentive.generated",
        member_ref=incentive.member.external_ref,
        occurred_at=incentive.issued_at,
        data=incentive_notification(incentive),
    )


def incentive_notification(incentive: Incentive) -> dict:
    """The seed 001 §1.5 payload (INCENTIVE_NOTIFICATION). Points and coupons are whole
    numbers; money is a decimal string, exact."""
    if incentive.reward_currency in ("POINTS", "COUPON"):
        amount = int(incentive.reward_amount)
    else:
        amount = str(Decimal(incentive.reward_amount).quantize(CENT))
    return {
        "type": "INCENTIVE_NOTIFICATION",
        "incentiveId": str(incentive.pk),
        "campaignId": str(incentive.campaign_id),
        "reward": {"currency": incentive.reward_currency, "amount": amount},
        "issuedAt": incentive.issued_at.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _issue(*, tenant: Tenant, member: Member, event: dict, decision: Decision, now: datetime, batch=None) -> Incentive:
    fields = {
        "tenant": tenant,
        "campaign_id": decision.campaign.id,
        "member": member,
        "type": decision.reward_type,
        "reward_currency": decision.currency,
        "reward_amount": decision.amount,
        "coupon": decision.coupon,
        "event_id": event["event_id"],
        "completion_key": QUEST_DONE if decision.completes_quest else "",
        "explanation": decision.explain(),
        "issued_at": now,
    }
    if batch is not None and decision.coupon is None and not decision.completes_quest:
        # Written with the batch's (`_BatchCampaigns.flush`); unsaved until then.
        incentive = Incentive(id=uuid.uuid4(), **fields)
        _batch_budgets(batch).issue(incentive)
        return incentive
    incentive = Incentive.objects.create(**fields)
    if decision.coupon is not None:
        CouponCode.objects.filter(pk=decision.coupon.pk).update(member=member, assigned_at=now)
    if decision.completes_quest:
        QuestProgress.objects.filter(campaign_id=decision.campaign.id, member=member, completed_at__isnull=True).update(
            incentive=incentive, completed_at=now
        )
    return incentive


def _budget_settler(*, campaign: CampaignRule, amount: Decimal, batch=None):
    """The end of the event for a cashback or a coupon under a budget: spend it now."""

    def settle(given: int, transfer_id: str | None) -> None:
        if not _budget_spend(campaign, amount, batch=batch):
            raise EventRetry(exhausted=frozenset({campaign.id}))

    return settle


def _settler(
    *, tenant: Tenant, member: Member, incentive: Incentive, campaign: CampaignRule, deferred: bool, batch=None
):
    """Told what the points limits let through: record the true amount, give back the rest
    of the member's cap, announce the incentive (or drop it if nothing got through), and
    last, spend the budget for what got through (deferred to here, the end of the event)."""

    def settle(given: int, transfer_id: str | None) -> None:
        promised = int(incentive.reward_amount)
        if given < promised:
            _spend_back(
                tenant=tenant,
                member=member,
                campaign_id=str(incentive.campaign_id),
                amount=Decimal(promised - given),
                rewards=1 if given == 0 else 0,
                budget=not deferred,
                batch=batch,
            )
        if given == 0:
            if incentive.completion_key:
                # A quest whose reward the limits swallowed stays complete: it was earned.
                Incentive.objects.filter(pk=incentive.pk).update(reward_amount=0, explanation={"limited": True})
            elif incentive._state.adding:
                _batch_budgets(batch).drop(incentive)  # never written
            else:
                incentive.delete()
        else:
            if given < promised:
                incentive.reward_amount = Decimal(given)
                incentive.explanation = {**incentive.explanation, "limitedFrom": promised}
                if not incentive._state.adding:
                    incentive.save(update_fields=["reward_amount", "explanation"])
            _announce(incentive, batch)
        # The room is checked for what was promised (as when it was checked first); what is
        # counted is what got through.
        if deferred and not _budget_spend(
            campaign,
            Decimal(promised),
            charge=Decimal(min(given, promised)),
            rewards=1 if given > 0 else 0,
            batch=batch,
        ):
            raise EventRetry(exhausted=frozenset({campaign.id}))
        if given == 0 and not incentive.completion_key:
            INCENTIVES.labels(type=incentive.type, outcome="limited").inc()

    return settle


def incentives_provide(tenant: Tenant, member: Member, event: dict, context: IncentiveContext) -> list[EngineIncentive]:
    """The incentive provider the earning engine calls for every purchase and action."""
    campaigns = [
        c for c in active_campaigns_get(tenant=tenant) if c.triggered_by(event["type"], event.get("action_code"))
    ]
    if not campaigns:
        return []
    cohorts = _cohorts_of(member) if any(_reads_cohorts(c) for c in campaigns) else {}
    facts = _facts(tenant=tenant, member=member, event=event, cohorts=cohorts, tier=context.tier)
    decisions = _decide(
        tenant=tenant, member=member, event=event, context=context, campaigns=campaigns, facts=facts, cohorts=cohorts
    )
    incentives = []
    for decision in decisions:
        INCENTIVES.labels(type=decision.reward_type or "-", outcome=decision.outcome).inc()
        explained = decision.explain()
        if decision.outcome != "issued":
            source = f"campaign:{decision.campaign.id}"
            incentives.append(EngineIncentive(points=0, source=source, explanation=explained))
            continue
        batch = None if context.dry_run else context.batch
        incentive = _issue(tenant=tenant, member=member, event=event, decision=decision, now=context.now, batch=batch)
        explained["incentiveId"] = str(incentive.pk)
        if decision.reward_type == "POINTS":
            settle = _settler(
                tenant=tenant,
                member=member,
                incentive=incentive,
                campaign=decision.campaign,
                deferred=decision.budget_deferred,
                batch=batch,
            )
        else:
            _announce(incentive, batch)
            deferred = decision.budget_deferred
            settle = (
                _budget_settler(campaign=decision.campaign, amount=decision.amount, batch=batch) if deferred else None
            )
        incentives.append(
            EngineIncentive(
                points=decision.points, source=f"campaign:{decision.campaign.id}", explanation=explained, settle=settle
            )
        )
    return incentives


def incentives_preview(tenant: Tenant, member: Member, event: dict, context: IncentiveContext):
    """What `incentives_provide` would answer, when no campaign would issue anything: the
    decisions, computed without a write. None when one would issue (then only
    `incentives_provide` may answer, as it spends). The set-based batch path asks this first."""
    campaigns = [
        c for c in active_campaigns_get(tenant=tenant) if c.triggered_by(event["type"], event.get("action_code"))
    ]
    if not campaigns:
        return []
    cohorts = _cohorts_of(member) if any(_reads_cohorts(c) for c in campaigns) else {}
    facts = _facts(tenant=tenant, member=member, event=event, cohorts=cohorts, tier=context.tier)
    exclusive = [c for c in campaigns if c.stacking == Campaign.Stacking.EXCLUSIVE]
    stackable = [c for c in campaigns if c.stacking != Campaign.Stacking.EXCLUSIVE]
    decisions = []
    for campaign in exclusive + stackable:  # the order `_decide` evaluates them in
        decision = _evaluate_without_writes(
            tenant=tenant,
            event=event,
            context=context,
            campaign=campaign,
            facts=facts,
            cohorts=cohorts,
            ignore_status=False,
        )
        if decision.outcome == "issued":
            return None
        decisions.append(decision)
    incentives = []
    for decision in decisions:
        INCENTIVES.labels(type=decision.reward_type or "-", outcome=decision.outcome).inc()
        source = f"campaign:{decision.campaign.id}"
        incentives.append(EngineIncentive(points=0, source=source, explanation=decision.explain()))
    return incentives


def _decide(*, tenant, member, event, context, campaigns, facts, cohorts, ignore_status=False) -> list[Decision]:
    """Evaluate in priority order. An exclusive campaign that issues is the only one that
    applies; otherwise every stackable campaign that issues applies."""
    exclusive = [c for c in campaigns if c.stacking == Campaign.Stacking.EXCLUSIVE]
    stackable = [c for c in campaigns if c.stacking != Campaign.Stacking.EXCLUSIVE]
    decisions: list[Decision] = []
    for campaign in exclusive:
        decision = _evaluate(
            tenant=tenant,
            member=member,
            event=event,
            context=context,
            campaign=campaign,
            facts=facts,
            cohorts=cohorts,
            ignore_status=ignore_status,
        )
        decisions.append(decision)
        if decision.outcome == "issued":
            skipped = [Decision(c, "excluded", f"Exclusive campaign {campaign.name!r} applied.") for c in stackable]
            return decisions + skipped
    for campaign in stackable:
        decisions.append(
            _evaluate(
                tenant=tenant,
                member=member,
                event=event,
                context=context,
                campaign=campaign,
                facts=facts,
                cohorts=cohorts,
                ignore_status=ignore_status,
            )
        )
    return decisions


# Refunds ----------------------------------------------------------------------------------


def incentives_reverse(context: RefundContext) -> list[dict]:
    """The refund listener: reverse, in proportion to the money refunded so far, what the
    original event's incentives gave; give back budget and caps; take its quest step back.
    Points come back through the engine's own reversal of the original event's award."""
    tenant, member = context.tenant, context.member
    now = timezone.now()
    reversed_items = []
    incentives = Incentive.objects.select_for_update().filter(
        tenant=tenant, member=member, event_id=context.original_event_id, status=Incentive.Status.ISSUED
    )
    for incentive in incentives.order_by("pk"):
        if context.complete:
            target = incentive.reward_amount
        else:
            fraction = context.refunded_total / context.original_amount
            exponent = CENT if incentive.reward_currency not in ("POINTS", "COUPON") else Decimal(1)
            target = (incentive.reward_amount * fraction).quantize(exponent, rounding=ROUND_DOWN)
            if incentive.type == Incentive.Type.COUPON:
                target = Decimal(0)  # a coupon is taken back whole, on the full refund
        delta = target - incentive.reversed_amount
        if delta <= 0:
            continue
        fully = target >= incentive.reward_amount
        _spend_back(
            tenant=tenant,
            member=member,
            campaign_id=str(incentive.campaign_id),
            amount=delta,
            rewards=1 if fully else 0,
            at=incentive.issued_at,
        )
        incentive.reversed_amount = target
        fields = ["reversed_amount"]
        if fully:
            incentive.status, incentive.reversed_at = Incentive.Status.REVERSED, now
            fields += ["status", "reversed_at"]
            if incentive.completion_key:
                # The quest may be completed again.
                incentive.completion_key = f"reversed:{incentive.pk}"[:64]
                fields.append("completion_key")
                QuestProgress.objects.filter(incentive=incentive).update(incentive=None, completed_at=None)
        incentive.save(update_fields=fields)
        item = {
            "incentiveId": str(incentive.pk),
            "campaignId": str(incentive.campaign_id),
            "reversed": {"currency": incentive.reward_currency, "amount": str(delta)},
            "fully": fully,
        }
        reversed_items.append(item)
        outbox_write(
            tenant=tenant,
            type="incentive.reversed",
            member_ref=member.external_ref,
            data={**item, "eventId": context.refund_event_id, "originalEventId": context.original_event_id},
        )
    if context.complete:
        # The refunded purchase no longer counts towards quests not yet completed.
        steps = QuestProgress.objects.filter(
            tenant=tenant, member=member, event_id=context.original_event_id, completed_at__isnull=True
        )
        for campaign_id in steps.values_list("campaign_id", flat=True):
            reversed_items.append({"campaignId": str(campaign_id), "questStep": "taken back"})
        steps.delete()
    return reversed_items


# Preview ------------------------------------------------------------------------------------


def campaign_preview(*, tenant: Tenant, campaign: Campaign, last_n: int = 50, member_ref: str | None = None) -> dict:
    """What this campaign would have given on the tenant's last N purchases and actions (or
    the member's), whatever its status, through the engine's dry-run path: every write is
    rolled back, nothing is issued, no budget is spent."""
    from rewards.models import InboundEvent

    rule = campaign_rule_of(campaign)
    events = InboundEvent.objects.filter(
        tenant=tenant, status=InboundEvent.Status.APPLIED, type__in=("transaction.created", "action")
    )
    if member_ref:
        events = events.filter(member_ref=member_ref)
    rows = []
    summary = {"events": 0, "issued": 0, "points": 0, "cashback": Decimal(0), "coupons": 0}
    for inbound in events.order_by("-received_at", "-pk")[:last_n]:
        payload = dict(inbound.payload)
        payload["occurred_at"] = inbound.occurred_at
        if "amount" in payload and payload["amount"] is not None:
            payload["amount"] = Decimal(str(payload["amount"]))
        summary["events"] += 1
        row = {
            "eventId": inbound.event_id,
            "memberRef": inbound.member_ref,
            "type": inbound.type,
            "occurredAt": inbound.occurred_at,
        }
        if not rule.triggered_by(inbound.type, payload.get("action_code")):
            rows.append({**row, "outcome": "not_triggered", "detail": "The campaign does not listen to this event."})
            continue
        member = Member.objects.filter(tenant=tenant, external_ref=inbound.member_ref).first()
        if member is None:
            continue
        base_points = (inbound.result or {}).get("explanation", {}).get("basePoints", 0) or 0
        decision = _preview_one(tenant=tenant, member=member, event=payload, rule=rule, base_points=base_points)
        explained = decision.explain()
        rows.append({**row, "outcome": decision.outcome, "detail": explained.get("detail", "")})
        if decision.outcome == "issued":
            rows[-1]["reward"] = explained["reward"]
            summary["issued"] += 1
            if decision.reward_type == "POINTS":
                summary["points"] += decision.points
            elif decision.reward_type == "CASHBACK":
                summary["cashback"] += decision.amount
            else:
                summary["coupons"] += 1
    summary["cashback"] = str(summary["cashback"])
    return {"campaignId": str(campaign.pk), "rows": rows, "summary": summary}


class _Rollback(Exception):
    def __init__(self, decision: Decision):
        self.decision = decision


def _preview_one(*, tenant: Tenant, member: Member, event: dict, rule: CampaignRule, base_points: int) -> Decision:
    """One campaign against one past event, as a dry run: evaluated, then rolled back.
    Quest progress is left out (it would need the member's history replayed)."""
    context = IncentiveContext(base_points=int(base_points), now=event["occurred_at"], dry_run=True)
    cohorts = _cohorts_of(member)
    facts = _facts(tenant=tenant, member=member, event=event, cohorts=cohorts)
    if rule.type == Campaign.Type.QUEST:
        if rule.cohort_id and rule.cohort_id not in cohorts:
            return Decision(rule, "not_in_cohort", f"The member is not in cohort {rule.cohort_code!r}.")
        if "conditions" in rule.rule and not condition_evaluate(rule.rule["conditions"], facts):
            return Decision(rule, "conditions_not_met", "The event or member does not meet the conditions.")
        return Decision(rule, "quest_step", "This event would count towards the quest.")
    try:
        with transaction.atomic():
            decision = _evaluate(
                tenant=tenant,
                member=member,
                event=event,
                context=context,
                campaign=rule,
                facts=facts,
                cohorts=cohorts,
                ignore_status=True,
            )
            raise _Rollback(decision)
    except _Rollback as done:
        return done.decision
