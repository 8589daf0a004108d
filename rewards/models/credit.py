import uuid

from django.db import models
from django.db.models import Q

from rewards.models.ledger import Transfer
from rewards.models.members import Member
from tenants.models import Tenant, currency_validator


class CreditPackage(models.Model):
    """Points a member can buy (seed 003 CREDIT_PACKAGES): a price in money for a number of points."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="credit_packages")
    code = models.SlugField(max_length=64, help_text="Unique in the tenant.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    price = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, validators=[currency_validator])
    reward_points = models.BigIntegerField(help_text="Points credited for one purchase.")
    is_active = models.BooleanField(default=True, help_text="Only active packages are offered and sold.")
    sort_order = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="credit_package_code_unique"),
            models.CheckConstraint(condition=Q(price__gt=0), name="credit_package_price_positive"),
            models.CheckConstraint(condition=Q(reward_points__gt=0), name="credit_package_points_positive"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="credit_package_currency_iso"),
        ]
        indexes = [models.Index(fields=["tenant", "sort_order", "name"], name="credit_package_tenant_order")]

    def __str__(self) -> str:
        return f"{self.name} ({self.reward_points} points for {self.price} {self.currency})"


class CreditPurchase(models.Model):
    """One member's purchase of a credit package (seed 003 CREDIT_PURCHASES).

    The row is committed PENDING before the payment gateway is called, and its id is the
    gateway's idempotency key, so a charge whose answer was lost can be looked up and settled
    later. Amount, currency and points are snapshots of the package at the time of purchase.
    Only a fingerprint of the payment token is kept, never the token.
    """

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending (waiting for the gateway)"
        COMPLETED = "COMPLETED", "Completed (points credited)"
        DECLINED = "DECLINED", "Declined by the gateway"
        FAILED = "FAILED", "Failed (not charged)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="credit_purchases")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="credit_purchases")
    package = models.ForeignKey(CreditPackage, on_delete=models.PROTECT, related_name="purchases")
    amount_paid = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, validators=[currency_validator])
    points_awarded = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    gateway_reference = models.CharField(max_length=128, blank=True, default="")
    decline_code = models.CharField(max_length=64, blank=True, default="", help_text="Why it was declined or failed.")
    decline_reason = models.CharField(max_length=500, blank=True, default="")
    payment_token_fingerprint = models.CharField(
        max_length=64, blank=True, default="", help_text="A SHA-256 prefix of the payment token; never the token."
    )
    transfer = models.OneToOneField(
        Transfer, null=True, blank=True, on_delete=models.PROTECT, related_name="credit_purchase"
    )
    idempotency_key = models.CharField(
        max_length=255, blank=True, default="", help_text="The Idempotency-Key of the HTTP request that started it."
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Calls made to the gateway (charge and lookups).")
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_paid__gt=0), name="credit_purchase_amount_positive"),
            models.CheckConstraint(condition=Q(points_awarded__gt=0), name="credit_purchase_points_positive"),
            # The settling transaction marks the row COMPLETED, then posts and links the transfer.
            models.CheckConstraint(
                condition=Q(transfer__isnull=True) | Q(status="COMPLETED"),
                name="credit_purchase_transfer_only_completed",
            ),
            models.CheckConstraint(
                condition=Q(status="PENDING", resolved_at__isnull=True)
                | (~Q(status="PENDING") & Q(resolved_at__isnull=False)),
                name="credit_purchase_resolved_at_when_settled",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="credit_purchase_status_created"),
            models.Index(fields=["tenant", "member", "-created_at"], name="credit_purchase_member_created"),
            models.Index(fields=["tenant", "-created_at"], name="credit_purchase_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"{self.package_id} for {self.member_id}: {self.status}"
