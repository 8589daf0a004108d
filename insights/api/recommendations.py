"""Recommendations: `GET /api/v1/members/{memberRef}/recommendations` (the tenant's backend),
`GET /api/v1/me/recommendations` (the member's app) and `POST /api/v1/ai/recommendation`
(either; seed 003)."""

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.serializers import CatalogCategoryRefSerializer, localized
from catalog.models import Item
from core.api.permissions import IsApiKeyOrMember, IsMember
from core.api.views import TenantAPIView, TenantOrMemberAPIView
from core.validators import member_ref_validator
from insights.ai.base import FALLBACK_REASONS, LLM, RULES
from insights.ai.service import MAX_REQUEST, ai_recommendation_get
from insights.recommendations import DEFAULT_LIMIT, MAX_LIMIT, recommendations_get
from rewards.api.acting import acting_member
from rewards.selectors import member_get

ACCEPT_LANGUAGE = OpenApiParameter(
    name="Accept-Language",
    location=OpenApiParameter.HEADER,
    required=False,
    type=str,
    description="Locales by preference for item and category names.",
)


def _names_context(request, tenant, locale: str | None = None) -> dict:
    return {
        "requested_locale": locale or None,
        "accept_language": request.headers.get("Accept-Language"),
        "default_locale": tenant.default_locale,
        "currency": tenant.currency,
        "request": request,
    }


class RecommendedItemSerializer(serializers.Serializer):
    """A reward as one member sees its worth (insights.value.ValuedItem)."""

    item_id = serializers.UUIDField(source="item.id")
    sku = serializers.CharField(source="item.sku")
    name = serializers.SerializerMethodField()
    category = serializers.SerializerMethodField()
    kind = serializers.ChoiceField(source="item.kind", choices=Item.Kind.choices)
    point_cost = serializers.IntegerField(source="item.point_cost", help_text="The list price in points.")
    member_point_cost = serializers.IntegerField(
        help_text="What the member pays: the list price less their tier's discount."
    )
    cash_value = serializers.DecimalField(source="item.cash_value", max_digits=12, decimal_places=2)
    currency = serializers.SerializerMethodField()
    value_per_point = serializers.DecimalField(
        max_digits=18,
        decimal_places=6,
        allow_null=True,
        help_text="cashValue / memberPointCost, in the currency; null for a reward that costs the member no points.",
    )
    points_needed = serializers.IntegerField(
        help_text="Points the member still lacks for it; 0 when they can redeem it."
    )
    stock_quantity = serializers.IntegerField(
        source="item.stock_quantity", allow_null=True, help_text="Null: unlimited."
    )
    image_url = serializers.SerializerMethodField()

    def get_name(self, obj) -> str:
        return localized(obj.item, self.context)[0]

    @extend_schema_field(CatalogCategoryRefSerializer(allow_null=True))
    def get_category(self, obj):
        item = obj.item
        if item.category_id is None:
            return None
        return {"code": item.category.code, "name": localized(item.category, self.context)[0]}

    def get_currency(self, obj) -> str:
        return self.context.get("currency") or ""

    def get_image_url(self, obj) -> str | None:
        item = obj.item
        if item.image:
            request = self.context.get("request")
            return request.build_absolute_uri(item.image.url) if request else item.image.url
        return item.image_url or None


class TierDiscountSerializer(serializers.Serializer):
    tier_id = serializers.CharField(allow_null=True, help_text="Null for a member without a tier.")
    discount_percentage = serializers.DecimalField(
        max_digits=5, decimal_places=2, help_text="Off the point cost of every reward."
    )


class ExpiringSoonSerializer(serializers.Serializer):
    points = serializers.IntegerField(help_text="Spendable points that expire within `withinDays`.")
    expires_at = serializers.DateTimeField(allow_null=True, help_text="When the first of them expire.")
    within_days = serializers.IntegerField()
    items = RecommendedItemSerializer(
        many=True, help_text="Rewards those points alone redeem, best value first (redeeming spends them first)."
    )


class KindRateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Item.Kind.choices)
    value_per_point = serializers.DecimalField(
        max_digits=18,
        decimal_places=6,
        help_text="The average cashValue / pointCost of the kind's rewards, list price.",
    )
    items = serializers.IntegerField(help_text="Active rewards of the kind with a cash value, whatever their tier.")


class RecommendationsSerializer(serializers.Serializer):
    member_ref = serializers.CharField(source="member.external_ref")
    balance = serializers.IntegerField(help_text="Spendable points.")
    currency = serializers.CharField()
    tier = TierDiscountSerializer(source="*")
    affordable_now = RecommendedItemSerializer(many=True, help_text="Redeemable now, best value per point first.")
    worth_saving_for = RecommendedItemSerializer(
        many=True, help_text="Beyond the balance, best value per point first, with `pointsNeeded`."
    )
    expiring_soon = ExpiringSoonSerializer()
    rates = KindRateSerializer(many=True, help_text="The tenant's value per point by kind of reward, to compare with.")


class RecommendationsQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT, help_text="Rewards in each list."
    )
    locale = serializers.CharField(
        required=False, max_length=35, help_text="The locale for names (beats Accept-Language)."
    )


RECOMMENDATIONS = (
    "Value per point is the reward's cash value over what the member pays for it in points (their tier's "
    "discount applied). Only active, in-stock rewards the member's tier may see. `affordableNow`: what the "
    "balance redeems now; `worthSavingFor`: what it does not yet, with the points still needed; "
    "`expiringSoon`: the points expiring within the configured days (INSIGHTS_EXPIRING_SOON_DAYS) and what "
    "they redeem; `rates`: the tenant's average value per point by kind (cached until the catalog changes). "
    "Ties go to the cheaper reward, then by name."
)


def _recommendations(view, member, tenant) -> Response:
    query = RecommendationsQuerySerializer(data=view.request.query_params)
    query.is_valid(raise_exception=True)
    data = query.validated_data
    result = recommendations_get(tenant=tenant, member=member, limit=data["limit"])
    context = _names_context(view.request, tenant, data.get("locale"))
    return Response(RecommendationsSerializer(result, context=context).data)


class MemberRecommendationsApi(TenantAPIView):
    @extend_schema(
        operation_id="member_recommendations",
        summary="A member's best-value rewards",
        description=RECOMMENDATIONS,
        parameters=[RecommendationsQuerySerializer, ACCEPT_LANGUAGE],
        responses=RecommendationsSerializer,
    )
    def get(self, request, member_ref):
        return _recommendations(self, member_get(tenant=self.tenant, external_ref=member_ref), self.tenant)


class MeRecommendationsApi(APIView):
    permission_classes = [IsMember]

    @extend_schema(
        operation_id="me_recommendations",
        summary="The member's own best-value rewards",
        description=RECOMMENDATIONS,
        parameters=[RecommendationsQuerySerializer, ACCEPT_LANGUAGE],
        responses=RecommendationsSerializer,
    )
    def get(self, request):
        return _recommendations(self, request.user.member, request.user.tenant)


# AI recommendation (seed 003) ------------------------------------------------------------


class AiRecommendationAskSerializer(serializers.Serializer):
    member_ref = serializers.CharField(
        max_length=128,
        validators=[member_ref_validator],
        required=False,
        help_text="Required with an API key. With a member token the member is the token's.",
    )
    context = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=MAX_REQUEST,
        help_text=(
            'What the member is looking for, in their words ("a weekend away"); a category named here is preferred.'
        ),
    )


class AiCategorySerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.SerializerMethodField()
    description = serializers.CharField()

    def get_name(self, obj) -> str:
        return localized(obj, self.context)[0]


class AiChoiceSerializer(serializers.Serializer):
    category = AiCategorySerializer(allow_null=True, help_text="Null when no reward is available to the member.")
    reason = serializers.CharField(help_text="Why, addressed to the member.")


class AiRecommendationSerializer(serializers.Serializer):
    member_ref = serializers.CharField(source="member.external_ref")
    balance = serializers.IntegerField(help_text="Spendable points.")
    recommendation = AiChoiceSerializer(source="*")
    products = RecommendedItemSerializer(
        many=True, help_text="The category's rewards (its subcategories' too), best value per point first, at most 10."
    )
    engine = serializers.ChoiceField(choices=[RULES, LLM], help_text="Which engine answered.")
    fallback_reason = serializers.ChoiceField(
        choices=list(FALLBACK_REASONS),
        allow_null=True,
        help_text="Why the rules answered although a provider is configured; null when they were not standing in.",
    )


class AiRecommendationApi(TenantOrMemberAPIView):
    permission_classes = [IsApiKeyOrMember]

    @extend_schema(
        operation_id="ai_recommendation",
        summary="Recommend a category of rewards, with why",
        description=(
            "A category of rewards for the member, the reason, and its rewards best value per point first. "
            "When an LLM provider is configured (AI_PROVIDER_URL) it chooses among the categories holding "
            "rewards the member may redeem; otherwise, and whenever the provider times out "
            "(AI_PROVIDER_TIMEOUT_SECONDS), fails or answers anything but the JSON asked for, the rule-based "
            "engine does: `engine` says which answered and `fallbackReason` why the rules stood in."
        ),
        request=AiRecommendationAskSerializer,
        parameters=[ACCEPT_LANGUAGE],
        responses=AiRecommendationSerializer,
    )
    def post(self, request):
        serializer = AiRecommendationAskSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = acting_member(self, data.get("member_ref"), verb="asks")
        result = ai_recommendation_get(tenant=self.tenant, member=member, request=data["context"])
        return Response(AiRecommendationSerializer(result, context=_names_context(request, self.tenant)).data)


urlpatterns = [
    path("members/<str:member_ref>/recommendations", MemberRecommendationsApi.as_view(), name="member-recommendations"),
    path("me/recommendations", MeRecommendationsApi.as_view(), name="me-recommendations"),
    path("ai/recommendation", AiRecommendationApi.as_view(), name="ai-recommendation"),
]
