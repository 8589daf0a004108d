"""Admin forms that write through the services, and read-only admins for records.

A `ServiceForm` calls its service as the last step of validation, so that a refusal (a
DomainError or ValidationError naming a field) becomes an error on that field and nothing is
written. The admin's add and change views run in one transaction, and the admins using it
have no inline formsets that could still fail afterwards, so a form that validates is a row
written; `save_model` only adopts it.
"""

import functools

from django import forms
from django.contrib import admin
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction

from core.admin_scoping import adopt_saved
from core.exceptions import DomainError


class ServiceForm(forms.ModelForm):
    # Set per request by ServiceFormAdminMixin.get_form: (form) -> the saved object.
    service_write = None
    # A service's name for a field (exact, else the part before the first dot) -> the form's.
    field_aliases: dict[str, str] = {}
    saved = None

    def _post_clean(self):
        super()._post_clean()
        if self.errors or self.service_write is None:
            return
        try:
            with transaction.atomic():
                self.saved = self.service_write(self)
        except DomainError as exc:
            self._add_service_error(exc.field or "", [exc.message])
        except ValidationError as exc:
            if not hasattr(exc, "error_dict"):
                self.add_error(None, exc)
                return
            for name, errors in exc.error_dict.items():
                self._add_service_error(name, [message for error in errors for message in error.messages])

    def _add_service_error(self, name: str, messages: list[str]) -> None:
        if name in self.field_aliases:
            field, rest = self.field_aliases[name], ""
        else:
            head, _, rest = name.partition(".")
            field = self.field_aliases.get(head, head)
        if field in self.fields and not self.fields[field].disabled:
            # "reward.points: Must be ..." says where inside a JSON field.
            self.add_error(field, [f"{rest}: {message}" if rest else message for message in messages])
        else:
            named = name and name != NON_FIELD_ERRORS
            self.add_error(None, [f"{name}: {message}" if named else message for message in messages])


class ServiceFormAdminMixin:
    """Put before TenantScopedAdminMixin. Subclasses implement `service_write(request, obj, form)`."""

    def get_form(self, request, obj=None, change=False, **kwargs):
        # modelform_factory makes a new class on every call, so this binds one request only.
        # (A subclass would rebuild base_fields and lose what TenantScopedAdminMixin set.)
        form = super().get_form(request, obj, change=change, **kwargs)
        form.service_write = staticmethod(functools.partial(self.service_write, request, obj))
        return form

    def form_tenant(self, request, obj, form):
        """The tenant the write is for: the object's, the operator's, or (platform staff
        adding) the one chosen in the form."""
        if obj is not None:
            return obj.tenant
        return self.request_tenant(request) or form.cleaned_data["tenant"]

    def service_write(self, request, obj, form):
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        adopt_saved(obj, form.saved)

    def has_delete_permission(self, request, obj=None):
        # Nothing written through these admins has a delete service: records stay.
        return False


class ReadOnlyAdminMixin:
    """Records of what happened: nobody adds, edits or deletes them here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    """Records shown on the object they belong to, read-only, to whoever may see that object
    (its own admin has already scoped and authorised it)."""

    extra = 0
    can_delete = False
    show_change_link = False

    def has_view_permission(self, request, obj=None):
        return True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TenantExportMixin:
    """CSV export (django-import-export) of the operator's own tenant: the resource is given
    the tenant, and the file is named `<export_file_prefix>-<tenant slug>-<date>`. Put it
    before ImportExportMixin, with TenantScopedAdminMixin (for `request_tenant`)."""

    export_file_prefix = ""

    def get_export_resource_kwargs(self, request, **kwargs):
        return {"tenant": self.request_tenant(request)}

    def get_export_filename(self, request, queryset, file_format):
        tenant = self.request_tenant(request)
        return (
            super()
            .get_export_filename(request, queryset, file_format)
            .replace(f"{self.opts.object_name}-", f"{self.export_file_prefix}-{tenant.slug if tenant else 'all'}-", 1)
        )
