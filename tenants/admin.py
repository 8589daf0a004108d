from django.contrib import admin, messages
from django.contrib.auth import get_user_model

from core.admin_scoping import TenantScopedAdminMixin, adopt_saved, is_platform_staff
from tenants.models import ApiKey, Limit, Operator, Tenant
from tenants.services import api_key_create, api_key_revoke, tenant_create

ADMIN = Operator.Role.ADMIN.value


def _show_raw_key_once(modeladmin, request, raw: str) -> None:
    modeladmin.message_user(
        request, f"API key (copy it now, it is not shown again): {raw}", messages.SUCCESS, fail_silently=True
    )


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Only platform staff create or delete tenants; a tenant's ADMIN edits its settings."""

    tenant_field = "pk"
    change_roles = (ADMIN,)

    list_display = ("name", "slug", "status", "currency", "created_at")
    list_filter = ("status", "currency")
    search_fields = ("name", "slug")
    ordering = ("name",)
    settings_fields = (
        "name",
        "slug",
        "status",
        "currency",
        "point_value",
        "earn_rate",
        "rounding",
        "timezone",
        "default_locale",
    )

    def get_fields(self, request, obj=None):
        if obj is None:
            return self.settings_fields
        return ("id", *self.settings_fields, "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        readonly = () if obj is None else ("id", "created_at", "updated_at")
        if not is_platform_staff(request.user):
            # The slug is the tenant's public id and suspension is the platform's call.
            readonly = (*readonly, "slug", "status")
        return readonly

    def get_prepopulated_fields(self, request, obj=None):
        return {"slug": ("name",)} if obj is None else {}

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        # Through the service, so the tenant starts with its default limits and an API key.
        values = {name: getattr(obj, name) for name in self.settings_fields if name not in ("name", "slug")}
        tenant, issued = tenant_create(id=obj.pk, name=obj.name, slug=obj.slug, **values)
        adopt_saved(obj, tenant)
        _show_raw_key_once(self, request, issued.raw)
        return None


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return (("active", "Active"), ("revoked", "Revoked"))

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Keys are made by the service (the raw key is shown once) and revoked, never edited;
    the stored hash is never displayed. Operators revoke; only platform staff delete, which
    deleting a tenant needs."""

    add_roles = (ADMIN,)

    list_display = ("name", "prefix", "tenant", "active", "created_at", "last_used_at", "revoked_at")
    list_filter = (ApiKeyStatusFilter, "tenant")
    list_select_related = ("tenant",)
    search_fields = ("name", "prefix")
    ordering = ("-created_at",)
    actions = ("revoke_keys",)
    detail_fields = ("tenant", "name", "prefix", "active", "created_at", "last_used_at", "revoked_at")

    @admin.display(boolean=True, description="active")
    def active(self, obj):
        return not obj.is_revoked

    def get_fields(self, request, obj=None):
        return ("tenant", "name") if obj is None else self.detail_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.detail_fields

    def has_change_permission(self, request, obj=None):
        return False

    def has_revoke_permission(self, request):
        return self.role_allows(request, (ADMIN,))

    def save_model(self, request, obj, form, change):
        issued = api_key_create(tenant=obj.tenant, name=obj.name)
        adopt_saved(obj, issued.api_key)
        _show_raw_key_once(self, request, issued.raw)

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke_keys(self, request, queryset):
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)


@admin.register(Limit)
class LimitAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    add_roles = change_roles = delete_roles = (ADMIN,)

    list_display = ("scope", "member_ref", "max_per_day", "max_total", "window_days", "tenant", "updated_at")
    list_filter = ("scope", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("member_ref",)
    fields = ("tenant", "scope", "member_ref", "max_per_day", "max_total", "window_days")


@admin.register(Operator)
class OperatorAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """A tenant's ADMIN adds existing staff users as operators of that tenant."""

    add_roles = change_roles = delete_roles = (ADMIN,)

    list_display = ("user", "role", "tenant", "created_at")
    list_filter = ("role", "tenant")
    list_select_related = ("user", "tenant")
    search_fields = ("user__username", "user__email")

    def get_fields(self, request, obj=None):
        return ("tenant", "user", "role") if obj is None else ("tenant", "user", "role", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("user", "created_at")

    def _is_self(self, request, obj) -> bool:
        return obj is not None and obj.user_id == request.user.pk and not is_platform_staff(request.user)

    def has_change_permission(self, request, obj=None):
        # An operator cannot demote or remove themselves and lock the tenant out.
        return super().has_change_permission(request, obj) and not self._is_self(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not self._is_self(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            # Only staff users who run no tenant yet; superusers are platform staff, not operators.
            kwargs["queryset"] = (
                get_user_model()
                ._default_manager.filter(is_active=True, is_staff=True, is_superuser=False, operator__isnull=True)
                .order_by("username")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
