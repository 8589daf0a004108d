import uuid

from django.db import models
from django.db.models import F, Q

from rewards.models.members import Member
from tenants.models import Tenant


class Account(models.Model):
    """A points account: a member's, or one of the tenant's system accounts.

    A member account keeps its balance in a column, updated in the same transaction as
    each transfer and never negative. System accounts (where points are issued from and
    redeemed, expired or adjusted to) have no balance column: their balance is derived
    from transfers, so concurrent earnings never queue on one hot row.
    """

    class Kind(models.TextChoices):
        MEMBER = "MEMBER", "Member points"
        PENDING = "PENDING", "Member points pending (returns window)"
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
        MATURED = "MATURED", "Pending points released"

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
    # The inserting transaction's id, set by the database (core.changefeed): the export's order.
    tx_id = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "idempotency_key"], name="transfer_idempotency_key_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_positive"),
            models.CheckConstraint(condition=~Q(debit_account=F("credit_account")), name="transfer_distinct_accounts"),
        ]
        indexes = [
            models.Index(fields=["debit_account", "-created_at"], name="transfer_debit_created"),
            models.Index(fields=["credit_account", "-created_at"], name="transfer_credit_created"),
            models.Index(fields=["tenant", "reference_type", "reference_id"], name="transfer_reference"),
            models.Index(fields=["tenant", "tx_id", "id"], name="transfer_changefeed"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} ({self.id})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Transfers are immutable; post a correcting transfer instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Transfers are immutable; post a correcting transfer instead.")


class EarnedLot(models.Model):
    """Points a member received in one credit, and how many of them are left.

    Lots overlay the member's accounts: the remaining points of a member's available lots
    add up to the spendable balance, those of pending lots to the pending balance. Spending
    takes from the lots closest to expiry first; a scheduled task releases pending lots and
    expires lapsed ones.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="lots")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="lots")
    transfer = models.OneToOneField(Transfer, on_delete=models.PROTECT, related_name="lot")
    points = models.BigIntegerField()
    remaining = models.BigIntegerField()
    pending_until = models.DateTimeField(null=True, blank=True, help_text="Spendable from then on.")
    expires_at = models.DateTimeField(null=True, blank=True)
    expiry_noticed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the member was told these points expire soon."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(points__gt=0), name="lot_points_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=F("points")), name="lot_remaining_within_points"
            ),
        ]
        indexes = [
            models.Index(
                fields=["member", "expires_at", "created_at"],
                condition=Q(remaining__gt=0),
                name="lot_open_by_expiry",
            ),
            models.Index(fields=["expires_at"], condition=Q(remaining__gt=0), name="lot_open_expiring"),
            models.Index(fields=["pending_until"], condition=Q(pending_until__isnull=False), name="lot_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.member} {self.remaining}/{self.points}"
