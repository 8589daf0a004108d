"""Program analytics: `GET /api/v1/insights/program?from=&to=&interval=`.

For the tenant's backend (API key) and its operators: the figures of `insights.program`,
each defined in its help text below (and so in the OpenAPI schema).
"""

from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.api.views import TenantAPIView
from insights.program import DEFAULT_DAYS, INTERVALS, MAX_BUCKETS, TOP, program_report, program_window

POINTS = "Whole points."
MONEY = "Money in the tenant's currency, exact (as many decimals as the point value): a decimal string."
RATIO = "A ratio to 4 decimals (a decimal string); null when there is nothing to divide by."


def _money(help_text: str = MONEY, **kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=30, decimal_places=6, help_text=help_text, **kwargs)


def _cash(help_text: str, **kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=20, decimal_places=2, help_text=help_text, **kwargs)


def _ratio(help_text: str) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True, help_text=help_text)


class _KeywordFields:
    # `from` is a Python keyword: declared as `from_`, it is `from` on the wire.

    def get_fields(self):
        return {("from" if name == "from_" else name): field for name, field in super().get_fields().items()}


class ProgramQuerySerializer(_KeywordFields, serializers.Serializer):
    """The window: local days in the tenant's time zone, and the buckets of the time series."""

    from_ = serializers.DateField(
        required=False,
        help_text=f"First day of the window (inclusive), in the tenant's time zone. Default: {DEFAULT_DAYS} days "
        "before `to`.",
    )
    to = serializers.DateField(
        required=False,
        help_text="Day after the window (exclusive), in the tenant's time zone; after `from`. Default: tomorrow, "
        "so that today is in.",
    )
    interval = serializers.ChoiceField(
        choices=INTERVALS,
        default="day",
        help_text=f"Buckets of the time series: calendar days, ISO weeks (from Monday) or months in the "
        f"tenant's time zone, the first and last clipped to the window; at most {MAX_BUCKETS} of them.",
    )


class ProgramIssuedBreakdownSerializer(serializers.Serializer):
    earned = serializers.IntegerField(help_text="EARN transfers to members (purchases, actions, with campaign points).")
    purchased = serializers.IntegerField(help_text="Points members bought (credit packages).")
    adjusted_in = serializers.IntegerField(help_text="Operator adjustments crediting members.")
    adjusted_out = serializers.IntegerField(help_text="Operator adjustments debiting members (subtracted).")
    reversed = serializers.IntegerField(help_text="Points taken back by purchase refunds (subtracted).")
    other = serializers.IntegerField(help_text="Any other movement in or out of members' hands (0 today).")


class ProgramRedeemedBreakdownSerializer(serializers.Serializer):
    debited = serializers.IntegerField(help_text="Points debited for redemptions.")
    refunded = serializers.IntegerField(help_text="Points given back for cancelled or failed redemptions (subtracted).")


class ProgramPointsSerializer(serializers.Serializer):
    opening_outstanding = serializers.IntegerField(
        help_text="Outstanding points when the window opened (the start of `from`)."
    )
    issued = serializers.IntegerField(
        help_text="Points that came into members' hands in the window, net: earned (purchases and actions, "
        "including campaign incentive points, which are credited with the earning) + purchased + operator "
        "credits - operator debits - purchase-refund reversals. Operator debits count here because they "
        "correct what was issued, like reversals. Pending points count when credited, not when released."
    )
    redeemed = serializers.IntegerField(
        help_text="Points debited for redemptions in the window, net of those given back (cancelled or "
        "refunded redemptions) in the window."
    )
    expired = serializers.IntegerField(help_text="Points that expired in the window.")
    outstanding = serializers.IntegerField(
        help_text="The points liability at the end of the window: the sum of all members' balances, spendable "
        "and pending. Always exactly openingOutstanding + issued - redeemed - expired, and, for a window that "
        "ends in the future, the ledger's sum of member balances now."
    )
    issued_breakdown = ProgramIssuedBreakdownSerializer()
    redeemed_breakdown = ProgramRedeemedBreakdownSerializer()


