"""The back office's program analytics dashboard (`/admin/insights/program/`): the figures of
`insights.program` for one tenant, with charts drawn on the server as inline SVG.

An operator sees their own tenant (whatever the query string says); platform staff pick a
tenant. Insights has no model of its own to hang a ModelAdmin (and its URLs) on, so the
page is added to the admin site's URLs and to its app list (index and sidebar) here.
"""

import math
from datetime import date

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.response import TemplateResponse
from django.urls import path, reverse

from core.admin_scoping import TenantScopedAdminMixin, is_platform_staff, operator_role
from core.admin_services import ReadOnlyAdminMixin, ReadOnlyInline
from core.api.principals import operator_tenant
from insights.models import ReconciliationDrift, ReconciliationRun
from insights.program import INTERVALS, MAX_BUCKETS, program_report, program_window
from redemptions.models import Redemption
from tenants.models import Tenant

URL_NAME = "insights_program"
TITLE = "Program analytics"
APP_LABEL = "insights"

# Chart geometry (SVG user units) and colours that read on the admin's light and dark themes.
WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28
ISSUED, REDEEMED, EXPIRED, LIABILITY, ACTIVE = "#2f9e44", "#1c7ed6", "#e8590c", "#7048e8", "#0c8599"
STATUS_COLOURS = {
    Redemption.Status.PENDING: "#868e96",
    Redemption.Status.FULFILLING: "#1c7ed6",
    Redemption.Status.COMPLETED: "#2f9e44",
    Redemption.Status.FAILED: "#e03131",
    Redemption.Status.REFUNDED: "#e8590c",
    Redemption.Status.CANCELLED: "#adb5bd",
}


def may_view(user) -> bool:
    """Platform staff, and operators of any role (the page only reads)."""
    return is_platform_staff(user) or operator_role(user) is not None


class DateInput(forms.DateInput):
    """The browser's date picker (no JavaScript of ours)."""

    input_type = "date"

    def __init__(self):
        super().__init__(format="%Y-%m-%d")


class ProgramFilterForm(forms.Form):
    """The window, and for platform staff the tenant. `from` and `to` are named as in the API."""

    def __init__(self, data=None, *, staff: bool):
        super().__init__(data)
        if staff:
            self.fields["tenant"] = forms.ModelChoiceField(
                queryset=Tenant.objects.order_by("name"), empty_label="Choose a tenant"
            )
        self.fields["from"] = forms.DateField(
            required=False,
            widget=DateInput(),
            help_text="First day, in the tenant's time zone (default: 30 days before To).",
        )
        self.fields["to"] = forms.DateField(
            required=False, widget=DateInput(), help_text="Day after the last (default: tomorrow)."
        )
        self.fields["interval"] = forms.ChoiceField(
            choices=[(i, i.title()) for i in INTERVALS],
            initial="day",
            required=False,
            help_text=f"Buckets of the charts, at most {MAX_BUCKETS}.",
        )


# Charts -------------------------------------------------------------------------------------------


def _scale(low: int, high: int) -> tuple[int, int, list[int]]:
    """Axis bounds widened to round ticks (1, 2 or 5 times a power of ten, about four steps)."""
    raw = max(high - low, 1) / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = max(int(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)), 1)
    low, high = math.floor(low / step) * step, max(math.ceil(high / step) * step, step)
    return low, high, list(range(low, high + 1, step))


def _y(value: int, low: int, high: int) -> float:
    span = (high - low) or 1
    return round(TOP + (HEIGHT - TOP - BOTTOM) * (high - value) / span, 1)


def _x(index: int, count: int) -> float:
    inner = WIDTH - LEFT - RIGHT
    if count <= 1:
        return LEFT + inner / 2
    return round(LEFT + inner * index / (count - 1), 1)


