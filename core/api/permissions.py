from rest_framework.permissions import BasePermission

from core.api.principals import MemberClient, is_platform_admin, request_tenant


class IsTenantClient(BasePermission):
    """A tenant's backend (API key) or one of its operators."""

    message = "A tenant API key (X-API-Key) is required."

    def has_permission(self, request, view) -> bool:
        return request_tenant(request) is not None


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
        return request_tenant(request) is not None or is_platform_admin(request.user)
