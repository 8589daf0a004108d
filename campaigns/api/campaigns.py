"""Campaign management (seed 001 §1.3) and the catalogs campaign rules name.

POST /campaigns                              PUT, GET /campaigns/{campaignId}
GET  /tenants/{tenantId}/campaigns           POST /campaigns/{campaignId}:activate|:pause|:end
GET  /campaigns/rule-schema                  GET, POST /actions
POST /coupon-pools                           POST /coupon-pools/{code}/codes
GET  /members/{memberRef}/incentives         GET /me/incentives
"""

from contextlib import contextmanager
from decimal import Decimal

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from campaigns import selectors, services
from campaigns.models import Action, Campaign, CampaignStats, Cohort, CouponPool, Incentive
from campaigns.rules import ACTION_CODE_PATTERN, RULE_SCHEMA, RuleInvalid
from core.api.pagination import StrictPageSizeMixin
from core.api.permissions import IsMember
from core.api.schema import domain_errors
from core.api.views import TenantAPIView
from core.exceptions import NotFound
from rewards import selectors as member_selectors

INT32 = 2**31 - 1
MONEY = {"max_digits": 18, "decimal_places": 4, "min_value": Decimal(0)}
MAX_CODES = 10_000


# Serializers ---------------------------------------------------------------------------------


class CampaignStatsSerializer(serializers.ModelSerializer):
    class Meta:
        model = CampaignStats
        fields = ["rewards_issued", "amount_issued"]
        read_only_fields = fields


class CampaignSerializer(serializers.ModelSerializer):
    tenant_id = serializers.UUIDField(read_only=True)
    cohort_id = serializers.UUIDField(read_only=True, allow_null=True)
    rule_json = serializers.JSONField(read_only=True, help_text="As given; see GET /api/v1/campaigns/rule-schema.")
    stats = CampaignStatsSerializer(read_only=True, help_text="Issued so far, net of reversals.")

    class Meta:
        model = Campaign
        fields = [
            "id",
            "tenant_id",
            "name",
            "description",
            "type",
            "status",
            "start_at",
            "end_at",
            "rule_json",
            "cohort_id",
            "priority",
            "stacking",
            "budget_rewards",
            "budget_amount",
            "member_cap_rewards",
            "member_cap_amount",
            "member_cap_period",
            "version",
            "stats",
            "created_at",
            "updated_at",
            "activated_at",
            "ended_at",
        ]
        read_only_fields = fields


class CohortField(serializers.PrimaryKeyRelatedField):
    """A cohort id of the caller's tenant (`tenant` in the context)."""

    def __init__(self, **kwargs):
        super().__init__(
            queryset=Cohort.objects.none(),
            pk_field=serializers.UUIDField(),
            allow_null=True,
            default=None,
            help_text="Only members of this cohort; null for everyone.",
            **kwargs,
        )

    def get_queryset(self):
        return Cohort.objects.filter(tenant=self.context["tenant"])


class RuleJsonField(serializers.JSONField):
    """Whatever JSON the parser read, as it is: the rule check names what is wrong in it, down
    to a number too big for a float (1e400 reads as infinity, which no rule accepts)."""

    def to_internal_value(self, data):
        return data


