"""The member demo app at /demo/: a small web client (templates/demo/, static/demo/) that uses
only the public API, as a tenant's member app would, and is the reference for app developers.

This module plays the part of the tenant's own backend and nothing more: it picks a member of
the demo tenant (DEMO_APP_TENANT) and obtains a member token for it, as a backend would with
`POST /api/v1/members/{memberRef}/token`, and hands a fresh one to the page when the old one
runs out. Whoever can open the page can act as those members, so it is served only when
DEMO_APP_ENABLED is on (the default with DEBUG); otherwise every URL here is a 404.
"""

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from rewards import selectors
from rewards.exceptions import MemberNotFound
from rewards.models import Member
from rewards.services import member_token_issue
from tenants.models import Tenant

# How many of the demo tenant's members the page offers to switch between.
MEMBERS_OFFERED = 12


def _demo_tenant() -> Tenant:
    if not settings.DEMO_APP_ENABLED:
        raise Http404("The demo app is off (DEMO_APP_ENABLED).")
    tenant = Tenant.objects.filter(slug=settings.DEMO_APP_TENANT).first()
    if tenant is None:
        raise Http404(f"No tenant {settings.DEMO_APP_TENANT!r}: `make run` seeds the demo tenant.")
    return tenant


def _demo_members(tenant: Tenant) -> list[Member]:
    members = selectors.member_list(tenant=tenant).filter(status=Member.Status.ACTIVE)
    return list(members.order_by("external_ref")[:MEMBERS_OFFERED])


def _demo_member(tenant: Tenant, member_ref: str) -> Member:
    try:
        member = selectors.member_get(tenant=tenant, external_ref=member_ref)
    except MemberNotFound:
        raise Http404("No such demo member.") from None
    if member.status != Member.Status.ACTIVE:
        raise Http404("Only active members can sign in.")
    return member


@require_GET
def demo_page(request: HttpRequest) -> HttpResponse:
    """The app, signed in as `?member=<memberRef>` (the first demo member without it)."""
    tenant = _demo_tenant()
    members = _demo_members(tenant)
    member_ref = request.GET.get("member") or (members[0].external_ref if members else "")
    if not member_ref:
        raise Http404("The demo tenant has no active members: `make run` seeds them.")
    member = _demo_member(tenant, member_ref)
    token, expires_at = member_token_issue(member=member)
    offered = [m.external_ref for m in members]
    if member.external_ref not in offered:
        offered.append(member.external_ref)
    config = {
        "apiBase": "/api/v1",
        "wsPath": "/ws",
        "tokenUrl": request.path + "token",
        "csrfToken": get_token(request),
        "tenantId": str(tenant.pk),
        "tenantName": tenant.name,
        "currency": tenant.currency,
        "memberRef": member.external_ref,
        "token": token,
        "expiresAt": expires_at.isoformat(),
    }
    context = {"tenant": tenant, "member": member, "members": offered, "config": config}
    response = render(request, "demo/index.html", context)
    response["Cache-Control"] = "no-store"  # the page carries a token
    return response


@require_POST
def demo_token(request: HttpRequest) -> JsonResponse:
    """A fresh token for the member named in the form (`memberRef`): what the page asks its
    backend for when the API answers 401 or the socket closes with 4401."""
    tenant = _demo_tenant()
    member = _demo_member(tenant, request.POST.get("memberRef", ""))
    token, expires_at = member_token_issue(member=member)
    return JsonResponse(
        {"token": token, "tokenType": "Bearer", "expiresAt": expires_at.isoformat()},
        headers={"Cache-Control": "no-store"},
    )


urlpatterns = [
    path("", demo_page, name="demo"),
    path("token", demo_token, name="demo-token"),
]
