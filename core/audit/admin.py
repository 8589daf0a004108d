"""The audit log in the back office, in place of auditlog's own page: every operator reads
their own tenant's entries (viewers too), platform staff read all of them with a tenant
filter, and nobody adds, changes or deletes one."""

import uuid

from auditlog import get_logentry_model
from auditlog.filters import ResourceTypeFilter
from auditlog.render import render_logentry_changes_html
from django.apps import apps
from django.contrib import admin
from django.db.models import OuterRef, Subquery, UUIDField, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Replace
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from core.admin_scoping import TenantScopedAdminMixin, is_platform_staff
from core.admin_services import ReadOnlyAdminMixin

LogEntry = get_logentry_model()
SUMMARY_LENGTH = 160

admin.site.unregister(LogEntry)


class TenantFilter(admin.SimpleListFilter):
    """For platform staff only (an operator's list has no tenant filter)."""

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request, model_admin):
        tenants = apps.get_model("tenants", "Tenant").objects.order_by("name")
        return [(str(pk), name) for pk, name in tenants.values_list("pk", "name")]

    def queryset(self, request, queryset):
        return queryset.filter(additional_data__tenant=self.value()) if self.value() else queryset


@admin.register(LogEntry)
class AuditLogAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    # Nobody writes here, platform staff included: the log is the evidence (ReadOnlyAdminMixin).
    list_display = ("timestamp", "who", "what_done", "resource", "summary", "tenant")
    list_display_links = ("timestamp",)
    list_filter = ("action", ResourceTypeFilter, TenantFilter)
    list_select_related = ("content_type", "actor")
    search_fields = ("object_repr", "additional_data__actor", "actor__username", "changes")
    search_help_text = "Object, who (e.g. operator:alice, api-key:lk_…) or a changed value."
    date_hierarchy = "timestamp"
    ordering = ("-timestamp", "-pk")
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("timestamp", "who", "what_done", "resource", "tenant")}),
        ("Changes", {"fields": ("changes_table", "detail")}),
        ("Request", {"fields": ("remote_addr", "cid")}),
    )
    readonly_fields = (
        "timestamp",
        "who",
        "what_done",
        "resource",
        "tenant",
        "changes_table",
        "detail",
        "remote_addr",
        "cid",
    )

    # Rows: the entry's tenant is in its additional data (core/audit/tracking.py) ---------

    def get_queryset(self, request):
        queryset = admin.ModelAdmin.get_queryset(self, request)
        if not is_platform_staff(request.user):
            tenant = self.request_tenant(request)
            return queryset.none() if tenant is None else queryset.filter(additional_data__tenant=str(tenant.pk))
        tenants = apps.get_model("tenants", "Tenant").objects.filter(pk=OuterRef("tenant_id"))
        # Without the dashes, the text casts to a UUID on PostgreSQL and matches SQLite's.
        tenant_id = Cast(Replace(KT("additional_data__tenant"), Value("-"), Value("")), UUIDField())
        return queryset.annotate(tenant_id=tenant_id, tenant_name=Subquery(tenants.values("name")[:1]))

    def tenant_pk_of(self, obj):
        key = (obj.additional_data or {}).get("tenant")
        return uuid.UUID(key) if key else None

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if is_platform_staff(request.user):
            return fieldsets
        # An operator's entries are all their own tenant's.
        head, *rest = fieldsets
        return [(head[0], {**head[1], "fields": [f for f in head[1]["fields"] if f != "tenant"]}), *rest]

    def get_list_filter(self, request):
        filters = super().get_list_filter(request)
        return filters if is_platform_staff(request.user) else [f for f in filters if f is not TenantFilter]

    # Columns ----------------------------------------------------------------------------

    @admin.display(description="who", ordering="additional_data__actor")
    def who(self, obj):
        actor = (obj.additional_data or {}).get("actor")
        if actor:
            return actor
        return f"operator:{obj.actor.get_username()}" if obj.actor_id else "system"

    @admin.display(description="what", ordering="action")
    def what_done(self, obj):
        return (obj.additional_data or {}).get("action") or obj.get_action_display()

    @admin.display(description="object", ordering="object_repr")
    def resource(self, obj):
        label = f"{obj.content_type.name}: {obj.object_repr}"
        if obj.action == LogEntry.Action.DELETE:
            return label
        try:
            url = reverse(
                f"{self.admin_site.name}:{obj.content_type.app_label}_{obj.content_type.model}_change",
                args=[obj.object_pk],
            )
        except NoReverseMatch:
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="changes")
    def summary(self, obj):
        changes = obj.changes_dict
        if obj.action == LogEntry.Action.CREATE:
            text = ", ".join(f"{field}: {values[1]}" for field, values in sorted(changes.items()))
        else:
            text = "; ".join(f"{field}: {values[0]} → {values[1]}" for field, values in sorted(changes.items()))
        return text if len(text) <= SUMMARY_LENGTH else f"{text[: SUMMARY_LENGTH - 1]}…"

    @admin.display(description="tenant")
    def tenant(self, obj):
        return getattr(obj, "tenant_name", None) or "—"

    @admin.display(description="before and after")
    def changes_table(self, obj):
        return render_logentry_changes_html(obj) or "—"

    @admin.display(description="detail")
    def detail(self, obj):
        extra = {k: v for k, v in (obj.additional_data or {}).items() if k not in ("tenant", "actor", "action")}
        return "; ".join(f"{key}: {value}" for key, value in sorted(extra.items())) or "—"