# Named as the request side of `Campaign` (CampaignRequest), so that the schema's enums for
# `type` are one per resource rather than a hashed name for a shared choice set.
@extend_schema_serializer(component_name="Campaign")
class CampaignWriteSerializer(serializers.Serializer):
    """The editable fields. A PUT sends them all: what it leaves out takes its default."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=5000, allow_blank=True, default="")
    type = serializers.ChoiceField(choices=Campaign.Type.choices)
    start_at = serializers.DateTimeField(help_text="Incentives from this moment, once ACTIVE.")
    end_at = serializers.DateTimeField(
        allow_null=True, default=None, help_text="Open-ended when null; the schedule ends the campaign here."
    )
    rule_json = RuleJsonField(
        help_text="Trigger, conditions, reward, quest steps: its JSON Schema is at GET /api/v1/campaigns/rule-schema."
    )
    cohort_id = CohortField()
    priority = serializers.IntegerField(min_value=-INT32 - 1, max_value=INT32, default=0, help_text="Higher first.")
    stacking = serializers.ChoiceField(choices=Campaign.Stacking.choices, default=Campaign.Stacking.STACKABLE)
    budget_rewards = serializers.IntegerField(
        min_value=0, max_value=INT32, allow_null=True, default=None, help_text="Most incentives in all."
    )
    budget_amount = serializers.DecimalField(
        **MONEY, allow_null=True, default=None, help_text="Most reward in all (points, or money for cashback)."
    )
    member_cap_rewards = serializers.IntegerField(
        min_value=0, max_value=INT32, allow_null=True, default=None, help_text="Most incentives per member and period."
    )
    member_cap_amount = serializers.DecimalField(
        **MONEY, allow_null=True, default=None, help_text="Most reward per member and period."
    )
    member_cap_period = serializers.ChoiceField(choices=Campaign.Period.choices, default=Campaign.Period.CAMPAIGN)

    def validate(self, attrs):
        if attrs["end_at"] is not None and attrs["end_at"] <= attrs["start_at"]:
            raise serializers.ValidationError({"end_at": ["Must be after startAt."]}, code="invalid")
        return attrs

    def service_fields(self) -> dict:
        data = dict(self.validated_data)
        data["cohort"] = data.pop("cohort_id")
        return data


class CampaignListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Campaign.Status.choices, required=False)
    type = serializers.ChoiceField(choices=Campaign.Type.choices, required=False)
    action = serializers.RegexField(ACTION_CODE_PATTERN, max_length=64, required=False)
    active_at = serializers.DateTimeField(required=False)


class ActionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Action
        fields = ["code", "description", "created_at"]
        read_only_fields = fields


class ActionWriteSerializer(serializers.Serializer):
    code = serializers.RegexField(
        ACTION_CODE_PATTERN, max_length=64, help_text="Letters, digits, . _ : - (max 64), e.g. app.login."
    )
    description = serializers.CharField(max_length=300, allow_blank=True, default="")


class CouponPoolSerializer(serializers.ModelSerializer):
    class Meta:
        model = CouponPool
        fields = ["code", "name", "created_at"]
        read_only_fields = fields


class CouponPoolWriteSerializer(serializers.Serializer):
    code = serializers.SlugField(max_length=64, help_text="What a COUPON reward names as `pool`.")
    name = serializers.CharField(max_length=200)


class CouponCodesSerializer(serializers.Serializer):
    codes = serializers.ListField(
        child=serializers.CharField(max_length=services.MAX_COUPON_CODE),
        min_length=1,
        max_length=MAX_CODES,
        help_text="Codes already in the pool, and repeats, are skipped.",
    )


class CouponCodesResultSerializer(serializers.Serializer):
    added = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Already in the pool, or repeated in the request.")


class IncentiveSerializer(serializers.ModelSerializer):
    campaign_id = serializers.UUIDField(read_only=True)
    campaign_name = serializers.CharField(source="campaign.name", read_only=True)
    coupon_code = serializers.CharField(source="coupon.code", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Incentive
        fields = [
            "id",
            "campaign_id",
            "campaign_name",
            "type",
            "status",
            "reward_currency",
            "reward_amount",
            "reversed_amount",
            "coupon_code",
            "event_id",
            "explanation",
            "issued_at",
            "reversed_at",
        ]
        read_only_fields = fields


class IncentiveCursorPagination(StrictPageSizeMixin, CursorPagination):
    """Newest first, stable while new incentives arrive."""

    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500
    ordering = ("-issued_at", "-id")


# Views ---------------------------------------------------------------------------------------

NOT_ENDED = "campaign_ended: an ENDED campaign cannot be changed"


def _write_serializer(view: TenantAPIView, request) -> CampaignWriteSerializer:
    serializer = CampaignWriteSerializer(data=request.data, context={"tenant": view.tenant})
    serializer.is_valid(raise_exception=True)
    return serializer


@contextmanager
def rule_errors_as_validation_errors():
    """The service checks the rule (against the tenant's catalogs); its error is reported like
    any other field's, naming the failing part: ruleJson.reward.points."""
    try:
        yield
    except RuleInvalid as exc:
        detail = serializers.ErrorDetail(exc.message, code=exc.code)
        raise serializers.ValidationError({exc.field or "rule_json": [detail]}) from None


def _campaign_body(campaign: Campaign) -> dict:
    return CampaignSerializer(campaign).data


class CampaignCreateApi(TenantAPIView):
    @extend_schema(
        operation_id="campaigns_create",
        summary="Create a campaign",
        description="A SIMPLE or QUEST campaign, as a DRAFT. Every error names its field; an invalid rule "
        "names the failing part, e.g. `ruleJson.reward.points`.",
        request=CampaignWriteSerializer,
        responses={201: CampaignSerializer},
    )
    def post(self, request):
        serializer = _write_serializer(self, request)
        with rule_errors_as_validation_errors():
            campaign = services.campaign_create(tenant=self.tenant, **serializer.service_fields())
        return Response(_campaign_body(campaign), status=status.HTTP_201_CREATED)


class CampaignDetailApi(TenantAPIView):
    @extend_schema(operation_id="campaigns_retrieve", summary="Get a campaign", responses=CampaignSerializer)
    def get(self, request, campaign_id):
        return Response(_campaign_body(selectors.campaign_get(tenant=self.tenant, campaign_id=campaign_id)))

    @extend_schema(
        operation_id="campaigns_update",
        summary="Update a campaign",
        description="Replaces every editable field (those left out take their defaults); any change makes a "
        "new `version`. Status changes go through `:activate`, `:pause` and `:end`.",
        request=CampaignWriteSerializer,
        responses={200: CampaignSerializer, **domain_errors(e409=NOT_ENDED)},
    )
    def put(self, request, campaign_id):
        campaign = selectors.campaign_get(tenant=self.tenant, campaign_id=campaign_id)
        serializer = _write_serializer(self, request)
        with rule_errors_as_validation_errors():
            campaign = services.campaign_update(tenant=self.tenant, campaign=campaign, **serializer.service_fields())
        return Response(_campaign_body(campaign))


LIST_PARAMETERS = [
    OpenApiParameter("status", str, enum=Campaign.Status.values, description="Only campaigns in this status."),
    OpenApiParameter("type", str, enum=Campaign.Type.values),
    OpenApiParameter(
        "action",
        str,
        description="Only campaigns an action event with this code triggers: the code is in "
        "`trigger.actionCodes`, a quest step counts it, or the trigger takes every action.",
    ),
    OpenApiParameter(
        "activeAt",
        OpenApiTypes.DATETIME,
        description="Only campaigns applied at this moment: ACTIVE, startAt <= activeAt < endAt.",
    ),
]


class TenantCampaignListApi(TenantAPIView, ListAPIView):
    queryset = Campaign.objects.none()  # for the schema; requests use get_queryset
    serializer_class = CampaignSerializer
    filter_backends = []

    def get_queryset(self):
        if str(self.tenant.pk) != str(self.kwargs["tenant_id"]):
            raise NotFound("Tenant not found.")
        params = self.request.query_params
        names = {"status": "status", "type": "type", "action": "action", "activeAt": "active_at"}
        query = CampaignListQuerySerializer(data={name: params[key] for key, name in names.items() if key in params})
        query.is_valid(raise_exception=True)
        return selectors.campaign_list(tenant=self.tenant, **query.validated_data)

    @extend_schema(
        operation_id="tenants_campaigns_list",
        summary="List a tenant's campaigns",
        description="Newest first. `tenantId` is the caller's own tenant.",
        parameters=LIST_PARAMETERS,
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


def _transition_schema(verb: str, summary: str, description: str, conflicts: str):
    return extend_schema(
        operation_id=f"campaigns_{verb}",
        summary=summary,
        description=description,
        request=None,
        responses={200: CampaignSerializer, **domain_errors(e409=conflicts)},
    )


class CampaignActivateApi(TenantAPIView):
    @_transition_schema(
        "activate",
        "Activate a campaign",
        "DRAFT or PAUSED to ACTIVE. A campaign whose startAt is ahead is scheduled: it applies from startAt.",
        "illegal_transition: not DRAFT or PAUSED; campaign_expired: its endAt has passed",
    )
    def post(self, request, campaign_id):
        campaign = selectors.campaign_get(tenant=self.tenant, campaign_id=campaign_id)
        return Response(_campaign_body(services.campaign_activate(tenant=self.tenant, campaign=campaign)))


class CampaignPauseApi(TenantAPIView):
    @_transition_schema(
        "pause",
        "Pause a campaign",
        "ACTIVE to PAUSED: no incentives until it is activated again.",
        "illegal_transition: not ACTIVE",
    )
    def post(self, request, campaign_id):
        campaign = selectors.campaign_get(tenant=self.tenant, campaign_id=campaign_id)
        return Response(_campaign_body(services.campaign_pause(tenant=self.tenant, campaign=campaign)))


class CampaignEndApi(TenantAPIView):
    @_transition_schema(
        "end",
        "End a campaign",
        "ACTIVE or PAUSED to ENDED, for good (the schedule also ends campaigns at their endAt).",
        "illegal_transition: not ACTIVE or PAUSED",
    )
    def post(self, request, campaign_id):
        campaign = selectors.campaign_get(tenant=self.tenant, campaign_id=campaign_id)
        return Response(_campaign_body(services.campaign_end(tenant=self.tenant, campaign=campaign)))


class RuleSchemaApi(TenantAPIView):
    @extend_schema(
        operation_id="campaigns_rule_schema",
        summary="The campaign rule's JSON Schema",
        description="The schema `ruleJson` follows (draft 2020-12), for editors and clients. Beyond it, "
        "the API checks condition variables, the tenant's action codes and coupon pools, and that the "
        "reward fits the trigger.",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="A JSON Schema document.")},
    )
    def get(self, request):
        return Response(RULE_SCHEMA)


