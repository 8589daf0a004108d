from rest_framework.permissions import SAFE_METHODS, BasePermission

from core.api.principals import ApiClient, MemberClient, is_platform_admin, request_tenant
from core.roles import ACCOUNT_ROLES, OPERATIONS_ROLES, PROGRAM_ROLES

# Which operator roles may write through a view, by the view's dotted path (module, then
# class; the longest matching prefix wins): the same split as in the back office. A viewer
# writes nowhere; a view no entry covers is the program's.
OPERATOR_WRITE_ROLES = {
    "tenants": ACCOUNT_ROLES,  # limits, API keys, webhook endpoints and their secrets
    "tenants.api.webhook_views.WebhookDeadLettersReplayApi": OPERATIONS_ROLES,
    "tenants.api.webhook_views.WebhookDeliveryReplayApi": OPERATIONS_ROLES,
    "rewards": OPERATIONS_ROLES,  # members, point adjustments, member tokens, events
    "rewards.api.categories": PROGRAM_ROLES,
    "rewards.api.credit": PROGRAM_ROLES,
    "campaigns": PROGRAM_ROLES,
    "tiers": PROGRAM_ROLES,
    "catalog": PROGRAM_ROLES,
    "redemptions": OPERATIONS_ROLES,
}
ROLE_REFUSED = "Your operator role may not make this change."


def operator_write_roles(view) -> tuple[str, ...]:
    path = f"{type(view).__module__}.{type(view).__qualname__}"
    matches = [prefix for prefix in OPERATOR_WRITE_ROLES if path == prefix or path.startswith(f"{prefix}.")]
    return OPERATOR_WRITE_ROLES[max(matches, key=len)] if matches else PROGRAM_ROLES


def may_write(request, view) -> bool:
    """API keys write; an operator writes only where their role may (see core/roles.py)."""
    if request.method in SAFE_METHODS or isinstance(request.user, ApiClient):
        return True
    operator = getattr(request.user, "operator", None)
    return operator is not None and operator.role in operator_write_roles(view)


class IsTenantClient(BasePermission):
    """A tenant's backend (API key) or one of its operators (writing as their role allows)."""

    message = "A tenant API key (X-API-Key) is required."

    def has_permission(self, request, view) -> bool:
        if request_tenant(request) is None:
            return False
        if not may_write(request, view):
            self.message = ROLE_REFUSED
            return False
        return True


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
        return is_platform_admin(request.user) or IsTenantClient.has_permission(self, request, view)


class IsTenantClientOrMemberReading(BasePermission):
    """The tenant's backend or operators (writes as IsTenantClient), or a member app reading."""

    message = "A tenant API key (X-API-Key), or a member token to read, is required."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS and isinstance(request.user, MemberClient):
            return True
        return IsTenantClient.has_permission(self, request, view)


class IsApiKeyOrMember(BasePermission):
    """Writes a member makes (purchases, redemptions): by the tenant's backend for a member,
    or by the member's app."""

    message = "A tenant API key (X-API-Key) or a member token is required."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, (ApiClient, MemberClient))
