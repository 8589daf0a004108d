from django.http import StreamingHttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.pagination import LedgerCursorPagination
from core.api.permissions import IsMember
from core.api.principals import actor_of
from core.api.schema import IDEMPOTENCY_KEY_HEADER, domain_errors
from core.api.views import TenantAPIView
from core.idempotency import idempotent
from rewards import privacy, selectors, services
from rewards.api.filters import MemberFilter
from rewards.api.serializers import (
    AdjustmentResultSerializer,
    AdjustmentSerializer,
    MemberCreateSerializer,
    MemberDetailSerializer,
    MemberSerializer,
    MemberTokenSerializer,
    MemberUpdateSerializer,
    TransferSerializer,
)
from rewards.exceptions import MemberNotFound
from rewards.models import Member, Transfer


class MemberListCreateApi(TenantAPIView, ListAPIView):
    queryset = Member.objects.none()  # for the schema; requests use get_queryset
    serializer_class = MemberSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = MemberFilter

    def get_queryset(self):
        return selectors.member_list(tenant=self.tenant)

    @extend_schema(summary="List members", description="Filter by status, locale, memberRef prefix, creation time.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create a member",
        request=MemberCreateSerializer,
        responses={
            201: MemberSerializer,
            **domain_errors(
                e409="memberRef already exists, or the Idempotency-Key is in flight",
                e422="Idempotency-Key reused with another body",
            ),
        },
        parameters=[IDEMPOTENCY_KEY_HEADER],
    )
    @idempotent
    def post(self, request):
        serializer = MemberCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = services.member_create(
            tenant=self.tenant,
            external_ref=data["member_ref"],
            locale=data["locale"],
            status=data["status"],
            attributes=data["attributes"],
        )
        member = selectors.member_get(tenant=self.tenant, external_ref=member.external_ref)
        return Response(MemberSerializer(member).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(TenantAPIView):
    @extend_schema(
        summary="Get a member: balance, pending points, points expiring soon", responses=MemberDetailSerializer
    )
    def get(self, request, member_ref):
        return Response(MemberDetailSerializer(selectors.member_get(tenant=self.tenant, external_ref=member_ref)).data)

    @extend_schema(summary="Update a member", request=MemberUpdateSerializer, responses=MemberSerializer)
    def patch(self, request, member_ref):
        member = selectors.member_get(tenant=self.tenant, external_ref=member_ref)
        serializer = MemberUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.member_update(member=member, **serializer.validated_data)
        return Response(MemberSerializer(selectors.member_get(tenant=self.tenant, external_ref=member_ref)).data)

    @extend_schema(
        summary="Erase a member (privacy request)",
        description="Anonymizes the member: the memberRef becomes an opaque `erased-...` ref (the old "
        "one is free for a new member), attributes and locale are cleared, the status becomes CLOSED "
        "(member tokens are refused, open WebSockets closed), and copies of the ref and attribute "
        "values are scrubbed from events, webhook deliveries and the audit log. The ledger is kept: "
        "the balance stays on the anonymized account and lapses under the expiry policy. Emits "
        "`member.erased`. A second erasure is a 404 (the old ref is gone; an erased ref is not "
        "erased again).",
        request=None,
        responses={204: None},
    )
    def delete(self, request, member_ref):
        member = selectors.member_get(tenant=self.tenant, external_ref=member_ref)
        if privacy.member_is_erased(member):
            raise MemberNotFound(field="memberRef")
        privacy.member_erase(tenant=self.tenant, member=member, actor=actor_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberExportApi(TenantAPIView):
    @extend_schema(
        summary="Export a member's data (privacy request)",
        description="One JSON object, streamed: `memberRef` and `sections`, each a list of rows: "
        "`profile`, `accounts` (balances), `lots`, `transfers`, then one section per kind of record "
        "that refers to the member, by model (`campaigns.Incentive`, `redemptions.Redemption`, "
        "`tiers.TierHistory`, ...). Field names are those of the database.",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request, member_ref):
        member = selectors.member_get(tenant=self.tenant, external_ref=member_ref)
        response = StreamingHttpResponse(
            privacy.member_export_json(tenant=self.tenant, member=member), content_type="application/json"
        )
        response["Content-Disposition"] = 'attachment; filename="member-export.json"'
        return response


class MemberAdjustmentApi(TenantAPIView):
    rate_limit_scope = "points"

    @extend_schema(
        summary="Adjust a member's points",
        description="An operator credit (positive points) or debit (negative). A debit never takes "
        "the balance below zero (422 `insufficient_points`).",
        request=AdjustmentSerializer,
        responses={
            200: OpenApiResponse(AdjustmentResultSerializer, description="Replay of an earlier identical adjustment"),
            201: AdjustmentResultSerializer,
            **domain_errors(
                e409="The Idempotency-Key is in flight",
                e422="insufficient_points, member_inactive, or an Idempotency-Key reused with another body",
            ),
        },
        parameters=[IDEMPOTENCY_KEY_HEADER],
    )
    @idempotent
    def post(self, request, member_ref):
        member = selectors.member_get(tenant=self.tenant, external_ref=member_ref)
        serializer = AdjustmentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.points_adjust(
            tenant=self.tenant,
            member=member,
            actor=actor_of(request),
            idempotency_key=getattr(request, "idempotency_key", None),
            **serializer.validated_data,
        )
        transfer = selectors.transfer_list(tenant=self.tenant, member=member).get(pk=result.transfer.pk)
        body = {
            "transfer": TransferSerializer(transfer).data,
            "balance": selectors.member_balance(member=member),
        }
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class MemberTransferListApi(TenantAPIView, ListAPIView):
    serializer_class = TransferSerializer
    pagination_class = LedgerCursorPagination

    queryset = Transfer.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        member = selectors.member_get(tenant=self.tenant, external_ref=self.kwargs["member_ref"])
        return selectors.transfer_list(tenant=self.tenant, member=member)

    @extend_schema(summary="A member's ledger (cursor-paginated)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class MemberTokenApi(TenantAPIView):
    @extend_schema(
        summary="Issue a member token",
        description="Exchange the tenant's API key for a short-lived token the member's app sends "
        "as `Authorization: Bearer`.",
        request=None,
        responses={201: MemberTokenSerializer, **domain_errors(e422="member_inactive: the member is not active")},
    )
    def post(self, request, member_ref):
        member = selectors.member_get(tenant=self.tenant, external_ref=member_ref)
        token, expires_at = services.member_token_issue(member=member)
        body = MemberTokenSerializer({"token": token, "token_type": "Bearer", "expires_at": expires_at}).data
        return Response(body, status=status.HTTP_201_CREATED)


class MeApi(APIView):
    permission_classes = [IsMember]

    @extend_schema(summary="The member's own profile, balance and expiring points", responses=MemberDetailSerializer)
    def get(self, request):
        # The token's member was read with its tenant and balance (selectors.member_for_token).
        return Response(MemberDetailSerializer(request.user.member).data)


class MeTransferListApi(ListAPIView):
    permission_classes = [IsMember]
    serializer_class = TransferSerializer
    pagination_class = LedgerCursorPagination

    queryset = Transfer.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        member = self.request.user.member
        return selectors.transfer_list(tenant=member.tenant, member=member)

    @extend_schema(summary="The member's own ledger (cursor-paginated)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
