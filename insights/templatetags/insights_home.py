"""The back office's home dashboard: the operator's program figures of the last 30 days
above the app list (`{% insights_home %}` in templates/admin/index.html)."""

from django import template
from django.urls import reverse

from core.admin_scoping import is_platform_staff
from core.api.principals import operator_tenant
from insights.admin import URL_NAME, charts_of, may_view
from insights.program import program_report, program_window

register = template.Library()


@register.inclusion_tag("admin/insights/home.html", takes_context=True)
def insights_home(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not may_view(user):
        return {"show": False}
    url = reverse(f"admin:{URL_NAME}")
    tenant = None if is_platform_staff(user) else operator_tenant(user)
    if tenant is None:
        return {"show": True, "tenant": None, "program_url": url}
    report = program_report(tenant=tenant, window=program_window(tenant=tenant, date_from=None, date_to=None))
    return {"show": True, "tenant": tenant, "report": report, "charts": charts_of(report), "program_url": url}
