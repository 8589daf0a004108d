"""Spending insights: `GET /api/v1/members/{memberRef}/insights` (the tenant's backend) and
`GET /api/v1/me/insights` (the member's app), `?period=month|day&from=&to=`."""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.permissions import IsMember
from core.api.views import TenantAPIView
from insights.spending import PERIODS, member_insights, window_for
from rewards.api.serializers import NextTierSerializer
from rewards.selectors import member_get


class InsightsQuerySerializer(serializers.Serializer):
    period = serializers.ChoiceField(choices=PERIODS, default="month", help_text="Bucket size of `series`.")
    # `from` is a Python keyword: the field is declared below under its wire name.
    to = serializers.DateField(
        required=False, help_text="Last day (inclusive; for months, its month is the last). Default: today."
    )

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField(
            required=False,
            help_text="First day (inclusive; for months, its month is the first). Default: 6 months or 30 days back.",
        )
        return fields

    def validate(self, attrs):
        try:
            attrs["window"] = window_for(
                tenant=self.context["tenant"], period=attrs["period"], start=attrs.get("from"), end=attrs.get("to")
            )
        except ValueError as error:
            field, message = error.args
            raise serializers.ValidationError({field: [message]}, code="invalid") from None
        return attrs


class PointsBySourceSerializer(serializers.Serializer):
    base = serializers.IntegerField(help_text="Amount times the earn rate.")
    multipliers = serializers.IntegerField(help_text="Extra from spend-category multipliers (after caps).")
    tier = serializers.IntegerField(help_text="Extra from the tier's multiplier, plus its bonus points.")
    campaigns = serializers.IntegerField(help_text="Campaign incentives paid in points (actions included).")


class FiguresSerializer(serializers.Serializer):
    amount_spent = serializers.DecimalField(max_digits=16, decimal_places=2, help_text="Net of refunds.")
    transaction_count = serializers.IntegerField()
    points_earned = serializers.IntegerField(help_text="Net of points taken back by refunds.")
    points_by_source = PointsBySourceSerializer()


class PreviousSerializer(FiguresSerializer):
    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField()
        fields["to"] = serializers.DateField()
        return fields


class ChangeSerializer(serializers.Serializer):
    amount_spent = serializers.CharField(allow_null=True, help_text="Percent against the previous period.")
    transaction_count = serializers.CharField(allow_null=True)
    points_earned = serializers.CharField(allow_null=True)


class TopCategorySerializer(FiguresSerializer):
    category = serializers.CharField(allow_null=True, help_text="The spend category's code; null: uncategorized.")
    name = serializers.CharField()
    share = serializers.CharField(allow_null=True, help_text="Percent of the period's spending.")


class BucketSerializer(FiguresSerializer):
    start = serializers.DateField(help_text="The day, or the first day of the month.")


class TierProjectionSerializer(serializers.Serializer):
    tier_id = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)
    qualifying_points = serializers.IntegerField()
    next_tier = NextTierSerializer(allow_null=True)
    points_per_day = serializers.CharField(help_text="Points earned per day over the last 90 days.")
    projected_date = serializers.DateField(
        allow_null=True, help_text="When the next tier is reached at that pace; null without a pace or a next tier."
    )


class InsightsSerializer(serializers.Serializer):
    member_ref = serializers.CharField()
    period = serializers.ChoiceField(choices=PERIODS)
    to = serializers.DateField()
    currency = serializers.CharField()
    totals = FiguresSerializer()
    previous = PreviousSerializer(help_text="The same length of time just before.")
    change = ChangeSerializer()
    top_categories = TopCategorySerializer(many=True, help_text="By amount spent, at most 5.")
    series = BucketSerializer(many=True, help_text="Every day or month of the window, empty ones included.")
    tier = TierProjectionSerializer(allow_null=True, help_text="Null when the tenant has no tiers.")
    rollups_updated_at = serializers.DateTimeField(
        allow_null=True, help_text="When the rollups last read new events (they trail the ledger by seconds)."
    )

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField()
        return fields


DESCRIPTION = (
    "Totals, top categories, change against the previous period of the same length, points by source "
    "and a projection to the next tier, from rollups kept by a worker from processed events (refunds "
    "count against the purchase's own day). Cached until the member's rollups change."
)


def _insights(view, member) -> Response:
    query = InsightsQuerySerializer(data=view.request.query_params, context={"tenant": member.tenant})
    query.is_valid(raise_exception=True)
    return Response(InsightsSerializer(member_insights(member=member, window=query.validated_data["window"])).data)


class MemberInsightsApi(TenantAPIView):
    @extend_schema(
        operation_id="member_insights",
        summary="A member's spending insights",
        description=DESCRIPTION,
        parameters=[InsightsQuerySerializer],
        responses=InsightsSerializer,
    )
    def get(self, request, member_ref):
        return _insights(self, member_get(tenant=self.tenant, external_ref=member_ref))


class MeInsightsApi(APIView):
    permission_classes = [IsMember]

    @extend_schema(
        operation_id="me_insights",
        summary="The member's own spending insights",
        description=DESCRIPTION,
        parameters=[InsightsQuerySerializer],
        responses=InsightsSerializer,
    )
    def get(self, request):
        member = request.user.member
        return _insights(self, member_get(tenant=member.tenant, external_ref=member.external_ref))


urlpatterns = [
    path("members/<str:member_ref>/insights", MemberInsightsApi.as_view(), name="member-insights"),
    path("me/insights", MeInsightsApi.as_view(), name="me-insights"),
]
