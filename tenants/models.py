import uuid
import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

currency_validator = RegexValidator(r"^[A-Z]{3}$", "Use a three-letter ISO 4217 code, e.g. USD.")
locale_validator = RegexValidator(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", "Use a BCP 47 language tag, e.g. en or pt-BR.")


def validate_timezone(value: str) -> None:
    # A validator, not choices: the zone list follows the machine's tzdata, which the
    # migrations must not.
    if value not in zoneinfo.available_timezones():
        raise ValidationError("Unknown time zone %(value)s.", code="invalid_choice", params={"value": value})


class ExpiryPolicy(models.TextChoices):
    NEVER = "NEVER", "Points never expire"
    DAYS = "DAYS", "N days after earning"
    END_OF_MONTH = "END_OF_MONTH", "At the end of the month after N months (N=0: this month)"
    END_OF_YEAR = "END_OF_YEAR", "At the end of the year after N years (N=0: this year)"


class Tenant(models.Model):
    """A merchant running a loyalty program; every other row belongs to one."""

    ExpiryPolicy = ExpiryPolicy

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE", "Active"
        SUSPENDED = "SUSPENDED", "Suspended"

    class Rounding(models.TextChoices):
        FLOOR = "FLOOR", "Round down"
        HALF_UP = "HALF_UP", "Round half up"
        HALF_EVEN = "HALF_EVEN", "Round half to even"
        CEILING = "CEILING", "Round up"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    currency = models.CharField(max_length=3, default="USD", validators=[currency_validator])
    point_value = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal("0.01"),
        validators=[MinValueValidator(Decimal("0.000001"))],
        help_text="Money (in the tenant's currency) that one point is worth.",
    )
    earn_rate = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Points earned per unit of currency spent.",
    )
    rounding = models.CharField(max_length=16, choices=Rounding.choices, default=Rounding.FLOOR)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    default_locale = models.CharField(max_length=35, default="en", validators=[locale_validator])
    pending_days = models.PositiveIntegerField(
        default=0, help_text="Earned points stay pending this many days (returns window) before they can be spent."
    )
    expiry_policy = models.CharField(max_length=16, choices=ExpiryPolicy.choices, default=ExpiryPolicy.NEVER)
    expiry_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="With the DAYS policy: points expire this many days after earning."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(point_value__gt=0), name="tenant_point_value_positive"),
            models.CheckConstraint(condition=Q(earn_rate__gte=0), name="tenant_earn_rate_not_negative"),
            models.CheckConstraint(
                condition=~Q(expiry_policy="DAYS") | Q(expiry_days__gte=1), name="tenant_expiry_days_with_days_policy"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class ApiKey(models.Model):
    """A tenant's server-to-server credential. Only a SHA-256 of the key is stored."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, help_text="The first characters of the key, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class Operator(models.Model):
    """A Django user who runs one tenant's program from the back office."""

    class Role(models.TextChoices):
        # What each may change is in core/roles.py (the back office and the API share it).
        OWNER = "OWNER", "Owner: everything, including operators, API keys and webhooks"
        MANAGER = "MANAGER", "Manager: the program: campaigns, cohorts, tiers, catalog, categories, partners, members"
        SUPPORT = "SUPPORT", "Support: members, point adjustments, redemption retries and refunds, dead-letter replays"
        VIEWER = "VIEWER", "Read-only"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="operator")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="operators")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


class Limit(models.Model):
    """A cap on points issued (seed LIMIT). GLOBAL caps the whole tenant; USER without a
    member is the default cap for each member; USER with a member overrides it."""

    class Scope(models.TextChoices):
        GLOBAL = "GLOBAL", "Tenant-wide"
        USER = "USER", "Per member"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="limits")
    scope = models.CharField(max_length=8, choices=Scope.choices)
    member_ref = models.CharField(max_length=128, blank=True, default="", help_text="Set for one member's override.")
    max_per_day = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(0)])
    max_total = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(0)])
    window_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Window of max_total in days; empty means lifetime."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "member_ref"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "scope", "member_ref"], name="limit_unique_per_scope"),
            models.CheckConstraint(
                condition=Q(scope="USER") | Q(member_ref=""), name="limit_member_only_for_user_scope"
            ),
            models.CheckConstraint(
                condition=Q(max_per_day__isnull=True) | Q(max_per_day__gte=0), name="limit_max_per_day_gte_0"
            ),
            models.CheckConstraint(
                condition=Q(max_total__isnull=True) | Q(max_total__gte=0), name="limit_max_total_gte_0"
            ),
            models.CheckConstraint(
                condition=Q(window_days__isnull=True) | Q(window_days__gte=1), name="limit_window_days_gte_1"
            ),
        ]

    def __str__(self) -> str:
        who = f" {self.member_ref}" if self.member_ref else ""
        return f"{self.tenant} {self.scope}{who}"


# Webhooks ------------------------------------------------------------------------------


class WebhookEndpoint(models.Model):
    """Where a tenant wants its outbound events POSTed, signed with the endpoint's secret."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000, help_text="http(s) URL; private and loopback addresses are refused.")
    secret = models.CharField(max_length=128, editable=False, help_text="HMAC-SHA256 key of the signatures.")
    description = models.CharField(max_length=200, blank=True, default="")
    event_types = models.JSONField(
        default=list, blank=True, help_text='Event types to send, e.g. ["incentive.generated"]; empty or ["*"]: all.'
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "is_active"], name="webhook_endpoint_tenant_active")]

    def __str__(self) -> str:
        return self.description or self.url

    def subscribes_to(self, event_type: str) -> bool:
        types = self.event_types or []
        return not types or "*" in types or event_type in types


class WebhookDelivery(models.Model):
    """One event on its way to one endpoint. An endpoint's deliveries go out in `position`
    order; a failed one is retried with backoff and holds back the ones behind it."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        DELIVERED = "DELIVERED", "Delivered"
        DEAD_LETTERED = "DEAD_LETTERED", "Dead-lettered"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=64)
    event_type = models.CharField(max_length=64)
    position = models.BigIntegerField(null=True, blank=True, help_text="The event's place in the outbox order.")
    payload = models.JSONField(help_text="The event envelope, sent as the request body.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts in all, replays included.")
    series_attempts = models.PositiveIntegerField(
        default=0, help_text="Attempts since the current series began (a replay starts a new one); sets the backoff."
    )
    next_attempt_at = models.DateTimeField()
    first_attempt_at = models.DateTimeField(null=True, blank=True, help_text="First attempt of the current series.")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    dead_lettered_at = models.DateTimeField(null=True, blank=True)
    replays = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="webhook_delivery_once_per_endpoint"),
        ]
        indexes = [
            models.Index(fields=["endpoint", "status", "position"], name="webhook_delivery_queue"),
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="PENDING"), name="webhook_delivery_pending_due"
            ),
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_log"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → {self.endpoint_id}"


class WebhookAttempt(models.Model):
    """One try at a delivery: what the receiver answered, or why there was no answer."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    response_body = models.TextField(blank=True, default="", help_text="The first kilobyte of the answer.")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error[:40]}"
