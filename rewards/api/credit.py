"""Credit packages and purchases: `/api/v1/credit-packages[/{packageId}]`,
`/api/v1/credit-purchases[/{purchaseId}]`.

The tenant's backend (API key) and its operators manage packages and see every purchase; a
member app (member token) sees the active packages and its own purchases, and buys for itself.
"""

from decimal import Decimal

import django_filters
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response

from core.api.pagination import LedgerCursorPagination
from core.api.permissions import IsApiKeyOrMember, IsTenantClientOrMemberReading
from core.api.schema import REQUIRED_IDEMPOTENCY_KEY_HEADER, domain_errors
from core.api.views import TenantOrMemberAPIView
from core.idempotency import idempotent
from core.validators import member_ref_validator
from rewards import credit, selectors
from rewards.api.acting import acting_member
from rewards.credit import MAX_PRICE
from rewards.ledger import MAX_POINTS
from rewards.models import CreditPackage, CreditPurchase
from tenants.models import currency_validator

# Packages -------------------------------------------------------------------------------


class CreditPackageSerializer(serializers.ModelSerializer):
    price = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)

    class Meta:
        model = CreditPackage
        fields = [
            "id",
            "code",
            "name",
            "description",
            "price",
            "currency",
            "reward_points",
            "is_active",
            "sort_order",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class CreditPackageUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    price = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=MAX_PRICE,
        required=False,
        help_text='A decimal string, e.g. "9.99".',
    )
    currency = serializers.CharField(
        min_length=3, max_length=3, validators=[currency_validator], required=False, help_text="ISO 4217."
    )
    reward_points = serializers.IntegerField(min_value=1, max_value=MAX_POINTS, required=False)
    is_active = serializers.BooleanField(required=False)
    sort_order = serializers.IntegerField(min_value=-(2**31), max_value=2**31 - 1, required=False)


class CreditPackageCreateSerializer(CreditPackageUpdateSerializer):
    code = serializers.SlugField(max_length=64, help_text="Unique in the tenant.")
    name = serializers.CharField(max_length=200)
    price = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=MAX_PRICE,
        help_text='A decimal string, e.g. "9.99".',
    )
    currency = serializers.CharField(
        min_length=3,
        max_length=3,
        validators=[currency_validator],
        required=False,
        help_text="ISO 4217; the tenant's currency when left out.",
    )
    reward_points = serializers.IntegerField(min_value=1, max_value=MAX_POINTS)


class CreditPackageFilter(django_filters.FilterSet):
    isActive = django_filters.BooleanFilter(field_name="is_active")  # noqa: N815

    class Meta:
        model = CreditPackage
        fields = ["isActive"]


class CreditPackageListCreateApi(TenantOrMemberAPIView, ListAPIView):
    permission_classes = [IsTenantClientOrMemberReading]
    serializer_class = CreditPackageSerializer
    filterset_class = CreditPackageFilter
    queryset = CreditPackage.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        return credit.credit_package_list(tenant=self.tenant, active_only=self.member is not None)

    @extend_schema(
        summary="List credit packages",
        description="Packages of points for sale. A member token sees the active ones only.",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create a credit package",
        request=CreditPackageCreateSerializer,
        responses={201: CreditPackageSerializer, **domain_errors(e409="credit_package_exists: the code is taken")},
    )
    def post(self, request):
        serializer = CreditPackageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        package = credit.credit_package_create(tenant=self.tenant, **serializer.validated_data)
        return Response(CreditPackageSerializer(package).data, status=status.HTTP_201_CREATED)


class CreditPackageDetailApi(TenantOrMemberAPIView):
    permission_classes = [IsTenantClientOrMemberReading]

    @extend_schema(summary="Get a credit package", responses=CreditPackageSerializer)
    def get(self, request, package_id):
        package = credit.credit_package_get(
            tenant=self.tenant, package_id=package_id, active_only=self.member is not None
        )
        return Response(CreditPackageSerializer(package).data)

    @extend_schema(
        summary="Update a credit package",
        description="Purchases already made keep the price and points they were made at.",
        request=CreditPackageUpdateSerializer,
        responses=CreditPackageSerializer,
    )
    def patch(self, request, package_id):
        package = credit.credit_package_get(tenant=self.tenant, package_id=package_id)
        serializer = CreditPackageUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        package = credit.credit_package_update(package=package, **serializer.validated_data)
        return Response(CreditPackageSerializer(package).data)


# Purchases ------------------------------------------------------------------------------


