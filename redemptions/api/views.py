"""Redemptions: `POST, GET /api/v1/redemptions`, `GET /api/v1/redemptions/{redemptionId}`,
`POST /api/v1/redemptions/{redemptionId}:cancel`.

A member app (member token) redeems for its member and sees its own redemptions; the
tenant's backend (API key) redeems on behalf of a `memberRef` and sees them all.
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response

from core.api.pagination import LedgerCursorPagination
from core.api.permissions import IsApiKeyOrMember, IsTenantClientOrMemberReading
from core.api.principals import MemberClient, actor_of
from core.api.schema import REQUIRED_IDEMPOTENCY_KEY_HEADER, domain_errors
from core.api.views import TenantOrMemberAPIView
from core.exceptions import DomainError
from core.idempotency import idempotent
from core.ids import uuid_or_none
from core.validators import member_ref_validator
from redemptions import selectors, services
from redemptions.models import Redemption, RedemptionTransition
from rewards.api.acting import acting_member
from rewards.selectors import member_balance, member_get


def _actor(request) -> str:
    if isinstance(request.user, MemberClient):
        return f"member:{request.user.member.external_ref}"[:64]
    return actor_of(request)[:64]


class TransitionSerializer(serializers.ModelSerializer):
    class Meta:
        model = RedemptionTransition
        fields = ["from_status", "to_status", "reason", "actor", "at"]
        read_only_fields = fields


class CalculationSerializer(serializers.Serializer):
    """How the points were computed and what the member got for them (seed 000 calculations)."""

    unit_point_cost = serializers.IntegerField(help_text="The item's list price in points, per unit.")
    discount_percentage = serializers.DecimalField(max_digits=5, decimal_places=2, help_text="The tier's discount.")
    unit_points = serializers.IntegerField(help_text="Points per unit after the discount.")
    discount_points = serializers.IntegerField(help_text="Points the discount saved in all.")
    points = serializers.IntegerField(help_text="Points charged in all.")
    cash_value = serializers.DecimalField(max_digits=14, decimal_places=2, help_text="What the items are worth.")
    currency = serializers.CharField()
    point_value = serializers.DecimalField(max_digits=12, decimal_places=6, help_text="Money per point then.")
    tier_code = serializers.CharField(help_text="The member's tier when it was requested.")


class RedemptionSerializer(serializers.ModelSerializer):
    redemption_id = serializers.UUIDField(source="id", read_only=True)
    member_ref = serializers.CharField(source="member.external_ref", read_only=True)
    item_id = serializers.UUIDField(read_only=True)
    item_name = serializers.CharField(source="item.name", read_only=True)
    kind = serializers.CharField(source="item_kind", read_only=True)
    partner = serializers.SerializerMethodField()
    calculation = serializers.SerializerMethodField()
    reference = serializers.CharField(
        source="partner_reference",
        read_only=True,
        help_text="The gift card code, shipment, booking or credit reference.",
    )
    reference_kind = serializers.CharField(source="partner_reference_kind", read_only=True)
    history = serializers.SerializerMethodField(help_text="Every status change, oldest first (on the detail only).")

    class Meta:
        model = Redemption
        fields = [
            "redemption_id",
            "status",
            "member_ref",
            "item_id",
            "item_name",
            "kind",
            "quantity",
            "points",
            "calculation",
            "partner",
            "reference",
            "reference_kind",
            "failure_code",
            "failure_reason",
            "created_at",
            "updated_at",
            "completed_at",
            "history",
        ]
        read_only_fields = fields

    def get_partner(self, redemption) -> str:
        config = redemption.partner_config
        return config.partner.code if config is not None else ""

    def get_calculation(self, redemption) -> CalculationSerializer:
        return CalculationSerializer(redemption).data

    def get_history(self, redemption) -> list[dict] | None:
        if not self.context.get("history"):
            return None
        return TransitionSerializer(redemption.transitions.order_by("at", "id"), many=True).data


class RedemptionResultSerializer(RedemptionSerializer):
    balance = serializers.IntegerField(read_only=True, help_text="The member's spendable points now.")

    class Meta(RedemptionSerializer.Meta):
        fields = [*RedemptionSerializer.Meta.fields, "balance"]
        read_only_fields = fields


class RedemptionCreateSerializer(serializers.Serializer):
    item_id = serializers.CharField(max_length=64, help_text="The catalog item's itemId.")
    quantity = serializers.IntegerField(min_value=1, default=1)
    member_ref = serializers.CharField(
        max_length=128,
        validators=[member_ref_validator],
        required=False,
        help_text="Required with an API key. With a member token the member is the token's.",
    )


class RedemptionCancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class RedemptionListCreateApi(TenantOrMemberAPIView, ListAPIView):
    rate_limit_scope = "redemptions"  # POST only: reads are not counted
    serializer_class = RedemptionSerializer
    pagination_class = LedgerCursorPagination
    queryset = Redemption.objects.none()  # for the schema; requests use get_queryset

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsApiKeyOrMember()]
        return [IsTenantClientOrMemberReading()]

    def get_queryset(self):
        params = self.request.query_params
        member = self.member
        if member is None and params.get("memberRef"):
            member = member_get(tenant=self.tenant, external_ref=params["memberRef"])
        status_filter = params.get("status")
        if status_filter and status_filter not in Redemption.Status.values:
            raise serializers.ValidationError({"status": [f"Use one of {', '.join(Redemption.Status.values)}."]})
        item_id = None
        if params.get("itemId"):
            item_id = uuid_or_none(params["itemId"])
            if item_id is None:
                raise serializers.ValidationError({"itemId": ["Not a valid itemId."]})
        return selectors.redemption_list(
            tenant=self.tenant, member=member, status=status_filter, item_id=item_id, partner=params.get("partner")
        )

    @extend_schema(
        summary="List redemptions (cursor-paginated)",
        description="The tenant's redemptions, newest first; a member token sees its own.",
        parameters=[
            OpenApiParameter("memberRef", str, description="Only this member's (ignored for a member token)."),
            OpenApiParameter(
                "status", str, enum=[*Redemption.Status.values, ""], description="Empty or left out: any status."
            ),
            OpenApiParameter("itemId", str),
            OpenApiParameter("partner", str, description="A partner code."),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Redeem points for a catalog item",
        description=(
            "In one transaction: checks the member may redeem the item (active member, item visible at the "
            "member's tier), applies the tier's discount, debits the points (those closest to expiry first), "
            "takes the stock and records the redemption PENDING; fulfilment through the partner follows "
            "(watch `GET /redemptions/{redemptionId}` or the member's WebSocket). The same Idempotency-Key "
            "returns the same redemption."
        ),
        request=RedemptionCreateSerializer,
        responses={
            201: RedemptionResultSerializer,
            **domain_errors(
                e409="out_of_stock: not enough stock left; or the Idempotency-Key is in flight",
                e422=(
                    "insufficient_points, member_inactive, no_fulfilment_partner, or an Idempotency-Key "
                    "reused with another body"
                ),
            ),
        },
        parameters=[REQUIRED_IDEMPOTENCY_KEY_HEADER],
    )
    @idempotent(required=True)
    def post(self, request):
        serializer = RedemptionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = acting_member(self, data.get("member_ref"), verb="redeems")
        redemption, _ = services.redemption_request(
            tenant=self.tenant,
            member=member,
            item_id=data["item_id"],
            quantity=data["quantity"],
            idempotency_key=getattr(request, "idempotency_key", ""),
            actor=_actor(request),
        )
        redemption.balance = member_balance(member=member)
        return Response(
            RedemptionResultSerializer(redemption, context={"history": True}).data, status=status.HTTP_201_CREATED
        )


class RedemptionDetailApi(TenantOrMemberAPIView):
    permission_classes = [IsTenantClientOrMemberReading]

    @extend_schema(summary="Get a redemption, with its status history", responses=RedemptionSerializer)
    def get(self, request, redemption_id):
        redemption = selectors.redemption_get(tenant=self.tenant, redemption_id=redemption_id, member=self.member)
        return Response(RedemptionSerializer(redemption, context={"history": True}).data)


class RedemptionCancelApi(TenantOrMemberAPIView):
    permission_classes = [IsApiKeyOrMember]
    rate_limit_scope = "redemptions"

    def rate_limit_member_ref(self, request) -> str | None:
        """The member the cancellation gives points back to: an API-key call names only the
        redemption. None (the view answers 404) when there is no such redemption."""
        if self.member is not None:
            return self.member.external_ref
        try:
            redemption = selectors.redemption_get(tenant=self.tenant, redemption_id=self.kwargs["redemption_id"])
        except DomainError:
            return None
        return redemption.member.external_ref

    @extend_schema(
        operation_id="redemptions_cancel",
        summary="Cancel a redemption before fulfilment",
        description=(
            "Only while it is PENDING: the points go back to the lots they came from and the stock back on "
            "the shelf; `redemption.cancelled` is announced. 409 `not_cancellable` once fulfilment started."
        ),
        request=RedemptionCancelSerializer,
        responses={200: RedemptionSerializer, **domain_errors(e409="not_cancellable: fulfilment already started")},
    )
    def post(self, request, redemption_id):
        serializer = RedemptionCancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        redemption = selectors.redemption_get(tenant=self.tenant, redemption_id=redemption_id, member=self.member)
        redemption = services.redemption_cancel(
            redemption=redemption, actor=_actor(request), reason=serializer.validated_data["reason"]
        )
        return Response(RedemptionSerializer(redemption, context={"history": True}).data)
