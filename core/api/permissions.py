from rest_framework.permissions import SAFE_METHODS, BasePermission

from core.api.principals import ApiClient, MemberClient, is_platform_admin, request_tenant

# Operator roles that may change data through the API (a VIEWER only reads).
WRITING_ROLES = {"ADMIN", "SUPPORT"}


def may_write(request) -> bool:
    """API keys write; an operator writes only with a writing role."""
    if request.method in SAFE_METHODS or isinstance(request.user, ApiClient):
        return True
    operator = getattr(request.user, "operator", None)
    return operator is not None and operator.role in WRITING_ROLES


class IsTenantClient(BasePermission):
    """A tenant's backend (API key) or one of its operators (read-only for viewers)."""

    message = "A tenant API key (X-API-Key) is required."

    def has_permission(self, request, view) -> bool:
        return request_tenant(request) is not None and may_write(request)


class IsMember(BasePermission):
    message = "A member token (Authorization: Bearer) is required."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, MemberClient)


class IsPlatformAdmin(BasePermission):
    message = "Platform administrator credentials are required."

    def has_permission(self, request, view) -> bool:
        return is_platform_admin(request.user)


class IsTenantClientOrPlatformAdmin(BasePermission):
    message = "A tenant API key or platform administrator credentials are required."

    def has_permission(self, request, view) -> bool:
        return is_platform_admin(request.user) or (request_tenant(request) is not None and may_write(request))


class IsTenantClientOrMemberReading(BasePermission):
    """The tenant's backend or operators (writes as IsTenantClient), or a member app reading."""

    message = "A tenant API key (X-API-Key), or a member token to read, is required."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS and isinstance(request.user, MemberClient):
            return True
        return IsTenantClient().has_permission(request, view)


class IsApiKeyOrMember(BasePermission):
    """Writes a member makes (purchases, redemptions): by the tenant's backend for a member,
    or by the member's app."""

    message = "A tenant API key (X-API-Key) or a member token is required."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, (ApiClient, MemberClient))
