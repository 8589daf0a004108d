"""`Idempotency-Key` for POSTs that move points or stock.

The first request with a key claims it by inserting a row (a unique constraint decides
who was first, never a check-then-insert). A retry with the same body gets the stored
response; another body is a 422; a duplicate that arrives while the first is still
running is a 409. Only completed responses are stored and replayed: a request that ended
in an error (invalid input, not found, a domain refusal, a server error) frees its key, so
the corrected request can be sent again with it.
"""

import functools
import hashlib
import json
from datetime import datetime

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response

from core.api.principals import MemberClient, request_tenant
from core.exceptions import Conflict, DomainError, Unprocessable
from core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


class IdempotencyKeyInvalid(DomainError):
    default_code = "invalid_idempotency_key"


class IdempotencyKeyReused(Unprocessable):
    default_code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was used with a different request."


class IdempotencyKeyInFlight(Conflict):
    default_code = "idempotency_key_in_flight"
    default_message = "A request with this Idempotency-Key is still being processed; retry shortly."


def _scope(request) -> str:
    """Who owns the key: the tenant (API key, operators), a member (member token), or a user."""
    tenant = request_tenant(request)
    if tenant is not None:
        return f"tenant:{tenant.pk}"
    if isinstance(request.user, MemberClient):
        return f"member:{request.user.member.pk}"
    return f"user:{request.user.pk}"


def _fingerprint(request) -> str:
    body = json.dumps(request.data, sort_keys=True, cls=DjangoJSONEncoder, separators=(",", ":"))
    raw = f"{request.method}\n{request.path}\n{body}".encode()
    return hashlib.sha256(raw).hexdigest()


def _claim(*, scope: str, key: str, fingerprint: str, now: datetime) -> IdempotencyRecord | None:
    """Claim the key and return None, or return the record of the request that holds it."""
    for _ in range(3):
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.create(scope=scope, key=key, fingerprint=fingerprint, locked_at=now)
            return None
        except IntegrityError:
            pass
        record = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
        if record is not None:
            break
        # The holder failed and freed the key between our insert and our read: try again.
    else:
        raise IdempotencyKeyInFlight(field=HEADER)
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused(field=HEADER)
    if record.status == IdempotencyRecord.Status.IN_FLIGHT:
        # A request that died mid-flight leaves its claim behind; take it over once stale.
        stale_before = now - settings.IDEMPOTENCY_LOCK_TIMEOUT
        taken = IdempotencyRecord.objects.filter(
            pk=record.pk, status=IdempotencyRecord.Status.IN_FLIGHT, locked_at__lt=stale_before
        ).update(locked_at=now)
        if taken:
            return None
        raise IdempotencyKeyInFlight(field=HEADER)
    return record


def idempotent(view_method=None, *, required: bool = False):
    """Decorate an APIView's `post` to honour the Idempotency-Key header:
    `@idempotent`, or `@idempotent(required=True)` where a request without one is a 400."""
    if view_method is None:
        return functools.partial(idempotent, required=required)

    @functools.wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None and required:
            raise IdempotencyKeyInvalid(
                f"The {HEADER} header is required.", field=HEADER, code="idempotency_key_required"
            )
        if key is None:
            return view_method(self, request, *args, **kwargs)
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise IdempotencyKeyInvalid(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.", field=HEADER)
        scope = _scope(request)
        existing = _claim(scope=scope, key=key, fingerprint=_fingerprint(request), now=timezone.now())
        if existing is not None:
            response = Response(existing.response_body, status=existing.response_status)
            response["Idempotent-Replayed"] = "true"
            return response
        request.idempotency_key = key
        try:
            response = view_method(self, request, *args, **kwargs)
        except BaseException:
            IdempotencyRecord.objects.filter(scope=scope, key=key).delete()
            raise
        if response.status_code >= 500:
            IdempotencyRecord.objects.filter(scope=scope, key=key).delete()
        else:
            IdempotencyRecord.objects.filter(scope=scope, key=key).update(
                status=IdempotencyRecord.Status.COMPLETED,
                response_status=response.status_code,
                response_body=json.loads(json.dumps(response.data, cls=DjangoJSONEncoder)),
            )
        return response

    return wrapper
