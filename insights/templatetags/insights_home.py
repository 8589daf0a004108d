"""The back office's home dashboard: the operator's program figures of the last 30 days
above the app list (`{% insights_home %}` in templates/admin/index.html)."""

from django import template
from django.urls import reverse

from core.admin_scoping import is_platform_staff
from core.api.principals import operator_tenant
from insights.admin import URL_NAME, charts_of, may_view
from insights.program import program_report, program_window
from insights.reconciliation import last_runs_with_drift

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


@register.inclusion_tag("admin/insights/reconciliation_alert.html", takes_context=True)
def reconciliation_alert(context) -> dict:
    """A warning above the dashboard when the last reconciliation of the operator's tenant (of
    any tenant, for platform staff) found drift, linking to the drift it recorded."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not may_view(user):
        return {"runs": []}
    tenant = None if is_platform_staff(user) else operator_tenant(user)
    if tenant is None and not is_platform_staff(user):
        return {"runs": []}
    runs = last_runs_with_drift(tenant=tenant)
    changelist = reverse("admin:insights_reconciliationdrift_changelist")
    return {"runs": [{"run": run, "url": f"{changelist}?run__id__exact={run.pk}"} for run in runs]}
