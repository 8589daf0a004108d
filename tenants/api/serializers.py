from django.db import models
from rest_framework import serializers

from core.validators import member_ref_validator
from tenants.models import ApiKey, Limit, Tenant

# The columns are bigint: a larger value would fail in the database instead of validation.
MAX_LIMIT_VALUE = models.BigIntegerField.MAX_BIGINT


class LimitValuesSerializer(serializers.Serializer):
    max_per_day = serializers.IntegerField(
        min_value=0, max_value=MAX_LIMIT_VALUE, allow_null=True, required=False, default=None
    )
    max_total = serializers.IntegerField(
        min_value=0, max_value=MAX_LIMIT_VALUE, allow_null=True, required=False, default=None
    )
    window_days = serializers.IntegerField(min_value=1, max_value=3650, allow_null=True, required=False, default=None)


class InitialLimitsSerializer(serializers.Serializer):
    """Limits a new tenant starts with; `global` and `user` are optional."""

    def get_fields(self):
        return {
            "global": LimitValuesSerializer(required=False, help_text="Tenant-wide caps on points issued."),
            "user": LimitValuesSerializer(required=False, help_text="Default caps for each member."),
        }


class TenantCreateSerializer(serializers.ModelSerializer):
    limits = InitialLimitsSerializer(required=False)

    class Meta:
        model = Tenant
        fields = [
            "name",
            "slug",
            "currency",
            "point_value",
            "earn_rate",
            "rounding",
            "timezone",
            "default_locale",
            "limits",
        ]
        extra_kwargs = {"slug": {"required": False, "validators": []}}


class TenantSerializer(serializers.ModelSerializer):
    tenant_id = serializers.UUIDField(source="id", read_only=True)

    class Meta:
        model = Tenant
        fields = [
            "tenant_id",
            "slug",
            "name",
            "status",
            "currency",
            "point_value",
            "earn_rate",
            "rounding",
            "timezone",
            "default_locale",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class IssuedApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The key itself. Shown only in this response.")

    class Meta(ApiKeySerializer.Meta):
        fields = ["id", "name", "prefix", "key", "created_at"]
        read_only_fields = fields


class TenantCreatedSerializer(TenantSerializer):
    api_key = IssuedApiKeySerializer(read_only=True)

    class Meta(TenantSerializer.Meta):
        fields = [*TenantSerializer.Meta.fields, "api_key"]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, default="default")


class LimitUpsertSerializer(LimitValuesSerializer):
    scope = serializers.ChoiceField(choices=Limit.Scope.choices)


class UserLimitUpsertSerializer(LimitValuesSerializer):
    member_ref = serializers.CharField(max_length=128, validators=[member_ref_validator])


class EffectiveLimitSerializer(serializers.Serializer):
    scope = serializers.CharField()
    max_per_day = serializers.IntegerField(allow_null=True)
    max_total = serializers.IntegerField(allow_null=True)
    window_days = serializers.IntegerField(allow_null=True)
    source = serializers.ChoiceField(choices=["tenant", "member", "none"], help_text="Where the values come from.")
    member_ref = serializers.CharField(allow_blank=True)


class EffectiveLimitsSerializer(serializers.Serializer):
    def get_fields(self):
        return {"global": EffectiveLimitSerializer(), "user": EffectiveLimitSerializer()}
