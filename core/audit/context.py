"""Who is acting, for the audit log.

auditlog's middleware puts the Django user, the address and the correlation id on each entry,
but it reads the user before the view runs, and DRF authenticates inside the view: an API
key is never a Django user, and an operator calling the API is not yet one when the middleware
looks. So the request is kept for the length of the call, and the actor is read from it when
an entry is written, as `core.api.principals.actor_of` names one.
"""

from contextvars import ContextVar

from auditlog.middleware import AuditlogMiddleware

from core.api.principals import ApiClient, MemberClient, actor_of

_request = ContextVar("audit_request", default=None)


def current_actor() -> str | None:
    """`api-key:<prefix>`, `operator:<username>` or `member:<memberRef>`; None outside a
    request (a task, a command) or for an anonymous caller."""
    request = _request.get()
    user = getattr(request, "user", None)
    if isinstance(user, MemberClient):
        return f"member:{user.member.external_ref}"
    if isinstance(user, ApiClient) or getattr(user, "is_authenticated", False):
        return actor_of(request)
    return None


class AuditContextMiddleware(AuditlogMiddleware):
    """auditlog's middleware, keeping the request for `current_actor`. After the
    authentication middleware."""

    def __call__(self, request):
        token = _request.set(request)
        try:
            return super().__call__(request)
        finally:
            _request.reset(token)
