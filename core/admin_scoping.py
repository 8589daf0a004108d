"""Tenant scoping for the back office: platform staff (superusers) see every tenant, an
operator (a staff user with an operator row) sees and changes only their own tenant's rows.

Operators are recognised by duck typing (`user.operator.role`, `operator_tenant(user)`), so
core imports no app.
"""

from django.core.exceptions import FieldDoesNotExist
from django.http import Http404

from core.api.principals import operator_tenant
from core.audit.records import audit_action
from core.roles import ALL_ROLES


def is_platform_staff(user) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_superuser", False))


def operator_role(user) -> str | None:
    """The role of a staff user who operates a tenant, or None."""
    if not (getattr(user, "is_active", False) and getattr(user, "is_staff", False)):
        return None
    if operator_tenant(user) is None:
        return None
    return user.operator.role


def adopt_saved(obj, saved) -> None:
    """Copy a row a service created onto the admin's unsaved instance, so that the admin's
    log entry, message and redirect point at the row that exists."""
    for field in saved._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


def tenant_scoped_queryset(model, tenant, queryset=None):
    """`model`'s rows that belong to `tenant`, or None when the model has no tenant."""
    queryset = model._default_manager.all() if queryset is None else queryset
    if isinstance(tenant, model):
        return queryset.filter(pk=tenant.pk)
    try:
        model._meta.get_field("tenant")
    except FieldDoesNotExist:
        return None
    return queryset.filter(tenant=tenant.pk)


class TenantScopedAdminMixin:
    """Put before `admin.ModelAdmin`. Scopes querysets, FK choices and filters to the
    operator's tenant, answers 404 for other tenants' objects and grants by operator role.

    `tenant_field` is the lookup from the model to its tenant ("pk" on the tenant model).
    The `*_roles` tuples say which operator roles may do what (see core/roles.py); superusers
    may do anything a subclass does not forbid outright. A role without a writing permission
    sees the pages read-only: no add button, no save, no delete, no actions that write.
    """

    tenant_field = "tenant"
    view_roles: tuple[str, ...] = ALL_ROLES
    add_roles: tuple[str, ...] = ()
    change_roles: tuple[str, ...] = ()
    delete_roles: tuple[str, ...] = ()

    # Who ---------------------------------------------------------------------------------

    def role_allows(self, request, roles) -> bool:
        if is_platform_staff(request.user):
            return True
        role = operator_role(request.user)
        return role is not None and role in roles

    def request_tenant(self, request):
        """The operator's tenant; None for platform staff, who are not scoped."""
        if is_platform_staff(request.user):
            return None
        return operator_tenant(request.user)

    def tenant_pk_of(self, obj):
        *path, last = self.tenant_field.split("__")
        for part in path:
            obj = getattr(obj, part)
        if last == "pk":
            return obj.pk
        return getattr(obj, obj._meta.get_field(last).attname)

    def in_scope(self, request, obj) -> bool:
        if obj is None or is_platform_staff(request.user):
            return True
        tenant = operator_tenant(request.user)
        return tenant is not None and self.tenant_pk_of(obj) == tenant.pk

    # Permissions (operators need no Django model permissions) ---------------------------

    def has_module_permission(self, request):
        return self.role_allows(request, (*self.view_roles, *self.change_roles))

    def has_view_permission(self, request, obj=None):
        return self.role_allows(request, (*self.view_roles, *self.change_roles)) and self.in_scope(request, obj)

    def has_add_permission(self, request):
        return self.role_allows(request, self.add_roles)

    def has_change_permission(self, request, obj=None):
        return self.role_allows(request, self.change_roles) and self.in_scope(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self.role_allows(request, self.delete_roles) and self.in_scope(request, obj)

    # Actions that are not a form's save ----------------------------------------------------

    def log_operation(self, request, obj, message: str, *, changes: dict | None = None, **detail) -> None:
        """An operator's action on `obj` (a retry, a replay, an adjustment): in the object's
        history and in the audit log, with what it changed (`{"status": (before, after)}`)."""
        self.log_change(request, obj, message)
        audit_action(obj=obj, action=message, changes=changes, **detail)

    # Rows --------------------------------------------------------------------------------

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if is_platform_staff(request.user):
            return queryset
        tenant = operator_tenant(request.user)
        if tenant is None:
            return queryset.none()
        return queryset.filter(**{self.tenant_field: tenant.pk})

    def get_object(self, request, object_id, from_field=None):
        # The default answers a missing object with a redirect and a message naming the id;
        # another tenant's object must look exactly like one that does not exist.
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} matches the given query.")
        return obj

    def get_search_results(self, request, queryset, search_term):
        # PostgreSQL refuses NUL in a query (a server error); no stored value contains one.
        return super().get_search_results(request, queryset, search_term.replace("\x00", ""))

    # Forms -------------------------------------------------------------------------------

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        tenant = self.request_tenant(request)
        if tenant is not None and "queryset" not in kwargs:
            base = self.get_field_queryset(kwargs.get("using"), db_field, request)
            scoped = tenant_scoped_queryset(db_field.related_model, tenant, base)
            if scoped is not None:
                kwargs["queryset"] = scoped
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        tenant = self.request_tenant(request)
        if tenant is not None and "queryset" not in kwargs:
            base = self.get_field_queryset(kwargs.get("using"), db_field, request)
            scoped = tenant_scoped_queryset(db_field.related_model, tenant, base)
            if scoped is not None:
                kwargs["queryset"] = scoped
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        field = form.base_fields.get(self.tenant_field)
        if field is None:
            return form
        tenant = self.request_tenant(request)
        if tenant is not None:
            field.initial = tenant.pk
        # Disabled rather than left out, so that the form still validates the unique
        # constraints that include the tenant. A disabled field ignores posted data.
        if obj is not None or tenant is not None:
            field.disabled = True
        return form

    def save_form(self, request, form, change):
        obj = super().save_form(request, form, change)
        tenant = self.request_tenant(request)
        if not change and tenant is not None and self.tenant_field != "pk" and "__" not in self.tenant_field:
            setattr(obj, self.tenant_field, tenant)
        return obj

    # Lists -------------------------------------------------------------------------------

    def get_list_display(self, request):
        columns = super().get_list_display(request)
        if is_platform_staff(request.user):
            return columns
        return [c for c in columns if c != self.tenant_field]

    def get_list_filter(self, request):
        # The tenant filter would list every tenant's name.
        filters = super().get_list_filter(request)
        if is_platform_staff(request.user):
            return filters
        return [f for f in filters if (f[0] if isinstance(f, (list, tuple)) else f) != self.tenant_field]
