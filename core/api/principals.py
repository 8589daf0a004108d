"""Who is calling. Authentication classes set `request.user` to one of these (or a
Django user, for operators and platform admins); `request_tenant` resolves the tenant."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ApiClient:
    """A tenant's backend, authenticated by one of the tenant's API keys."""

    tenant: Any
    api_key: Any
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True


@dataclass(frozen=True)
class MemberClient:
    """A member's app, authenticated by a short-lived member token."""

    tenant: Any
    member: Any
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True


def operator_tenant(user) -> Any:
    """The tenant a Django user operates, or None (platform staff, anonymous)."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "pk", None):
        return None
    operator = getattr(user, "operator", None)
    return operator.tenant if operator is not None else None


def request_tenant(request) -> Any:
    """The tenant a server-side caller acts for: API key or operator login. Members excluded."""
    user = getattr(request, "user", None)
    if isinstance(user, ApiClient):
        return user.tenant
    if isinstance(user, MemberClient):
        return None
    return operator_tenant(user)


def is_platform_admin(user) -> bool:
    if isinstance(user, (ApiClient, MemberClient)) or user is None:
        return False
    if not getattr(user, "is_authenticated", False) or not user.is_active or not user.is_staff:
        return False
    if operator_tenant(user) is not None:
        return False
    return user.has_perm("tenants.add_tenant")


def actor_of(request) -> str:
    """Who made a change, as audit trails record it: `api-key:<prefix>` or `operator:<username>`."""
    if isinstance(request.user, ApiClient):
        return f"api-key:{request.user.api_key.prefix}"
    return f"operator:{request.user.get_username()}"