class ProgramLiabilitySerializer(serializers.Serializer):
    points = serializers.IntegerField(help_text="Outstanding points at the end of the window.")
    money = _money("points x pointValue, exact: a decimal string in `currency`.")
    opening_points = serializers.IntegerField(help_text="Outstanding points when the window opened.")
    opening_money = _money("openingPoints x pointValue, exact.")
    currency = serializers.CharField()
    point_value = _money("The tenant's money per point, today's (the liability is valued at it).")


class ProgramRatesSerializer(serializers.Serializer):
    breakage = _ratio("Breakage rate: expired / issued in the window; null when issued is 0 or less.")
    redemption = _ratio("Redemption rate: redeemed / issued in the window; null when issued is 0 or less.")


class ProgramSpendSerializer(serializers.Serializer):
    purchases = serializers.IntegerField(help_text="Applied transaction.created events that occurred in the window.")
    amount = _cash("Their amounts.")
    refunds = serializers.IntegerField(help_text="Applied transaction.refunded events that occurred in the window.")
    refunded = _cash("Their amounts.")
    net = _cash("amount - refunded: members' spend in the window.")


class ProgramStatusCountSerializer(serializers.Serializer):
    status = serializers.CharField()
    count = serializers.IntegerField()
    points = serializers.IntegerField()


class ProgramRedemptionsSerializer(serializers.Serializer):
    by_status = ProgramStatusCountSerializer(
        many=True, help_text="Redemptions requested in the window, by the status they are in now (every status)."
    )


class ProgramTopItemSerializer(serializers.Serializer):
    item_id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.CharField()
    category_code = serializers.CharField(allow_null=True)
    redemptions = serializers.IntegerField()
    quantity = serializers.IntegerField()
    points = serializers.IntegerField()


class ProgramTopCategorySerializer(serializers.Serializer):
    category_code = serializers.CharField(allow_null=True, help_text="null: items in no category.")
    name = serializers.CharField(allow_blank=True)
    redemptions = serializers.IntegerField()
    quantity = serializers.IntegerField()
    points = serializers.IntegerField()


class ProgramCampaignSerializer(serializers.Serializer):
    campaign_id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.CharField()
    incentives = serializers.IntegerField(help_text="Incentives the campaign issued in the window.")
    reversed = serializers.IntegerField(help_text="Of those, how many were reversed in full since.")
    points = serializers.IntegerField(
        help_text="Points of its POINTS incentives issued in the window, net of what purchase refunds reversed."
    )
    points_money = _money("points x pointValue, exact.")
    cashback = _cash("Money of its CASHBACK incentives issued in the window, net of reversals.")
    coupons = serializers.IntegerField(help_text="COUPON incentives issued in the window and not reversed.")
    cost = _money("pointsMoney + cashback (coupons carry no money value here).")
    recipients = serializers.IntegerField(
        help_text="Distinct members holding an incentive of the campaign issued in the window (not fully reversed)."
    )
    others = serializers.IntegerField(help_text="The window's other active members (activeMembers - recipients).")
    avg_spend_recipients = _cash("Recipients' net spend in the window / recipients; null with none.", allow_null=True)
    avg_spend_others = _cash("The others' net spend in the window / others; null with none.", allow_null=True)
    lift = _ratio(
        "avgSpendRecipients / avgSpendOthers. An observational comparison, not a controlled test: members "
        "qualify for an incentive by what they do, so a campaign triggered by purchases selects spenders. "
        "null when either side has no members or the others' average is not above 0."
    )


class ProgramSeriesPointSerializer(serializers.Serializer):
    start = serializers.DateField(help_text="First day of the bucket (clipped to the window).")
    end = serializers.DateField(help_text="Day after the bucket (clipped to the window).")
    issued = serializers.IntegerField(help_text="As `points.issued`, for the bucket.")
    redeemed = serializers.IntegerField(help_text="As `points.redeemed`, for the bucket.")
    expired = serializers.IntegerField(help_text="As `points.expired`, for the bucket.")
    outstanding = serializers.IntegerField(help_text="Outstanding points at the end of the bucket.")
    active_members = serializers.IntegerField(help_text="As `activeMembers`, for the bucket.")


