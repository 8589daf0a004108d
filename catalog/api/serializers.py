from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.models import Category, Item, StockMovement
from catalog.pricing import member_point_cost
from catalog.search import terms
from core.i18n import accept_language_parse, locale_match

NAMES_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "example": {"ar": "سماعات لاسلكية", "he": "אוזניות אלחוטיות"},
    "description": "Name per BCP 47 locale; `name` is the default.",
}


@extend_schema_field(NAMES_SCHEMA)
class NamesField(serializers.JSONField):
    pass


def localized(obj, context: dict) -> tuple[str, str | None]:
    """(name, locale): the name in a locale the caller asked for (`?locale=`, then
    Accept-Language by weight), else the default name. A translation nobody asked for is
    never shown in place of the default name."""
    names = {tag: name for tag, name in (obj.names or {}).items() if isinstance(name, str) and name}
    requested = context.get("requested_locale")
    wanted = ([requested] if requested else []) + accept_language_parse(context.get("accept_language"))
    for tag in wanted:
        found = locale_match(tag, list(names))
        if found is not None:
            return names[found], found
    return obj.name, None


class CatalogCategoryRefSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class CatalogCategorySerializer(serializers.ModelSerializer):
    """Context: `requested_locale`, `accept_language`, `default_locale`."""

    name = serializers.SerializerMethodField()
    locale = serializers.SerializerMethodField()
    names = NamesField(read_only=True)
    parent = serializers.SerializerMethodField()

    class Meta:
        model = Category
        fields = ["code", "name", "names", "locale", "description", "parent", "sort_order", "is_active"]
        read_only_fields = fields

    def get_name(self, obj) -> str:
        return localized(obj, self.context)[0]

    def get_locale(self, obj) -> str | None:
        return localized(obj, self.context)[1]

    def get_parent(self, obj) -> str | None:
        return obj.parent.code if obj.parent_id else None


class CatalogCategoryWriteSerializer(serializers.Serializer):
    code = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=200)
    names = NamesField(required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    parent = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=64)
    sort_order = serializers.IntegerField(required=False, min_value=-1_000_000, max_value=1_000_000)
    is_active = serializers.BooleanField(required=False)


class CatalogCategoryUpdateSerializer(CatalogCategoryWriteSerializer):
    code = None


class CatalogItemSerializer(serializers.ModelSerializer):
    """An item as shown. Context: `viewer` (catalog.selectors.Viewer), `currency`, `request`
    and the locale choices. `memberPointCost` is what the viewing member pays (their tier's
    discount applied); null when the tenant itself looks."""

    item_id = serializers.UUIDField(source="id", read_only=True)
    name = serializers.SerializerMethodField()
    locale = serializers.SerializerMethodField()
    names = NamesField(read_only=True)
    category = serializers.SerializerMethodField()
    partner = serializers.SerializerMethodField()
    member_point_cost = serializers.SerializerMethodField()
    currency = serializers.SerializerMethodField()
    in_stock = serializers.BooleanField(read_only=True)
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = Item
        fields = [
            "item_id",
            "sku",
            "name",
            "names",
            "locale",
            "description",
            "category",
            "kind",
            "point_cost",
            "member_point_cost",
            "cash_value",
            "currency",
            "stock_quantity",
            "in_stock",
            "is_active",
            "is_in_offer_pool",
            "image_url",
            "partner",
            "min_tier",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_name(self, obj) -> str:
        return localized(obj, self.context)[0]

    def get_locale(self, obj) -> str | None:
        return localized(obj, self.context)[1]

    @extend_schema_field(CatalogCategoryRefSerializer(allow_null=True))
    def get_category(self, obj):
        if obj.category_id is None:
            return None
        return {"code": obj.category.code, "name": localized(obj.category, self.context)[0]}

    def get_partner(self, obj) -> str | None:
        return obj.partner.code if obj.partner_id else None

    def get_member_point_cost(self, obj) -> int | None:
        viewer = self.context.get("viewer")
        if viewer is None or not viewer.is_member:
            return None
        return member_point_cost(obj.point_cost, viewer.discount_percentage)

    def get_currency(self, obj) -> str:
        return self.context.get("currency") or ""

    def get_image_url(self, obj) -> str | None:
        if obj.image:
            request = self.context.get("request")
            return request.build_absolute_uri(obj.image.url) if request else obj.image.url
        return obj.image_url or None


class CatalogItemWriteSerializer(serializers.Serializer):
    """POST and PUT: every field (PUT also needs the `version` it was based on)."""

    sku = serializers.CharField(required=False, allow_blank=True, max_length=64)
    name = serializers.CharField(max_length=200)
    names = NamesField(required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    category = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=64)
    kind = serializers.ChoiceField(choices=Item.Kind.choices, required=False)
    point_cost = serializers.IntegerField(min_value=1, max_value=2_147_483_647)
    cash_value = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal(0), required=False, coerce_to_string=True
    )
    is_active = serializers.BooleanField(required=False)
    is_in_offer_pool = serializers.BooleanField(required=False)
    image_url = serializers.URLField(required=False, allow_blank=True, max_length=500)
    partner = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=64)
    min_tier = serializers.CharField(required=False, allow_blank=True, max_length=64)


