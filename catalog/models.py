"""The reward catalog (seed 003 CATEGORIES and PRODUCTS, seed 000 catalog and inventory):
categories, partners who fulfil rewards, items with their stock, and every stock movement."""

import uuid
from decimal import Decimal

from django.contrib.postgres.indexes import OpClass
from django.contrib.postgres.search import SearchVectorField
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from core.db import PostgresGinIndex
from tenants.models import Tenant

code_validator = RegexValidator(r"^[a-z0-9][a-z0-9_-]{0,63}$", "Use lowercase letters, digits, _ and - (max 64).")


class Partner(models.Model):
    """Who fulfils a tenant's rewards: a gift card issuer, a shipper, a travel agency."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="catalog_partners")
    code = models.CharField(max_length=64, validators=[code_validator])
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "code"], name="catalog_partner_code_unique")]

    def __str__(self) -> str:
        return self.name


class Category(models.Model):
    """A shelf of the catalog (seed 003 CATEGORIES), optionally under a parent."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="catalog_categories")
    code = models.CharField(max_length=64, validators=[code_validator])
    name = models.CharField(max_length=200)
    names = models.JSONField(default=dict, blank=True, help_text='Name per locale, e.g. {"ar": "إلكترونيات"}.')
    description = models.TextField(blank=True, default="")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    sort_order = models.IntegerField(default=0)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "categories"
        constraints = [models.UniqueConstraint(fields=["tenant", "code"], name="catalog_category_code_unique")]

    def __str__(self) -> str:
        return self.name


class Item(models.Model):
    """Something members redeem points for (seed 003 PRODUCTS). `stock_quantity` None means
    unlimited; it moves only through stock movements. `version` is the optimistic lock of
    operator edits: an edit made on an older version is refused."""

    class Kind(models.TextChoices):
        MERCHANDISE = "MERCHANDISE", "Merchandise"
        GIFT_CARD = "GIFT_CARD", "Gift card"
        TRAVEL = "TRAVEL", "Travel"
        STATEMENT_CREDIT = "STATEMENT_CREDIT", "Statement credit"
        DIGITAL = "DIGITAL", "Digital"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="catalog_items")
    sku = models.CharField(max_length=64, blank=True, default="", help_text="The tenant's own reference (unique).")
    name = models.CharField(max_length=200)
    names = models.JSONField(default=dict, blank=True, help_text='Name per locale, e.g. {"ar": "سماعات"}.')
    description = models.TextField(blank=True, default="")
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.PROTECT, related_name="items")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.MERCHANDISE)
    point_cost = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    cash_value = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=Decimal("0.00"),
        validators=[MinValueValidator(Decimal(0))],
        help_text="What the item is worth in the tenant's currency.",
    )
    stock_quantity = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: unlimited.")
    is_active = models.BooleanField(default=True)
    is_in_offer_pool = models.BooleanField(default=False)
    image = models.ImageField(upload_to="catalog/items/%Y/%m/", blank=True, default="")
    image_url = models.URLField(max_length=500, blank=True, default="", help_text="An image hosted elsewhere.")
    partner = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="items")
    min_tier = models.CharField(
        max_length=64, blank=True, default="", help_text="Only members at this tier or above see the item."
    )
    version = models.PositiveIntegerField(default=1)
    # Kept by a PostgreSQL trigger from the names and the description (catalog/migrations/0002).
    search_vector = SearchVectorField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "sku"], condition=~Q(sku=""), name="catalog_item_sku_unique"),
            models.CheckConstraint(condition=Q(point_cost__gt=0), name="catalog_item_point_cost_positive"),
            models.CheckConstraint(condition=Q(cash_value__gte=0), name="catalog_item_cash_value_not_negative"),
            models.CheckConstraint(
                condition=Q(stock_quantity__isnull=True) | Q(stock_quantity__gte=0),
                name="catalog_item_stock_not_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "is_active", "point_cost"], name="catalog_item_active_cost"),
            models.Index(fields=["tenant", "category", "point_cost"], name="catalog_item_category_cost"),
            # With the tenant in it (btree_gin), the index answers a tenant's search alone: with
            # the vector only, PostgreSQL read a common word's matches through the tenant index
            # instead, testing every one of the tenant's items (3-4x slower over 100,000 items).
            PostgresGinIndex(fields=["tenant", "search_vector"], name="catalog_item_search"),
            PostgresGinIndex(OpClass("name", name="gin_trgm_ops"), name="catalog_item_name_trgm"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def in_stock(self) -> bool:
        return self.stock_quantity is None or self.stock_quantity > 0


class StockMovement(models.Model):
    """One change of an item's stock, with what caused it: inventory is the sum of these."""

    class Kind(models.TextChoices):
        INITIAL = "INITIAL", "Initial stock"
        RESERVE = "RESERVE", "Reserved (redemption)"
        RELEASE = "RELEASE", "Released (redemption cancelled or failed)"
        RESTOCK = "RESTOCK", "Restocked"
        ADJUST = "ADJUST", "Adjusted (count, damage, loss)"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="stock_movements")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    quantity = models.IntegerField(help_text="The change: negative takes stock out.")
    stock_after = models.PositiveIntegerField()
    reason = models.CharField(max_length=500, blank=True, default="")
    reference_type = models.CharField(max_length=32, blank=True, default="")
    reference_id = models.CharField(max_length=128, blank=True, default="")
    actor = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(quantity=0), name="catalog_stock_movement_not_zero")]
        indexes = [
            models.Index(fields=["item", "-created_at"], name="catalog_stock_item_created"),
            models.Index(fields=["tenant", "reference_type", "reference_id"], name="catalog_stock_reference"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.quantity:+d} {self.item_id}"