class ActionListUpsertApi(TenantAPIView, ListAPIView):
    queryset = Action.objects.none()  # for the schema; requests use get_queryset
    serializer_class = ActionSerializer
    filter_backends = []

    def get_queryset(self):
        return selectors.action_list(tenant=self.tenant)

    @extend_schema(operation_id="actions_list", summary="List the tenant's action codes", description="By code.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="actions_upsert",
        summary="Add an action code, or change its description",
        description="The catalog campaign triggers and quest steps name (seed 001 ACTION).",
        request=ActionWriteSerializer,
        responses={
            201: ActionSerializer,
            200: OpenApiResponse(ActionSerializer, description="The code existed; its description is updated."),
        },
    )
    def post(self, request):
        serializer = ActionWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        action, created = services.action_upsert(tenant=self.tenant, **serializer.validated_data)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(ActionSerializer(action).data, status=code)


class CouponPoolCreateApi(TenantAPIView):
    @extend_schema(
        operation_id="coupon_pools_create",
        summary="Create a coupon pool",
        request=CouponPoolWriteSerializer,
        responses={201: CouponPoolSerializer, **domain_errors(e409="coupon_pool_exists: the code is taken")},
    )
    def post(self, request):
        serializer = CouponPoolWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pool = services.coupon_pool_create(tenant=self.tenant, **serializer.validated_data)
        return Response(CouponPoolSerializer(pool).data, status=status.HTTP_201_CREATED)


