"""Brute-force protection on password logins (django-axes), the project's way.

Axes counts failed logins per username and client address and refuses a locked-out pair before
any password is checked; see AXES_* in config/settings.py for the policy.
"""

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from django.conf import settings


class LoginAttemptsBackend(AxesStandaloneBackend):
    """Axes' lockout check, skipped for logins made without a request (management commands,
    a test client's `login()`): there is no client address to count them against, and Axes would
    otherwise refuse them with an error instead of letting the password backends decide.
    Failures are counted by Axes' `user_login_failed` handler, whoever sends it."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        # DRF's HTTP Basic passes its own Request; the lockout flag belongs on the HttpRequest the
        # middleware sees, so a locked-out API caller gets the 429 too.
        request = getattr(request, "_request", request)
        try:
            return super().authenticate(request, username=username, password=password, **kwargs)
        except AxesBackendPermissionDenied:
            request.axes_locked_out = True
            raise


def client_ip(request) -> str:
    """The address failed logins are counted against. Behind the TLS proxy (SECURE_PROXY_SSL_HEADER
    set) that is the last X-Forwarded-For entry, the one the proxy itself appended; earlier entries
    are the client's to invent. Without a proxy, the socket's peer."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if settings.SECURE_PROXY_SSL_HEADER and forwarded:
        return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def lockout_response(request, original_response, credentials):
    """What a locked-out login gets (AXES_LOCKOUT_CALLABLE): the API's JSON error shape under
    /api/ (platform admins sign in there with HTTP Basic), the lockout page elsewhere; 429 both."""
    from axes.helpers import get_client_username, get_cool_off, get_failure_limit
    from django.http import JsonResponse
    from django.shortcuts import render
    from django_guid import get_guid

    cool_off = get_cool_off(request)
    minutes = max(1, int(cool_off.total_seconds() // 60)) if cool_off else None
    wait = f" Try again in {minutes} minutes or ask a platform administrator to unlock it." if minutes else ""
    if request.path.startswith("/api/"):
        body = {
            "type": "client_error",
            "errors": [
                {"code": "login_locked_out", "detail": f"Too many failed logins for this account.{wait}", "attr": None}
            ],
            "requestId": get_guid(),
        }
        return JsonResponse(body, status=429)
    context = {
        "failure_limit": get_failure_limit(request, credentials),
        "username": get_client_username(request, credentials) or "",
        "cooloff_minutes": minutes,
        "site_header": "Loyalty back office",
        "site_title": "Loyalty back office",
    }
    return render(request, settings.AXES_LOCKOUT_TEMPLATE, context, status=429)
