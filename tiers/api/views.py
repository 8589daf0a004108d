"""VIP tiers (seed 004): `/api/v1/tiers[/{tierId}]` and `/api/v1/tier-policy`.

Names are shown in the locale `?locale=` asks for, else the best of `Accept-Language`, else
the tenant's default locale, else English, else any. Every endpoint counts against the
tenant's rate limit (tiers/ratelimit.py)."""

from functools import cached_property

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.cache import patch_vary_headers
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response

from core.api.permissions import IsTenantClient, IsTenantClientOrMemberReading
from core.api.principals import MemberClient, request_tenant
from core.api.schema import domain_errors
from core.api.views import TenantAPIView
from core.exceptions import DomainError
from core.exceptions import NotFound as DomainNotFound
from tiers import metrics, selectors, services
from tiers.api.serializers import (
    TierCreateSerializer,
    TierPolicySerializer,
    TierPolicyWriteSerializer,
    TierSerializer,
    TierWriteSerializer,
)
from tiers.exceptions import TierAlreadyExists
from tiers.models import Tier
from tiers.ratelimit import TierRateThrottle

LOCALE_PARAMETERS = [
    OpenApiParameter(
        name="locale",
        location=OpenApiParameter.QUERY,
        required=False,
        type=str,
        description="The locale to show `name` in (BCP 47, e.g. ar or pt-BR); beats Accept-Language.",
    ),
    OpenApiParameter(
        name="Accept-Language",
        location=OpenApiParameter.HEADER,
        required=False,
        type=str,
        description="Locales by preference (q-values honoured); `ar` matches `ar-EG` and the other way round.",
    ),
]
RATE_LIMITED = domain_errors(
    e429="throttled: more than the tenant's tier requests a second (100); retry after `Retry-After` seconds."
)


def _error_type(exc: Exception) -> str:
    if isinstance(exc, exceptions.Throttled):
        return "rate_limited"
    if isinstance(exc, (DomainNotFound, Http404, exceptions.NotFound)):
        return "not_found"
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        return "unauthenticated"
    if isinstance(exc, exceptions.PermissionDenied):
        return "forbidden"
    if isinstance(exc, TierAlreadyExists):
        return "conflict"
    if isinstance(exc, (exceptions.ValidationError, DjangoValidationError, exceptions.ParseError, DomainError)):
        return "invalid"
    return "error"


class TierApiBase(TenantAPIView):
    permission_classes = [IsTenantClientOrMemberReading]
    throttle_classes = [TierRateThrottle]

    @cached_property
    def tenant(self):
        user = self.request.user
        tenant = user.tenant if isinstance(user, MemberClient) else request_tenant(self.request)
        if tenant is None:
            raise exceptions.NotAuthenticated()
        return tenant

    def locale_context(self) -> dict:
        return {
            "requested_locale": self.request.query_params.get("locale") or None,
            "accept_language": self.request.headers.get("Accept-Language"),
            "default_locale": self.tenant.default_locale,
        }

    def handle_exception(self, exc):
        metrics.LOOKUP_ERRORS.labels(type=_error_type(exc)).inc()
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if request.method in SAFE_METHODS:
            patch_vary_headers(response, ["Accept-Language"])
        return response


class TierListCreateApi(TierApiBase, ListAPIView):
    queryset = Tier.objects.none()  # for the schema; requests use get_queryset
    serializer_class = TierSerializer

    def get_queryset(self):
        return selectors.tier_list(tenant=self.tenant)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), **self.locale_context()}

    @extend_schema(
        summary="List VIP tiers",
        description="Lowest minPoints first. Member apps may read them too.",
        parameters=LOCALE_PARAMETERS,
        responses={200: TierSerializer(many=True), **RATE_LIMITED},
    )
    def get(self, request, *args, **kwargs):
        with metrics.LOOKUP_LATENCY.labels(operation="list").time():
            return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create a VIP tier",
        description="Announces `vip_tier.created`.",
        parameters=LOCALE_PARAMETERS,
        request=TierCreateSerializer,
        responses={
            201: TierSerializer,
            **domain_errors(e409="tier_exists: the tierId is taken"),
            **RATE_LIMITED,
        },
    )
    def post(self, request):
        serializer = TierCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tier = services.tier_create(tenant=self.tenant, **serializer.validated_data)
        return Response(TierSerializer(tier, context=self.locale_context()).data, status=status.HTTP_201_CREATED)


class TierDetailApi(TierApiBase):
    @extend_schema(
        summary="Get a VIP tier",
        description="Member apps may read it too.",
        parameters=LOCALE_PARAMETERS,
        responses={200: TierSerializer, **RATE_LIMITED},
    )
    def get(self, request, tier_id):
        with metrics.LOOKUP_LATENCY.labels(operation="get").time():
            tier = selectors.tier_get(tenant=self.tenant, tier_id=tier_id)
            return Response(TierSerializer(tier, context=self.locale_context()).data)

    def _update(self, request, tier_id: str, *, partial: bool) -> Response:
        tier = selectors.tier_get(tenant=self.tenant, tier_id=tier_id)
        serializer = TierWriteSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        if fields.pop("tier_id", tier_id) != tier_id:
            raise serializers.ValidationError({"tier_id": ["The tierId is fixed: give the one in the path, or none."]})
        tier, _ = services.tier_update(tenant=self.tenant, tier=tier, **fields)
        return Response(TierSerializer(tier, context=self.locale_context()).data)

    @extend_schema(
        summary="Replace a VIP tier",
        description=(
            "Every field is replaced; an absent one takes its default. The tierId is fixed. "
            "A change makes a new version and announces `vip_tier.updated` with the changed fields."
        ),
        parameters=LOCALE_PARAMETERS,
        request=TierWriteSerializer,
        responses={200: TierSerializer, **RATE_LIMITED},
    )
    def put(self, request, tier_id):
        return self._update(request, tier_id, partial=False)

    @extend_schema(
        summary="Update a VIP tier",
        description="Only the fields given change. A change makes a new version and announces `vip_tier.updated`.",
        parameters=LOCALE_PARAMETERS,
        request=TierWriteSerializer,
        responses={200: TierSerializer, **RATE_LIMITED},
    )
    def patch(self, request, tier_id):
        return self._update(request, tier_id, partial=True)


class TierPolicyApi(TierApiBase):
    permission_classes = [IsTenantClient]

    @extend_schema(
        summary="The tenant's tier qualification policy",
        description="LIFETIME (all points earned) unless set otherwise.",
        responses={200: TierPolicySerializer, **RATE_LIMITED},
    )
    def get(self, request):
        return Response(TierPolicySerializer(services.tier_policy_get(tenant=self.tenant)).data)

    @extend_schema(
        summary="Replace the tenant's tier qualification policy",
        description="Members move to the tiers it gives on their next evaluation.",
        request=TierPolicyWriteSerializer,
        responses={200: TierPolicySerializer, **RATE_LIMITED},
    )
    def put(self, request):
        serializer = TierPolicyWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        policy = services.tier_policy_update(tenant=self.tenant, **serializer.validated_data)
        return Response(TierPolicySerializer(policy).data)