class CouponCodesAddApi(TenantAPIView):
    @extend_schema(
        operation_id="coupon_pools_codes_add",
        summary="Add codes to a coupon pool",
        description=f"Up to {MAX_CODES:,} codes at a time; those the pool has already are skipped.",
        request=CouponCodesSerializer,
        responses={200: CouponCodesResultSerializer},
    )
    def post(self, request, code):
        pool = selectors.coupon_pool_get(tenant=self.tenant, code=code)
        serializer = CouponCodesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        codes = serializer.validated_data["codes"]
        added = services.coupon_codes_add(tenant=self.tenant, pool=pool, codes=codes)
        return Response(CouponCodesResultSerializer({"added": added, "skipped": len(codes) - added}).data)


class MemberIncentiveListApi(TenantAPIView, ListAPIView):
    queryset = Incentive.objects.none()  # for the schema; requests use get_queryset
    serializer_class = IncentiveSerializer
    pagination_class = IncentiveCursorPagination
    filter_backends = []

    def get_queryset(self):
        member = member_selectors.member_get(tenant=self.tenant, external_ref=self.kwargs["member_ref"])
        return selectors.incentive_list(tenant=self.tenant, member=member)

    @extend_schema(operation_id="members_incentives_list", summary="A member's incentives (newest first)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class MeIncentiveListApi(ListAPIView):
    permission_classes = [IsMember]
    queryset = Incentive.objects.none()  # for the schema; requests use get_queryset
    serializer_class = IncentiveSerializer
    pagination_class = IncentiveCursorPagination
    filter_backends = []

    def get_queryset(self):
        member = self.request.user.member
        return selectors.incentive_list(tenant=member.tenant, member=member)

    @extend_schema(operation_id="me_incentives_list", summary="The member's own incentives (newest first)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


urlpatterns = [
    path("campaigns", CampaignCreateApi.as_view(), name="campaign-create"),
    path("campaigns/rule-schema", RuleSchemaApi.as_view(), name="campaign-rule-schema"),
    path("campaigns/<uuid:campaign_id>", CampaignDetailApi.as_view(), name="campaign-detail"),
    path("campaigns/<uuid:campaign_id>:activate", CampaignActivateApi.as_view(), name="campaign-activate"),
    path("campaigns/<uuid:campaign_id>:pause", CampaignPauseApi.as_view(), name="campaign-pause"),
    path("campaigns/<uuid:campaign_id>:end", CampaignEndApi.as_view(), name="campaign-end"),
    path("tenants/<uuid:tenant_id>/campaigns", TenantCampaignListApi.as_view(), name="tenant-campaigns"),
    path("actions", ActionListUpsertApi.as_view(), name="action-list"),
    path("coupon-pools", CouponPoolCreateApi.as_view(), name="coupon-pool-create"),
    path("coupon-pools/<slug:code>/codes", CouponCodesAddApi.as_view(), name="coupon-pool-codes"),
    path("members/<str:member_ref>/incentives", MemberIncentiveListApi.as_view(), name="member-incentives"),
    path("me/incentives", MeIncentiveListApi.as_view(), name="me-incentives"),
]
