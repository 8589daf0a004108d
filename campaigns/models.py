"""Campaigns (seed 001 CAMPAIGN), cohorts, quest progress (USER_AGGREGATION) and the
incentives they issue (INCENTIVE)."""

import uuid
from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from core.db import JsonGinIndex
from rewards.models import Member
from tenants.models import Tenant

action_code_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", "Use letters, digits, . _ : - (max 64), e.g. app.login."
)


class Action(models.Model):
    """A tenant's catalog of known action codes (seed 001 ACTION): campaign triggers and
    quest steps must name one of these."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="actions")
    code = models.CharField(max_length=64, validators=[action_code_validator])
    description = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "code"], name="action_code_unique_per_tenant")]

    def __str__(self) -> str:
        return self.code


class Cohort(models.Model):
    """A set of members: listed by hand (STATIC) or selected by a rule over their attributes,
    tier and activity (DYNAMIC), recomputed in the background."""

    class Kind(models.TextChoices):
        STATIC = "STATIC", "Static (a member list)"
        DYNAMIC = "DYNAMIC", "Dynamic (a rule, recomputed)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="cohorts")
    name = models.CharField(max_length=200)
    code = models.SlugField(max_length=64, help_text="How campaign conditions name it (member.cohorts).")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    rule_json = models.JSONField(default=dict, blank=True, help_text="DYNAMIC only: the membership condition.")
    member_count = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "code"], name="cohort_code_unique_per_tenant")]

    def __str__(self) -> str:
        return self.name


class CohortMember(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="memberships")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="cohort_memberships")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cohort", "member"], name="cohort_member_unique")]
        indexes = [models.Index(fields=["member", "cohort"], name="cohort_member_by_member")]

    def __str__(self) -> str:
        return f"{self.cohort_id}:{self.member_id}"


class CohortRun(models.Model):
    """One recompute of a dynamic cohort: when, how far it got, what changed."""

    class Status(models.TextChoices):
        QUEUED = "QUEUED", "Queued"
        RUNNING = "RUNNING", "Running"
        SUCCEEDED = "SUCCEEDED", "Succeeded"
        FAILED = "FAILED", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done.")
    stage = models.CharField(max_length=64, blank=True, default="")
    members_total = models.PositiveIntegerField(default=0)
    members_after = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    requested_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["cohort", "-created_at"], name="cohort_run_recent")]

    def __str__(self) -> str:
        return f"{self.cohort_id} {self.status} {self.progress}%"


class Campaign(models.Model):
    """A promotion (seed 001 CAMPAIGN): when it runs, who for, what triggers it, what it gives,
    and how much it may give in all and per member."""

    class Type(models.TextChoices):
        SIMPLE = "SIMPLE", "Simple"
        QUEST = "QUEST", "Quest"

    class Status(models.TextChoices):
        DRAFT = "DRAFT", "Draft"
        ACTIVE = "ACTIVE", "Active"
        PAUSED = "PAUSED", "Paused"
        ENDED = "ENDED", "Ended"

    class Stacking(models.TextChoices):
        STACKABLE = "STACKABLE", "Stacks with other campaigns"
        EXCLUSIVE = "EXCLUSIVE", "Exclusive: the highest-priority exclusive campaign alone applies"

    class Period(models.TextChoices):
        DAY = "DAY", "Day"
        WEEK = "WEEK", "Week"
        MONTH = "MONTH", "Month"
        CAMPAIGN = "CAMPAIGN", "Whole campaign"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    type = models.CharField(max_length=8, choices=Type.choices, default=Type.SIMPLE)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    start_at = models.DateTimeField()
    end_at = models.DateTimeField(null=True, blank=True)
    rule_json = models.JSONField(encoder=DjangoJSONEncoder)
    cohort = models.ForeignKey(Cohort, null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns")
    priority = models.IntegerField(default=0, help_text="Higher runs first.")
    stacking = models.CharField(max_length=10, choices=Stacking.choices, default=Stacking.STACKABLE)
    budget_rewards = models.PositiveIntegerField(null=True, blank=True, help_text="Most incentives in all.")
    budget_amount = models.DecimalField(
        max_digits=18,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Most reward in all (points, or money for cashback).",
    )
    member_cap_rewards = models.PositiveIntegerField(null=True, blank=True, help_text="Most incentives per member.")
    member_cap_amount = models.DecimalField(
        max_digits=18, decimal_places=4, null=True, blank=True, validators=[MinValueValidator(Decimal(0))]
    )
    member_cap_period = models.CharField(max_length=8, choices=Period.choices, default=Period.CAMPAIGN)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "status"], name="campaign_tenant_status"),
            # jsonb_path_ops: containment (`@>`) only, and selective enough that the planner uses it.
            JsonGinIndex(fields=["rule_json"], name="campaign_rule_gin", opclasses=["jsonb_path_ops"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_at__isnull=True) | Q(end_at__gt=F("start_at")), name="campaign_window_ordered"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CampaignStats(models.Model):
    """What a campaign has issued so far, net of reversals: the budget's counters. A row of
    its own, so that editing the campaign never overwrites (or waits on) them."""

    campaign = models.OneToOneField(Campaign, primary_key=True, on_delete=models.CASCADE, related_name="stats")
    rewards_issued = models.PositiveIntegerField(default=0)
    amount_issued = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal(0))

    class Meta:
        verbose_name_plural = "campaign stats"
        constraints = [
            models.CheckConstraint(condition=Q(amount_issued__gte=0), name="campaign_amount_issued_not_negative")
        ]

    def __str__(self) -> str:
        return f"{self.rewards_issued} rewards, {self.amount_issued}"


class CampaignMemberUsage(models.Model):
    """A member's incentives from one campaign in one cap period."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="member_usage")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateField()
    rewards = models.PositiveIntegerField(default=0)
    amount = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal(0))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "member", "period_start"], name="campaign_usage_unique"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="campaign_usage_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} from {self.period_start}: {self.rewards}"