class ProgramReportSerializer(_KeywordFields, serializers.Serializer):
    """A tenant's program analytics over a window."""

    tenant_id = serializers.UUIDField()
    currency = serializers.CharField()
    point_value = _money("The tenant's money per point.")
    timezone = serializers.CharField(help_text="The tenant's time zone: the window's days and buckets are in it.")
    from_ = serializers.DateField(help_text="First day of the window (inclusive).")
    to = serializers.DateField(help_text="Day after the window (exclusive).")
    interval = serializers.ChoiceField(choices=INTERVALS)
    points = ProgramPointsSerializer(
        help_text="Ledger figures. A transfer counts when it was posted (in the tenant's time zone)."
    )
    liability = ProgramLiabilitySerializer()
    rates = ProgramRatesSerializer()
    active_members = serializers.IntegerField(
        help_text="Distinct members with an applied inbound event that occurred in the window, a ledger transfer "
        "posted in it (other than expiry and the release of pending points, which the platform does on its "
        "own) or a campaign incentive issued in it."
    )
    spend = ProgramSpendSerializer()
    redemptions = ProgramRedemptionsSerializer()
    top_items = ProgramTopItemSerializer(
        many=True,
        help_text=f"Up to {TOP} items by redemptions requested in the window and kept (not cancelled, failed or "
        "refunded), then by points.",
    )
    top_categories = ProgramTopCategorySerializer(
        many=True, help_text=f"Up to {TOP} catalog categories, counted likewise."
    )
    campaigns = ProgramCampaignSerializer(
        many=True,
        help_text="Each campaign with incentives issued in the window, most costly first. Lift compares the "
        "average net spend (purchases - refunds that occurred in the window) of the members who kept one of "
        "its incentives with that of the window's other active members.",
    )
    series = ProgramSeriesPointSerializer(
        many=True, help_text="One entry per bucket, oldest first, empty ones included."
    )


class ProgramQueryErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="invalid, invalid_choice...")
    detail = serializers.CharField()
    attr = serializers.CharField(help_text="from, to or interval.")


class ProgramQueryErrorResponseSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["validation_error"])
    errors = ProgramQueryErrorSerializer(many=True)


class ProgramInsightsApi(TenantAPIView):
    @extend_schema(
        summary="Program analytics",
        description=(
            "Points issued, redeemed and expired over a window, the points liability (outstanding points, and "
            "their money at the tenant's point value), breakage and redemption rates, active members, members' "
            "spend, redemptions by status, top items and categories, campaign cost and lift, and a time series "
            "by day, week or month. Dates are the tenant's local days; `to` is exclusive. The ledger figures "
            "reconcile to the point: outstanding = openingOutstanding + issued - redeemed - expired. "
            "400 (attr `to`) when `to` is not after `from`; (attr `interval`) for an unknown interval or a "
            f"window of more than {MAX_BUCKETS} buckets."
        ),
        parameters=[ProgramQuerySerializer],
        responses={
            200: ProgramReportSerializer,
            400: OpenApiResponse(
                ProgramQueryErrorResponseSerializer,
                description="A date that is not one, `to` not after `from` (attr `to`), an unknown interval or "
                f"more than {MAX_BUCKETS} buckets (attr `interval`).",
            ),
        },
    )
    def get(self, request):
        query = ProgramQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        data = query.validated_data
        window = program_window(
            tenant=self.tenant, date_from=data.get("from"), date_to=data.get("to"), interval=data["interval"]
        )
        report = program_report(tenant=self.tenant, window=window)
        return Response(ProgramReportSerializer(report).data)


urlpatterns = [
    path("insights/program", ProgramInsightsApi.as_view(), name="insights-program"),
]
