from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotAuthenticated
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.permissions import IsPlatformAdmin, IsTenantClient, IsTenantClientOrPlatformAdmin
from core.api.principals import is_platform_admin, request_tenant
from core.api.schema import domain_errors
from core.exceptions import NotFound
from tenants.api.serializers import (
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    EffectiveLimitsSerializer,
    IssuedApiKeySerializer,
    LimitUpsertSerializer,
    TenantCreatedSerializer,
    TenantCreateSerializer,
    TenantSerializer,
    UserLimitUpsertSerializer,
)
from tenants.models import ApiKey, Tenant
from tenants.selectors import api_key_get, api_key_list, limits_effective, tenant_get
from tenants.services import api_key_create, api_key_revoke, limit_upsert, tenant_create


def tenant_from_path(request, tenant_id) -> Tenant:
    """The tenant named in the path, if the caller may see it; otherwise 404."""
    if is_platform_admin(request.user):
        return tenant_get(tenant_id=tenant_id)
    own = request_tenant(request)
    if own is None:
        raise NotAuthenticated()
    if str(own.pk) != str(tenant_id):
        raise NotFound("Tenant not found.")
    return own


def _issued_key_data(issued) -> dict:
    """The new key's fields and, this once, the key itself."""
    issued.api_key.key = issued.raw
    return IssuedApiKeySerializer(issued.api_key).data


class TenantListCreateApi(ListAPIView):
    permission_classes = [IsPlatformAdmin]
    serializer_class = TenantSerializer
    queryset = Tenant.objects.order_by("name", "id")

    @extend_schema(
        summary="Create a tenant",
        description="Creates the tenant and its default limits, and returns its first API key once.",
        request=TenantCreateSerializer,
        responses={201: TenantCreatedSerializer, **domain_errors(e409="The slug is taken")},
    )
    def post(self, request):
        # Not behind Idempotency-Key: a replay would have to store the raw API key. The slug
        # makes a retry safe instead (a second create with the same slug is a 409).
        serializer = TenantCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tenant, issued = tenant_create(**serializer.validated_data)
        body = {**TenantSerializer(tenant).data, "api_key": _issued_key_data(issued)}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(summary="List tenants (platform admins)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TenantDetailApi(APIView):
    permission_classes = [IsTenantClientOrPlatformAdmin]

    @extend_schema(summary="Get a tenant", responses=TenantSerializer)
    def get(self, request, tenant_id):
        return Response(TenantSerializer(tenant_from_path(request, tenant_id)).data)


MEMBER_REF_PARAM = OpenApiParameter("memberRef", str, description="Give this member's effective per-member limit.")


class TenantLimitsApi(APIView):
    permission_classes = [IsTenantClientOrPlatformAdmin]

    @extend_schema(
        summary="Get effective limits",
        parameters=[MEMBER_REF_PARAM],
        responses=EffectiveLimitsSerializer,
    )
    def get(self, request, tenant_id):
        tenant = tenant_from_path(request, tenant_id)
        member_ref = request.query_params.get("memberRef") or request.query_params.get("member_ref")
        return Response(EffectiveLimitsSerializer(limits_effective(tenant=tenant, member_ref=member_ref)).data)

    @extend_schema(
        summary="Upsert a tenant-wide limit",
        description="`scope` GLOBAL caps the whole tenant; USER sets the default cap for each member.",
        request=LimitUpsertSerializer,
        responses=EffectiveLimitsSerializer,
    )
    def post(self, request, tenant_id):
        tenant = tenant_from_path(request, tenant_id)
        serializer = LimitUpsertSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        limit_upsert(tenant=tenant, **serializer.validated_data)
        return Response(EffectiveLimitsSerializer(limits_effective(tenant=tenant)).data)


class TenantUserLimitsApi(APIView):
    permission_classes = [IsTenantClientOrPlatformAdmin]

    @extend_schema(
        summary="Upsert one member's limit",
        request=UserLimitUpsertSerializer,
        responses=EffectiveLimitsSerializer,
    )
    def post(self, request, tenant_id):
        tenant = tenant_from_path(request, tenant_id)
        serializer = UserLimitUpsertSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        limit_upsert(tenant=tenant, scope="USER", **serializer.validated_data)
        member_ref = serializer.validated_data["member_ref"]
        return Response(EffectiveLimitsSerializer(limits_effective(tenant=tenant, member_ref=member_ref)).data)


class ApiKeyListCreateApi(ListAPIView):
    permission_classes = [IsTenantClient]
    serializer_class = ApiKeySerializer
    queryset = ApiKey.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        return api_key_list(tenant=tenant_from_path(self.request, self.kwargs["tenant_id"]))

    @extend_schema(summary="List API keys (secrets are never shown again)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create an API key",
        description="The key is in this response only; store it now.",
        request=ApiKeyCreateSerializer,
        responses={201: IssuedApiKeySerializer},
    )
    def post(self, request, tenant_id):
        tenant = tenant_from_path(request, tenant_id)
        serializer = ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = api_key_create(tenant=tenant, **serializer.validated_data)
        return Response(_issued_key_data(issued), status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(APIView):
    permission_classes = [IsTenantClient]

    @extend_schema(
        summary="Revoke an API key", operation_id="tenant_api_key_revoke", request=None, responses=ApiKeySerializer
    )
    def post(self, request, tenant_id, key_id):
        tenant = tenant_from_path(request, tenant_id)
        api_key = api_key_revoke(api_key=api_key_get(tenant=tenant, key_id=key_id))
        return Response(ApiKeySerializer(api_key).data)
