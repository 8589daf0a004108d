"""Backtests: `POST /api/v1/simulations`."""

from decimal import Decimal

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.api.views import TenantAPIView
from rewards.categories import category_config_get
from rewards.models.earning import code_validator
from rewards.simulations import MAX_RANGE, MAX_TOP, Changes, ProposedMultiplier, simulation_run
from tenants.models import Tenant


def _error(serializer: serializers.Serializer, name: str, code: str) -> serializers.ValidationError:
    """A cross-field error filed under one field, with a code the field declares (so the schema lists it)."""
    message = serializer.fields[name].error_messages[code]
    return serializers.ValidationError({name: [serializers.ErrorDetail(message, code=code)]})


class CategoryCodeField(serializers.CharField):
    """A spend category code of the caller's tenant (`categories` in the context)."""

    default_error_messages = {"unknown_category": "No spend category has this code."}

    def __init__(self, **kwargs):
        super().__init__(max_length=64, validators=[code_validator], **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value not in self.context["categories"]:
            self.fail("unknown_category")
        return value


class ProposedMultiplierSerializer(serializers.Serializer):
    category = CategoryCodeField()
    factor = serializers.DecimalField(max_digits=8, decimal_places=4, min_value=Decimal("0"))
    valid_from = serializers.DateTimeField(required=False, allow_null=True, default=None)
    valid_to = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        error_messages={"invalid_window": "Must be after validFrom."},
    )
    tier = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default="", help_text="Only for members of this tier."
    )

    def validate(self, attrs):
        if attrs["valid_from"] and attrs["valid_to"] and attrs["valid_to"] <= attrs["valid_from"]:
            raise _error(self, "valid_to", "invalid_window")
        return attrs


class SimulationChangesSerializer(serializers.Serializer):
    earn_rate = serializers.DecimalField(
        max_digits=12, decimal_places=4, min_value=Decimal("0"), required=False, help_text="Points per currency unit."
    )
    rounding = serializers.ChoiceField(choices=Tenant.Rounding.choices, required=False)
    multipliers = ProposedMultiplierSerializer(
        many=True,
        required=False,
        max_length=100,
        help_text="Added to the current multipliers (the best one for an event wins), or replacing them.",
    )
    replace = serializers.BooleanField(
        required=False, default=False, help_text="The multipliers given replace all current ones."
    )


class SimulationRunSerializer(serializers.Serializer):
    changes = SimulationChangesSerializer()
    top = serializers.IntegerField(
        required=False, default=10, min_value=0, max_value=MAX_TOP, help_text="How many largest changes to list."
    )

    def get_fields(self):
        # `from` is a Python keyword, so the range's fields cannot be declared as attributes.
        return {
            "from": serializers.DateTimeField(source="start", help_text="Events that occurred at or after this."),
            "to": serializers.DateTimeField(
                source="end",
                help_text=f"Events that occurred before this; at most {MAX_RANGE.days} days after from.",
                error_messages={
                    "range_empty": "Must be after from.",
                    "range_too_long": f"The range is at most {MAX_RANGE.days} days.",
                },
            ),
            **super().get_fields(),
        }

    def validate(self, attrs):
        if attrs["start"] >= attrs["end"]:
            raise _error(self, "to", "range_empty")
        if attrs["end"] - attrs["start"] > MAX_RANGE:
            raise _error(self, "to", "range_too_long")
        return attrs


class SimulationPointsSerializer(serializers.Serializer):
    points = serializers.IntegerField()


class SimulationDifferenceSerializer(serializers.Serializer):
    points = serializers.IntegerField(help_text="Proposed minus baseline.")
    percent = serializers.DecimalField(
        max_digits=None, decimal_places=2, allow_null=True, help_text="Of the baseline; null when the baseline is 0."
    )


class SimulationEventChangeSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    member_ref = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    baseline = serializers.IntegerField()
    proposed = serializers.IntegerField()
    difference = serializers.IntegerField()


class SimulationResultSerializer(serializers.Serializer):
    events = serializers.IntegerField(help_text="Applied transaction.created events in the range.")
    members = serializers.IntegerField(help_text="Distinct members among them.")
    baseline = SimulationPointsSerializer(help_text="With the current configuration.")
    proposed = SimulationPointsSerializer(help_text="With the changes applied.")
    difference = SimulationDifferenceSerializer()
    members_affected = serializers.IntegerField(help_text="Members whose total would change.")
    recorded_points = serializers.IntegerField(help_text="What these events actually awarded.")
    largest_changes = SimulationEventChangeSerializer(many=True, help_text="By absolute difference, largest first.")
    notes = serializers.ListField(child=serializers.CharField(), help_text="What the simulation leaves out.")


class SimulationRunApi(TenantAPIView):
    @extend_schema(
        summary="Backtest a change to earning",
        description="Recomputes the tenant's applied `transaction.created` events that occurred in "
        "[from, to) with the current configuration and with the proposed changes, and reports the "
        "difference. Incentives, limits and cap usage are left out of both sides. Writes nothing. "
        "A 400 names the field at fault, e.g. `changes.multipliers.0.category` for an unknown category.",
        request=SimulationRunSerializer,
        responses={200: SimulationResultSerializer},
    )
    def post(self, request):
        context = {"categories": category_config_get(tenant=self.tenant).categories}
        serializer = SimulationRunSerializer(data=request.data, context=context)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        changes = data["changes"]
        result = simulation_run(
            tenant=self.tenant,
            start=data["start"],
            end=data["end"],
            changes=Changes(
                earn_rate=changes.get("earn_rate"),
                rounding=changes.get("rounding"),
                multipliers=tuple(ProposedMultiplier(**proposal) for proposal in changes.get("multipliers", [])),
                replace=changes["replace"],
            ),
            top=data["top"],
        )
        return Response(SimulationResultSerializer(result).data)
