from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.validators import member_ref_validator
from rewards.contributions import member_extensions
from rewards.ledger import MAX_POINTS
from rewards.models import Member, Transfer
from rewards.selectors import points_expiring


class MemberCreateSerializer(serializers.Serializer):
    member_ref = serializers.CharField(max_length=128, validators=[member_ref_validator])
    locale = serializers.CharField(max_length=35, required=False, allow_blank=True, default="")
    status = serializers.ChoiceField(choices=Member.Status.choices, required=False, default=Member.Status.ACTIVE)
    attributes = serializers.DictField(required=False, default=dict, help_text="Free-form JSON object.")


class MemberUpdateSerializer(serializers.Serializer):
    locale = serializers.CharField(max_length=35, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=Member.Status.choices, required=False)
    attributes = serializers.DictField(required=False)


class MemberSerializer(serializers.ModelSerializer):
    member_ref = serializers.CharField(source="external_ref", read_only=True)
    balance = serializers.IntegerField(read_only=True, help_text="Spendable points.")
    pending = serializers.IntegerField(read_only=True, help_text="Earned points still in the returns window.")

    class Meta:
        model = Member
        fields = [
            "id",
            "member_ref",
            "locale",
            "status",
            "attributes",
            "balance",
            "pending",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ExpiringSerializer(serializers.Serializer):
    points = serializers.IntegerField()
    within_days = serializers.IntegerField()
    first_expiry = serializers.DateTimeField(allow_null=True)


class NextTierSerializer(serializers.Serializer):
    tier_id = serializers.CharField()
    name = serializers.CharField()
    min_points = serializers.IntegerField()
    points_to_go = serializers.IntegerField(help_text="Qualifying points still needed.")


class MemberTierSerializer(serializers.Serializer):
    """The member's VIP tier and progress to the next one (null when the tenant has no tiers)."""

    tier_id = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)
    qualifying_points = serializers.IntegerField()
    assigned_at = serializers.DateTimeField(allow_null=True)
    below_since = serializers.DateTimeField(allow_null=True, help_text="Below this tier since (grace period).")
    next_tier = NextTierSerializer(allow_null=True)


class MemberDetailSerializer(MemberSerializer):
    """One member, with the points that expire soon and their tier."""

    expiring_soon = serializers.SerializerMethodField()
    tier = serializers.SerializerMethodField()

    class Meta(MemberSerializer.Meta):
        fields = [*MemberSerializer.Meta.fields, "expiring_soon", "tier"]
        read_only_fields = fields

    @extend_schema_field(MemberTierSerializer(allow_null=True))
    def get_tier(self, member: Member) -> dict | None:
        return member_extensions(member).get("tier")

    @extend_schema_field(ExpiringSerializer)
    def get_expiring_soon(self, member: Member) -> dict:
        return ExpiringSerializer(points_expiring(member=member)).data


class AdjustmentSerializer(serializers.Serializer):
    points = serializers.IntegerField(
        min_value=-MAX_POINTS,
        max_value=MAX_POINTS,
        help_text="Signed: positive credits the member, negative debits. Never zero.",
    )
    reason = serializers.CharField(max_length=500)

    def validate_points(self, value: int) -> int:
        if value == 0:
            raise serializers.ValidationError("Points must not be zero.", code="zero")
        return value


class TransferSerializer(serializers.ModelSerializer):
    points = serializers.IntegerField(read_only=True, help_text="Signed from the member's side.")
    balance_after = serializers.IntegerField(read_only=True, allow_null=True)
    reference = serializers.SerializerMethodField()

    class Meta:
        model = Transfer
        fields = ["id", "kind", "points", "amount", "balance_after", "reason", "reference", "explanation", "created_at"]
        read_only_fields = fields

    def get_reference(self, transfer: Transfer) -> dict:
        return {"type": transfer.reference_type, "id": transfer.reference_id}


class AdjustmentResultSerializer(serializers.Serializer):
    transfer = TransferSerializer()
    balance = serializers.IntegerField()


class MemberTokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    token_type = serializers.CharField(default="Bearer")
    expires_at = serializers.DateTimeField()
