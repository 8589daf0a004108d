import jwt
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from core.api.principals import MemberClient
from core.ids import uuid_or_none
from core.rls import tenant_scope_enter
from rewards.models import Member
from rewards.selectors import member_for_token
from rewards.tokens import member_token_decode


def member_token_authenticate(token: str) -> tuple[Member, dict]:
    """The member a token stands for (with its tenant and balance) and its verified claims,
    for the API and the WebSocket alike: signature, audience, issuer and expiry checked, and
    the member and its tenant must both be active. Raises jwt.InvalidTokenError
    (jwt.ExpiredSignatureError once expired)."""
    claims = member_token_decode(token)
    member_id, tenant_id = uuid_or_none(claims["sub"]), uuid_or_none(claims["tid"])
    member = member_for_token(member_id=member_id, tenant_id=tenant_id) if member_id and tenant_id else None
    if member is None or not member.is_active or not member.tenant.is_active:
        raise jwt.InvalidTokenError("No active member of an active tenant for this token.")
    return member, claims


class MemberTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <member token>`: tenant, member, audience and expiry checked."""

    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header.", code="invalid_token")
        try:
            member, claims = member_token_authenticate(parts[1].decode("ascii", errors="replace"))
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationFailed("The member token has expired.", code="token_expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed("Invalid member token.", code="invalid_token") from exc
        tenant_scope_enter(member.tenant_id)
        return MemberClient(tenant=member.tenant, member=member), claims

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="member"'


class MemberTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "rewards.authentication.MemberTokenAuthentication"
    name = "MemberToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
