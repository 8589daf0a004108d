"""Member tokens: short-lived HS256 JWTs a tenant's backend obtains for its member."""

import uuid
from datetime import datetime

import jwt
from django.conf import settings
from django.utils import timezone

ALGORITHM = "HS256"


def member_token_encode(*, tenant_id, member_id) -> tuple[str, datetime]:
    now = timezone.now()
    expires_at = now + settings.MEMBER_TOKEN_TTL
    claims = {
        "iss": settings.MEMBER_TOKEN_ISSUER,
        "aud": settings.MEMBER_TOKEN_AUDIENCE,
        "sub": str(member_id),
        "tid": str(tenant_id),
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, settings.MEMBER_TOKEN_SIGNING_KEY, algorithm=ALGORITHM)
    return token, expires_at.replace(microsecond=0)


def member_token_decode(token: str) -> dict:
    """The verified claims; raises jwt.InvalidTokenError (bad signature, expired, wrong audience...)."""
    return jwt.decode(
        token,
        settings.MEMBER_TOKEN_SIGNING_KEY,
        algorithms=[ALGORITHM],
        audience=settings.MEMBER_TOKEN_AUDIENCE,
        issuer=settings.MEMBER_TOKEN_ISSUER,
        options={"require": ["exp", "iat", "sub", "aud", "iss", "tid"]},
    )
