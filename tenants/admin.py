from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model

from core.admin_scoping import TenantScopedAdminMixin, adopt_saved, is_platform_staff
from core.admin_services import ReadOnlyAdminMixin, ReadOnlyInline
from core.roles import ACCOUNT_ROLES, OPERATIONS_ROLES
from tenants.models import ApiKey, Limit, Operator, Tenant, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tenants.services import api_key_create, api_key_revoke, tenant_create
from tenants.webhooks import (
    WebhookTargetRefused,
    webhook_dead_letters_replay,
    webhook_deliveries_replay,
    webhook_endpoint_create,
    webhook_endpoint_secret_rotate,
    webhook_endpoint_update,
    webhook_target_check,
)


def _show_raw_key_once(modeladmin, request, raw: str) -> None:
    modeladmin.message_user(
        request, f"API key (copy it now, it is not shown again): {raw}", messages.SUCCESS, fail_silently=True
    )


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Only platform staff create or delete tenants; a tenant's owner edits its settings."""

    tenant_field = "pk"
    change_roles = ACCOUNT_ROLES

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

    add_roles = ACCOUNT_ROLES

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
        return self.role_allows(request, ACCOUNT_ROLES)

    def save_model(self, request, obj, form, change):
        issued = api_key_create(tenant=obj.tenant, name=obj.name)
        adopt_saved(obj, issued.api_key)
        _show_raw_key_once(self, request, issued.raw)

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke_keys(self, request, queryset):
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)  # which records the revocation in the audit log
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)


@admin.register(Limit)
class LimitAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    add_roles = change_roles = delete_roles = ACCOUNT_ROLES

    list_display = ("scope", "member_ref", "max_per_day", "max_total", "window_days", "tenant", "updated_at")
    list_filter = ("scope", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("member_ref",)
    fields = ("tenant", "scope", "member_ref", "max_per_day", "max_total", "window_days")


@admin.register(Operator)
class OperatorAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """A tenant's owner adds existing staff users as operators of that tenant."""

    add_roles = change_roles = delete_roles = ACCOUNT_ROLES

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


# Webhooks ------------------------------------------------------------------------------


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(
        max_length=2000, assume_scheme="https", help_text=WebhookEndpoint._meta.get_field("url").help_text
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("tenant", "url", "description", "event_types", "is_active")

    def clean_url(self):
        url = self.cleaned_data["url"]
        if self.instance.pk is None or url != self.instance.url:
            try:
                webhook_target_check(url)
            except WebhookTargetRefused as exc:
                raise forms.ValidationError(exc.message, code=exc.code) from exc
        return url

    def clean_event_types(self):
        event_types = self.cleaned_data.get("event_types") or []
        if not isinstance(event_types, list) or not all(isinstance(t, str) and t.strip() for t in event_types):
            raise forms.ValidationError('A JSON list of event type names, e.g. ["incentive.generated"].')
        return event_types


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Endpoints are made and changed through the services (the URL is checked against SSRF);
    the secret is shown once, on creation and on rotation."""

    add_roles = change_roles = delete_roles = ACCOUNT_ROLES
    form = WebhookEndpointForm

    list_display = ("url", "description", "is_active", "tenant", "created_at")
    list_filter = ("is_active", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("url", "description")
    readonly_fields = ("id", "created_at", "updated_at")
    actions = ("rotate_secrets", "replay_dead_letters")

    def get_fields(self, request, obj=None):
        fields = ("tenant", "url", "description", "event_types", "is_active")
        return fields if obj is None else ("id", *fields, "created_at", "updated_at")

    def save_model(self, request, obj, form, change):
        values = {name: form.cleaned_data.get(name) for name in ("url", "description", "event_types", "is_active")}
        if change:
            adopt_saved(obj, webhook_endpoint_update(endpoint=WebhookEndpoint.objects.get(pk=obj.pk), **values))
            return
        endpoint = webhook_endpoint_create(tenant=obj.tenant, **values)
        adopt_saved(obj, endpoint)
        self.message_user(
            request,
            f"Signing secret (copy it now, it is not shown again): {endpoint.secret}",
            messages.SUCCESS,
            fail_silently=True,
        )

    def has_rotate_permission(self, request):
        return self.role_allows(request, ACCOUNT_ROLES)

    def has_replay_permission(self, request):
        return self.role_allows(request, OPERATIONS_ROLES)

    @admin.action(description="Rotate the signing secret of selected endpoints", permissions=["rotate"])
    def rotate_secrets(self, request, queryset):
        for endpoint in queryset:
            endpoint = webhook_endpoint_secret_rotate(endpoint=endpoint)
            self.message_user(
                request, f"New secret for {endpoint.url} (shown once): {endpoint.secret}", messages.SUCCESS
            )

    @admin.action(description="Replay dead letters of selected endpoints", permissions=["replay"])
    def replay_dead_letters(self, request, queryset):
        replayed = 0
        for endpoint in queryset:
            count = webhook_dead_letters_replay(endpoint=endpoint)
            if count:
                self.log_operation(request, endpoint, "Dead letters replayed", replayed=count)
            replayed += count
        self.message_user(request, f"Replayed {replayed} dead-lettered delivery(ies).", messages.SUCCESS)


class WebhookAttemptInline(ReadOnlyInline):
    """The delivery log, read-only; visible to whoever may see the delivery."""

    model = WebhookAttempt
    fields = ("at", "status_code", "error", "response_body", "duration_ms")
    readonly_fields = fields
    ordering = ("at", "id")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """Deliveries are written by the outbox relay and the drain, never by hand; dead letters
    can be replayed."""

    list_display = (
        "event_type",
        "event_id",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
        "tenant",
    )
    list_filter = ("status", ("endpoint", admin.RelatedOnlyFieldListFilter), "event_type", "tenant")
    list_select_related = ("endpoint", "tenant")
    search_fields = ("event_id", "event_type")
    ordering = ("-created_at",)
    inlines = (WebhookAttemptInline,)
    actions = ("replay",)
    fields = (
        "id",
        "tenant",
        "endpoint",
        "event_id",
        "event_type",
        "position",
        "status",
        "attempts",
        "replays",
        "next_attempt_at",
        "first_attempt_at",
        "last_attempt_at",
        "last_status_code",
        "last_error",
        "delivered_at",
        "dead_lettered_at",
        "created_at",
        "payload",
    )
    readonly_fields = fields

    def has_replay_permission(self, request):
        return self.role_allows(request, OPERATIONS_ROLES)

    @admin.action(description="Replay selected dead letters", permissions=["replay"])
    def replay(self, request, queryset):
        dead = list(queryset.filter(status=WebhookDelivery.Status.DEAD_LETTERED))
        replayed = webhook_deliveries_replay(deliveries=queryset)
        for delivery in dead:
            status = (WebhookDelivery.Status.DEAD_LETTERED, WebhookDelivery.Status.PENDING)
            self.log_operation(request, delivery, "Dead letter replayed", changes={"status": status})
        skipped = queryset.count() - replayed
        note = f" ({skipped} not dead-lettered, left alone)" if skipped else ""
        self.message_user(request, f"Replayed {replayed} delivery(ies){note}.", messages.SUCCESS)