class CatalogItemCreateSerializer(CatalogItemWriteSerializer):
    stock_quantity = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2_147_483_647, help_text="Omit or null: unlimited."
    )


class CatalogItemUpdateSerializer(CatalogItemWriteSerializer):
    version = serializers.IntegerField(
        min_value=1, required=False, help_text="The version the edit is based on (or send If-Match)."
    )


class StockMovementSerializer(serializers.ModelSerializer):
    item_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = StockMovement
        fields = [
            "id",
            "item_id",
            "kind",
            "quantity",
            "stock_after",
            "reason",
            "reference_type",
            "reference_id",
            "actor",
            "created_at",
        ]
        read_only_fields = fields


class StockMovementWriteSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[StockMovement.Kind.RESTOCK, StockMovement.Kind.ADJUST])
    quantity = serializers.IntegerField(
        min_value=-2_147_483_647, max_value=2_147_483_647, help_text="RESTOCK: > 0; ADJUST: signed."
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


class CatalogItemQuerySerializer(serializers.Serializer):
    """Query parameters of the item list and search, spelled as on the wire."""

    category = serializers.CharField(required=False, max_length=64, help_text="A category code (with subcategories).")
    kind = serializers.ChoiceField(choices=Item.Kind.choices, required=False)
    minPoints = serializers.IntegerField(required=False, min_value=0, help_text="Point cost at least.")  # noqa: N815
    maxPoints = serializers.IntegerField(required=False, min_value=0, help_text="Point cost at most.")  # noqa: N815
    inStock = serializers.BooleanField(required=False, allow_null=True, default=None)  # noqa: N815
    offerPool = serializers.BooleanField(  # noqa: N815
        required=False, allow_null=True, default=None, help_text="Only items in (or out of) the offer pool."
    )
    affordable = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Only items the member can (true) or cannot (false) pay for now, after their tier discount. "
        "A member token's own member; with an API key, the member named by memberRef.",
    )
    memberRef = serializers.CharField(  # noqa: N815
        required=False,
        max_length=128,
        help_text="API key only: show the catalog as this member sees it (tier, discount, affordability).",
    )
    includeInactive = serializers.BooleanField(  # noqa: N815
        required=False, default=False, help_text="Tenant only: deactivated items too."
    )
    locale = serializers.CharField(required=False, max_length=35, help_text="The locale to show names in.")

    def validate(self, attrs):
        low, high = attrs.get("minPoints"), attrs.get("maxPoints")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"maxPoints": ["Must be at least minPoints."]})
        if attrs.get("affordable") is not None and not attrs.get("memberRef") and not self.context.get("member"):
            raise serializers.ValidationError({"memberRef": ["affordable needs a member: send memberRef."]})
        return attrs

    def filters(self) -> dict:
        data = self.validated_data
        return {
            "category": data.get("category"),
            "kind": data.get("kind"),
            "min_points": data.get("minPoints"),
            "max_points": data.get("maxPoints"),
            "in_stock": data.get("inStock"),
            "offer_pool": data.get("offerPool"),
            "affordable": data.get("affordable"),
        }


class CatalogItemSearchQuerySerializer(CatalogItemQuerySerializer):
    q = serializers.CharField(max_length=200, help_text="Words to find in names and descriptions; typos forgiven.")

    def validate_q(self, value):
        if not terms(value):
            raise serializers.ValidationError("Give at least one word to search for.")
        return value
