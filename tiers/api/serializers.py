from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tiers.models import Tier, TierPolicy, tier_id_validator
from tiers.selectors import tier_locale_choose
from tiers.services import MAX_BONUS_POINTS


class BenefitsSerializer(serializers.Serializer):
    """The documented shape of `benefits` (validated against a JSON Schema in the service)."""

    bonus_points = serializers.IntegerField(min_value=0, max_value=MAX_BONUS_POINTS, required=False)
    custom_perks = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=50)


@extend_schema_field(BenefitsSerializer)
class BenefitsField(serializers.JSONField):
    """Any JSON on the way in (the service checks it against its JSON Schema and names the
    key at fault); always both keys on the way out."""

    def to_representation(self, value):
        value = value if isinstance(value, dict) else {}
        return {"bonus_points": value.get("bonus_points", 0), "custom_perks": list(value.get("custom_perks", []))}


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "example": {"en": "Gold", "ar": "ذهبي"},
        "description": 'Name per BCP 47 locale; "en" or the tenant\'s default locale is required.',
    }
)
class NamesField(serializers.JSONField):
    pass


class TierSerializer(serializers.ModelSerializer):
    """A tier as shown: `name` in the negotiated `locale`, and every name in `names`.
    Context: `requested_locale`, `accept_language`, `default_locale`."""

    name = serializers.SerializerMethodField()
    locale = serializers.SerializerMethodField()
    names = NamesField(read_only=True)
    discount_percentage = serializers.DecimalField(max_digits=5, decimal_places=2, read_only=True)
    earn_multiplier = serializers.DecimalField(max_digits=6, decimal_places=3, read_only=True)
    benefits = BenefitsField(read_only=True)

    class Meta:
        model = Tier
        fields = [
            "tier_id",
            "name",
            "names",
            "locale",
            "min_points",
            "discount_percentage",
            "free_shipping",
            "exclusive_access",
            "benefits",
            "earn_multiplier",
            "rank",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def _locale(self, tier: Tier) -> str | None:
        return tier_locale_choose(
            names=tier.names,
            requested=self.context.get("requested_locale"),
            accept_language=self.context.get("accept_language"),
            default_locale=self.context.get("default_locale") or "en",
        )

    @extend_schema_field({"type": "string", "nullable": True, "description": "The locale `name` is in."})
    def get_locale(self, tier: Tier) -> str | None:
        return self._locale(tier)

    @extend_schema_field({"type": "string", "nullable": True, "description": "The name in `locale`."})
    def get_name(self, tier: Tier) -> str | None:
        locale = self._locale(tier)
        return tier.names.get(locale) if locale else None


class TierWriteSerializer(serializers.Serializer):
    """PUT replaces every field (an absent one takes its default); PATCH changes those given."""

    tier_id = serializers.CharField(
        max_length=64, required=False, help_text="Fixed: if given, it must be the tierId in the path."
    )
    names = NamesField()
    min_points = serializers.IntegerField(min_value=0, max_value=2_147_483_647, default=0)
    discount_percentage = serializers.DecimalField(
        max_digits=5,
        decimal_places=2,
        min_value=Decimal(0),
        max_value=Decimal(100),
        default=Decimal(0),
        help_text='A decimal string from "0" to "100", at most 2 decimals.',
    )
    free_shipping = serializers.BooleanField(default=False)
    exclusive_access = serializers.BooleanField(default=False)
    benefits = BenefitsField(default=dict, help_text="{bonusPoints: integer >= 0, customPerks: [string]}.")
    earn_multiplier = serializers.DecimalField(
        max_digits=6,
        decimal_places=3,
        min_value=Decimal(0),
        default=Decimal(1),
        help_text='Points earned are multiplied by this, e.g. "1.5".',
    )
    rank = serializers.IntegerField(
        min_value=0, max_value=32767, default=0, help_text="Higher is better; ties broken by min points."
    )


class TierCreateSerializer(TierWriteSerializer):
    tier_id = serializers.CharField(
        max_length=64, validators=[tier_id_validator], help_text="Unique in the tenant; addresses the tier."
    )


class TierPolicySerializer(serializers.ModelSerializer):
    class Meta:
        model = TierPolicy
        fields = ["qualification", "window_months", "downgrade_grace_days", "updated_at"]
        read_only_fields = fields


class TierPolicyWriteSerializer(serializers.Serializer):
    qualification = serializers.ChoiceField(choices=TierPolicy.Qualification.choices)
    window_months = serializers.IntegerField(
        min_value=1, max_value=120, default=12, help_text="For ROLLING: the months whose points count."
    )
    downgrade_grace_days = serializers.IntegerField(
        min_value=0, max_value=3650, default=0, help_text="Days below a tier before the downgrade."
    )