class CouponPool(models.Model):
    """Codes a COUPON reward hands out, one per incentive."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="coupon_pools")
    code = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "code"], name="coupon_pool_unique_per_tenant")]

    def __str__(self) -> str:
        return self.code


class CouponCode(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    pool = models.ForeignKey(CouponPool, on_delete=models.CASCADE, related_name="codes")
    code = models.CharField(max_length=128)
    member = models.ForeignKey(Member, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    assigned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pool", "code"], name="coupon_code_unique_per_pool")]
        indexes = [
            models.Index(fields=["pool", "id"], condition=Q(member__isnull=True), name="coupon_code_free"),
        ]

    def __str__(self) -> str:
        return self.code


class Incentive(models.Model):
    """A reward a campaign issued (seed 001 INCENTIVE): what, to whom, why."""

    class Type(models.TextChoices):
        CASHBACK = "CASHBACK", "Cashback"
        POINTS = "POINTS", "Points"
        COUPON = "COUPON", "Coupon"

    class Status(models.TextChoices):
        ISSUED = "ISSUED", "Issued"
        REVERSED = "REVERSED", "Reversed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="incentives")
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="incentives")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="incentives")
    type = models.CharField(max_length=8, choices=Type.choices)
    reward_currency = models.CharField(max_length=8, help_text="POINTS, COUPON, or the tenant's currency.")
    reward_amount = models.DecimalField(max_digits=18, decimal_places=4)
    reversed_amount = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal(0))
    coupon = models.OneToOneField(CouponCode, null=True, blank=True, on_delete=models.PROTECT, related_name="incentive")
    event_id = models.CharField(max_length=128, help_text="The inbound event that caused it.")
    completion_key = models.CharField(
        max_length=64, blank=True, default="", help_text="Set on a quest's completion: one per member and campaign."
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ISSUED)
    explanation = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    issued_at = models.DateTimeField()
    reversed_at = models.DateTimeField(null=True, blank=True)
    # The inserting transaction's id, set by the database (core.changefeed): the export's order.
    tx_id = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["member", "-issued_at"], name="incentive_member_issued"),
            models.Index(fields=["tenant", "tx_id", "id"], name="incentive_changefeed"),
            models.Index(fields=["tenant", "event_id"], name="incentive_event"),
            models.Index(fields=["campaign", "-issued_at"], name="incentive_campaign_issued"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "member", "event_id"], name="incentive_once_per_event"),
            models.UniqueConstraint(
                fields=["campaign", "member", "completion_key"],
                condition=~Q(completion_key=""),
                name="quest_completes_once",
            ),
            models.CheckConstraint(
                condition=Q(reversed_amount__gte=0) & Q(reversed_amount__lte=F("reward_amount")),
                name="incentive_reversed_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.reward_amount} {self.reward_currency}"


class QuestProgress(models.Model):
    """A member's progress on one step of a quest (seed 001 USER_AGGREGATION): one row per
    counted action, so that a refund can take its step back and a window can be applied;
    `incentive` and `completed_at` are set on the rows that completed the quest."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="progress")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="quest_progress")
    action_code = models.CharField(max_length=64)
    event_id = models.CharField(max_length=128)
    occurred_at = models.DateTimeField()
    incentive = models.ForeignKey(Incentive, null=True, blank=True, on_delete=models.SET_NULL, related_name="steps")
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "quest progress"
        constraints = [
            models.UniqueConstraint(fields=["campaign", "member", "event_id"], name="quest_step_once_per_event"),
        ]
        indexes = [models.Index(fields=["campaign", "member", "action_code"], name="quest_progress_member")]

    def __str__(self) -> str:
        return f"{self.action_code} {self.event_id}"