class CreditPurchaseSerializer(serializers.ModelSerializer):
    member_ref = serializers.CharField(source="member.external_ref", read_only=True)
    package_id = serializers.UUIDField(read_only=True)
    package_code = serializers.CharField(source="package.code", read_only=True)
    amount_paid = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)
    transfer_id = serializers.UUIDField(read_only=True, allow_null=True, help_text="The PURCHASE transfer.")
    decline_code = serializers.CharField(read_only=True, help_text="Why it was declined or failed; empty otherwise.")
    decline_reason = serializers.CharField(read_only=True)

    class Meta:
        model = CreditPurchase
        fields = [
            "id",
            "status",
            "member_ref",
            "package_id",
            "package_code",
            "amount_paid",
            "currency",
            "points_awarded",
            "transfer_id",
            "gateway_reference",
            "decline_code",
            "decline_reason",
            "payment_token_fingerprint",
            "created_at",
            "resolved_at",
        ]
        read_only_fields = fields


class CreditPurchaseResultSerializer(CreditPurchaseSerializer):
    balance = serializers.IntegerField(read_only=True, help_text="The member's spendable points now.")

    class Meta(CreditPurchaseSerializer.Meta):
        fields = [*CreditPurchaseSerializer.Meta.fields, "balance"]
        read_only_fields = fields


class CreditPurchaseCreateSerializer(serializers.Serializer):
    package_id = serializers.UUIDField()
    payment_token = serializers.CharField(
        max_length=255, help_text="The member's payment token from the gateway; only a fingerprint is kept."
    )
    member_ref = serializers.CharField(
        max_length=128,
        validators=[member_ref_validator],
        required=False,
        help_text="Required with an API key. With a member token the buyer is the token's member.",
    )


class CreditPurchaseListCreateApi(TenantOrMemberAPIView, ListAPIView):
    rate_limit_scope = "purchases"  # POST only: reads are not counted
    serializer_class = CreditPurchaseSerializer
    pagination_class = LedgerCursorPagination
    queryset = CreditPurchase.objects.none()  # for the schema; requests use get_queryset

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsApiKeyOrMember()]
        return [IsTenantClientOrMemberReading()]

    def get_queryset(self):
        member = self.member
        params = self.request.query_params
        if member is None and params.get("memberRef"):
            member = selectors.member_get(tenant=self.tenant, external_ref=params["memberRef"])
        status_filter = params.get("status")
        if status_filter and status_filter not in CreditPurchase.Status.values:
            raise serializers.ValidationError({"status": [f"Use one of {', '.join(CreditPurchase.Status.values)}."]})
        return credit.credit_purchase_list(tenant=self.tenant, member=member, status=status_filter)

    @extend_schema(
        summary="List credit purchases (cursor-paginated)",
        description="The tenant's purchases (filter by memberRef, status); a member token sees its own.",
        parameters=[
            OpenApiParameter("memberRef", str, description="Only this member's (ignored for a member token)."),
            OpenApiParameter(
                "status", str, enum=[*CreditPurchase.Status.values, ""], description="Empty or left out: any status."
            ),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Buy a credit package",
        description=(
            "Charges the payment token through the payment gateway and credits the package's points "
            "(a PURCHASE transfer). 201: completed. 202: the gateway did not answer in time; the purchase "
            "is PENDING until reconciliation settles it (poll `GET /credit-purchases/{purchaseId}`). "
            "402 `payment_declined`: nothing credited. 503 `payment_gateway_unavailable`: nothing charged."
        ),
        request=CreditPurchaseCreateSerializer,
        responses={
            201: CreditPurchaseResultSerializer,
            202: OpenApiResponse(CreditPurchaseResultSerializer, description="PENDING: the outcome is not known yet"),
            **domain_errors(
                e402="payment_declined: the gateway declined the payment token; nothing was credited",
                e409="The Idempotency-Key is in flight",
                e422="credit_package_inactive, member_inactive, or an Idempotency-Key reused with another body",
                e503="payment_gateway_unavailable: the gateway cannot be reached; nothing was charged",
            ),
        },
        parameters=[REQUIRED_IDEMPOTENCY_KEY_HEADER],
    )
    @idempotent(required=True)
    def post(self, request):
        serializer = CreditPurchaseCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = acting_member(self, data.get("member_ref"), verb="buys")
        package = credit.credit_package_get(tenant=self.tenant, package_id=data["package_id"])
        purchase = credit.credit_purchase_start(
            tenant=self.tenant,
            member=member,
            package=package,
            payment_token=data["payment_token"],
            idempotency_key=getattr(request, "idempotency_key", ""),
        )
        purchase.balance = selectors.member_balance(member=member)
        completed = purchase.status == CreditPurchase.Status.COMPLETED
        return Response(
            CreditPurchaseResultSerializer(purchase).data,
            status=status.HTTP_201_CREATED if completed else status.HTTP_202_ACCEPTED,
        )


class CreditPurchaseDetailApi(TenantOrMemberAPIView):
    permission_classes = [IsTenantClientOrMemberReading]

    @extend_schema(summary="Get a credit purchase", responses=CreditPurchaseSerializer)
    def get(self, request, purchase_id):
        purchase = credit.credit_purchase_get(tenant=self.tenant, purchase_id=purchase_id, member=self.member)
        return Response(CreditPurchaseSerializer(purchase).data)