def _x_labels(labels: list[str], at) -> list[dict]:
    if not labels:
        return []
    picks = sorted({0, len(labels) // 2, len(labels) - 1})
    return [
        {"x": at(i), "text": labels[i], "anchor": "start" if i == 0 else "end" if i == picks[-1] else "middle"}
        for i in picks
    ]


def line_chart(*, title: str, labels: list[str], lines: list[tuple[str, str, list[int]]]) -> dict:
    """Polylines of each series over the buckets, with their values on hover."""
    values = [v for _, _, series in lines for v in series] or [0]
    low, high, ticks = _scale(min(0, *values), max(0, *values))
    count = len(labels)
    drawn = []
    for name, colour, series in lines:
        points = [(_x(i, count), _y(v, low, high), labels[i], v) for i, v in enumerate(series)]
        drawn.append(
            {
                "name": name,
                "colour": colour,
                "points": " ".join(f"{x},{y}" for x, y, _, _ in points),
                "dots": [{"x": x, "y": y, "title": f"{name} {label}: {v:,}"} for x, y, label, v in points],
            }
        )
    return {
        "title": title,
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "baseline": _y(0, low, high),
        "ticks": [{"y": _y(t, low, high), "text": f"{t:,}"} for t in ticks],
        "x_labels": _x_labels(labels, lambda i: _x(i, count)),
        "label_y": HEIGHT - 8,
        "lines": drawn,
    }


def bar_chart(*, title: str, labels: list[str], values: list[int], colour: str) -> dict:
    """Vertical bars, one per bucket."""
    _, high, ticks = _scale(0, max([0, *values]))
    count = max(len(values), 1)
    slot = (WIDTH - LEFT - RIGHT) / count
    width = max(round(slot * 0.8, 1), 1)
    bars = []
    for i, value in enumerate(values):
        y = _y(value, 0, high)
        bars.append(
            {
                "x": round(LEFT + slot * i + (slot - width) / 2, 1),
                "y": y,
                "width": width,
                "height": round(_y(0, 0, high) - y, 1),
                "title": f"{labels[i]}: {value:,}",
            }
        )
    return {
        "title": title,
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "baseline": _y(0, 0, high),
        "ticks": [{"y": _y(t, 0, high), "text": f"{t:,}"} for t in ticks],
        "x_labels": _x_labels(labels, lambda i: round(LEFT + slot * i + slot / 2, 1)),
        "label_y": HEIGHT - 8,
        "colour": colour,
        "bars": bars,
    }


def status_chart(*, by_status: list[dict]) -> dict:
    """Horizontal bars: redemptions requested in the window, by the status they are in now."""
    row, gap, label_width, bar_space = 24, 6, 120, WIDTH - 120 - 80
    high = max([0, *(s["count"] for s in by_status)]) or 1
    rows = []
    for i, status in enumerate(by_status):
        y = i * (row + gap)
        rows.append(
            {
                "label": status["status"].title(),
                "y": y,
                "text_y": round(y + row * 0.7, 1),
                "width": round(bar_space * status["count"] / high, 1),
                "count": status["count"],
                "count_x": label_width + round(bar_space * status["count"] / high, 1) + 6,
                "colour": STATUS_COLOURS.get(status["status"], "#868e96"),
                "title": f"{status['status']}: {status['count']:,} redemptions, {status['points']:,} points",
            }
        )
    return {
        "title": "Redemptions by status",
        "width": WIDTH,
        "height": len(by_status) * (row + gap),
        "bar_x": label_width,
        "row": row,
        "rows": rows,
    }


def _label(day: date, interval: str) -> str:
    return day.strftime("%b %Y") if interval == "month" else day.isoformat()


def charts_of(report: dict) -> dict:
    series, interval = report["series"], report["interval"]
    labels = [_label(point["start"], interval) for point in series]
    return {
        "flows": line_chart(
            title="Points issued, redeemed and expired",
            labels=labels,
            lines=[
                ("Issued", ISSUED, [p["issued"] for p in series]),
                ("Redeemed", REDEEMED, [p["redeemed"] for p in series]),
                ("Expired", EXPIRED, [p["expired"] for p in series]),
            ],
        ),
        "liability": line_chart(
            title="Outstanding points (liability) at the end of each bucket",
            labels=labels,
            lines=[("Outstanding", LIABILITY, [p["outstanding"] for p in series])],
        ),
        "active": bar_chart(
            title="Active members",
            labels=labels,
            values=[p["active_members"] for p in series],
            colour=ACTIVE,
        ),
        "statuses": status_chart(by_status=report["redemptions"]["by_status"]),
    }


# The page ----------------------------------------------------------------------------------------------


def _chosen_tenant(request, form) -> Tenant | None:
    if not is_platform_staff(request.user):
        return operator_tenant(request.user)
    return form.cleaned_data.get("tenant") if form.is_bound and form.is_valid() else None


def program_view(request):
    if not may_view(request.user):
        raise PermissionDenied
    staff = is_platform_staff(request.user)
    # An operator's first visit shows the default window at once; staff choose a tenant first.
    form = ProgramFilterForm(request.GET if request.GET or not staff else None, staff=staff)
    tenant = _chosen_tenant(request, form)
    report = charts = None
    if tenant is not None and form.is_valid():
        try:
            window = program_window(
                tenant=tenant,
                date_from=form.cleaned_data.get("from"),
                date_to=form.cleaned_data.get("to"),
                interval=form.cleaned_data.get("interval") or "day",
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field, errors)
        else:
            report = program_report(tenant=tenant, window=window)
            charts = charts_of(report)
    context = {
        **admin.site.each_context(request),
        "title": TITLE if tenant is None else f"{TITLE}: {tenant.name}",
        "form": form,
        "tenant": tenant,
        "staff": staff,
        "report": report,
        "charts": charts,
    }
    return TemplateResponse(request, "admin/insights/program.html", context)


# The admin site: the page's URL and its entry in the app list ------------------------------------------


# Reconciliation (read-only) ----------------------------------------------------------------


class ReconciliationDriftInline(ReadOnlyInline):
    model = ReconciliationDrift
    fields = readonly_fields = ("kind", "object_type", "object_id", "object_repr", "stored", "computed")


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """What each hourly reconciliation compared and found (insights.reconciliation)."""

    list_display = ("started_at", "finished_at", "checked", "drift_count", "tenant")
    list_filter = ("tenant",)
    list_select_related = ("tenant",)
    ordering = ("-started_at", "-pk")
    date_hierarchy = "started_at"
    show_full_result_count = False
    readonly_fields = [f.name for f in ReconciliationRun._meta.fields]
    inlines = [ReconciliationDriftInline]


@admin.register(ReconciliationDrift)
class ReconciliationDriftAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """Stored totals that disagreed with their source of truth: looked into, never auto-fixed."""

    list_display = ("run", "kind", "object_type", "object_id", "object_repr", "stored", "computed", "tenant")
    list_filter = ("kind", "tenant")
    list_select_related = ("run", "tenant")
    search_fields = ("object_id__exact",)
    search_help_text = "Exact object id (or Redis key)."
    ordering = ("-run__started_at", "kind", "object_id")
    show_full_result_count = False
    readonly_fields = [f.name for f in ReconciliationDrift._meta.fields]


def _install(site: admin.AdminSite) -> None:
    site_urls, site_app_list = site.get_urls, site.get_app_list

    def get_urls():
        return [path(f"{APP_LABEL}/program/", site.admin_view(program_view), name=URL_NAME), *site_urls()]

    def get_app_list(request, app_label=None):
        apps = site_app_list(request, app_label)
        if app_label not in (None, APP_LABEL) or not may_view(request.user):
            return apps
        url = reverse(f"{site.name}:{URL_NAME}")
        entry = {
            "name": TITLE,
            "object_name": "ProgramAnalytics",
            "perms": {"add": False, "change": False, "delete": False, "view": True},
            "admin_url": url,
            "add_url": None,
            "view_only": True,
        }
        app = next((a for a in apps if a["app_label"] == APP_LABEL), None)
        if app is None:
            app = {
                "name": "Insights and analytics",
                "app_label": APP_LABEL,
                "app_url": url,
                "has_module_perms": True,
                "models": [],
            }
            apps.append(app)
            apps.sort(key=lambda a: a["name"].lower())
        app["models"].append(entry)
        return apps

    site.get_urls = get_urls
    site.get_app_list = get_app_list


_install(admin.site)
