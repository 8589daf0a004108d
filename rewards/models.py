import uuid

from django.db import models
from django.db.models import Q

from core.validators import member_ref_validator
from tenants.models import Tenant, locale_validator


class Member(models.Model):
    """One of a tenant's customers, known by the tenant's own id for it (`memberRef`)."""

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE", "Active"
        SUSPENDED = "SUSPENDED", "Suspended"
        CLOSED = "CLOSED", "Closed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="members")
    external_ref = models.CharField("member ref", max_length=128, validators=[member_ref_validator])
    locale = models.CharField(max_length=35, blank=True, default="", validators=[locale_validator])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "external_ref"], name="member_ref_unique_per_tenant")]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="member_tenant_created")]

    def __str__(self) -> str:
        return self.external_ref

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Account(models.Model):
    """A points account: a member's, or one of the tenant's system accounts.

    A member account keeps its balance in a column, updated in the same transaction as
    each transfer and never negative. System accounts (where points are issued from and
    redeemed, expired or adjusted to) have no balance column: their balance is derived
    from transfers, so concurrent earnings never queue on one hot row.
    """

    class Kind(models.TextChoices):
        MEMBER = "MEMBER", "Member points"
        ISSUANCE = "ISSUANCE", "Issued (earning)"
        REDEMPTION = "REDEMPTION", "Redeemed"
        EXPIRY = "EXPIRY", "Expired"
        PURCHASE = "PURCHASE", "Bought"
        ADJUSTMENT = "ADJUSTMENT", "Operator adjustments"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="accounts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    member = models.ForeignKey(Member, null=True, blank=True, on_delete=models.PROTECT, related_name="accounts")
    balance = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["member", "kind"], condition=Q(member__isnull=False), name="account_one_per_member_kind"
            ),
            models.UniqueConstraint(
                fields=["tenant", "kind"], condition=Q(member__isnull=True), name="account_one_system_per_kind"
            ),
            models.CheckConstraint(
                condition=(Q(member__isnull=True) & Q(balance__isnull=True))
                | (Q(member__isnull=False) & Q(balance__gte=0)),
                name="account_member_balance_never_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.member or self.tenant} {self.kind}"

    @property
    def is_system(self) -> bool:
        return self.member_id is None


class Transfer(models.Model):
    """An immutable movement of a positive number of points between two accounts.

    A correction is a new transfer; rows are never updated or deleted (the database
    refuses it on PostgreSQL).
    """

    class Kind(models.TextChoices):
        EARN = "EARN", "Earned"
        ADJUSTMENT = "ADJUSTMENT", "Operator adjustment"
        REDEMPTION = "REDEMPTION", "Redemption"
        REDEMPTION_REFUND = "REDEMPTION_REFUND", "Redemption refunded"
        REVERSAL = "REVERSAL", "Reversal (refund of a purchase)"
        EXPIRY = "EXPIRY", "Expiry"
        PURCHASE = "PURCHASE", "Points bought"
        INCENTIVE = "INCENTIVE", "Campaign incentive"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="transfers")
    debit_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="debits")
    credit_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="credits")
    amount = models.BigIntegerField()
    kind = models.CharField(max_length=24, choices=Kind.choices)
    reason = models.CharField(max_length=500, blank=True, default="")
    reference_type = models.CharField(max_length=32, blank=True, default="")
    reference_id = models.CharField(max_length=128, blank=True, default="")
    idempotency_key = models.CharField(max_length=255)
    explanation = models.JSONField(default=dict, blank=True)
    debit_balance_after = models.BigIntegerField(null=True, blank=True)
    credit_balance_after = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "idempotency_key"], name="transfer_idempotency_key_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_positive"),
            models.CheckConstraint(
                condition=~Q(debit_account=models.F("credit_account")), name="transfer_distinct_accounts"
            ),
        ]
        indexes = [
            models.Index(fields=["debit_account", "-created_at"], name="transfer_debit_created"),
            models.Index(fields=["credit_account", "-created_at"], name="transfer_credit_created"),
            models.Index(fields=["tenant", "reference_type", "reference_id"], name="transfer_reference"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} ({self.id})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Transfers are immutable; post a correcting transfer instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Transfers are immutable; post a correcting transfer instead.")
