import uuid
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV
from import_export.forms import ConfirmImportForm, ImportForm

from core.admin_scoping import TenantScopedAdminMixin, adopt_saved, is_platform_staff
from core.admin_services import ReadOnlyAdminMixin, ServiceForm, ServiceFormAdminMixin, TenantExportMixin
from core.exceptions import DomainError
from core.roles import OPERATIONS_ROLES, PROGRAM_ROLES
from rewards import categories, credit, selectors, services
from rewards.exceptions import IdempotencyKeyConflict
from rewards.ledger import MAX_POINTS
from rewards.models import (
    Account,
    CreditPackage,
    CreditPurchase,
    EarnedLot,
    InboundEvent,
    Member,
    Multiplier,
    OutboxEvent,
    SpendCategory,
    Transfer,
)
from rewards.resources import MemberResource
from tenants.models import Tenant

MEMBER_EDITABLE = ("status", "locale", "attributes")


class PointsAdjustForm(forms.Form):
    points = forms.IntegerField(
        min_value=-MAX_POINTS, max_value=MAX_POINTS, help_text="Positive credits the member, negative debits."
    )
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))
    # Made when the form is rendered and posted back unchanged: a second submit of the same
    # form replays the first adjustment instead of posting another.
    idempotency_key = forms.UUIDField(
        widget=forms.HiddenInput, error_messages={"invalid": "This form is damaged; reload the page and try again."}
    )

    def clean_points(self):
        points = self.cleaned_data["points"]
        if points == 0:
            raise forms.ValidationError("Enter a number of points other than zero.")
        return points


class MemberImportForm(ImportForm):
    """For platform staff, who belong to no tenant: the file's members go into the one chosen."""

    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.order_by("name"), help_text="The tenant whose members the file holds."
    )


class MemberConfirmImportForm(ConfirmImportForm):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.all(), widget=forms.HiddenInput)


@admin.register(Member)
class MemberAdmin(TenantExportMixin, ImportExportMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    export_file_prefix = "members"
    add_roles = change_roles = OPERATIONS_ROLES

    list_display = ("external_ref", "tenant", "status", "balance", "created_at")
    list_filter = ("status", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("external_ref",)
    ordering = ("-created_at", "-pk")

    # CSV import and export: one tenant's members (see rewards/resources.py).
    resource_classes = [MemberResource]
    import_formats = [CSV]
    export_formats = [CSV]
    import_template_name = "admin/rewards/member/import.html"

    def get_queryset(self, request):
        points = Account.objects.filter(member=OuterRef("pk"), kind=Account.Kind.MEMBER).values("balance")[:1]
        return super().get_queryset(request).annotate(points_balance=Coalesce(Subquery(points), Value(0)))

    @admin.display(description="balance", ordering="points_balance")
    def balance(self, obj):
        return getattr(obj, "points_balance", None)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "external_ref", *MEMBER_EDITABLE)
        return ("id", "tenant", "external_ref", "balance", *MEMBER_EDITABLE, "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # The memberRef is how the tenant's systems address the member: fixed once created.
        return () if obj is None else ("id", "external_ref", "balance", "created_at", "updated_at")

    def has_delete_permission(self, request, obj=None):
        # A member with a ledger cannot go; closing it (status) is the way out.
        return False

    # Import and export -------------------------------------------------------------------

    def has_import_permission(self, request):
        # Imports create and change members: support and above (viewers only read).
        return self.role_allows(request, OPERATIONS_ROLES)

    def has_export_permission(self, request):
        # An export is one tenant's: platform staff, who see every tenant, are refused.
        return self.request_tenant(request) is not None and self.has_view_permission(request)

    def get_import_form_class(self, request):
        return MemberImportForm if is_platform_staff(request.user) else super().get_import_form_class(request)

    def get_confirm_form_class(self, request):
        return MemberConfirmImportForm if is_platform_staff(request.user) else super().get_confirm_form_class(request)

    def get_confirm_form_initial(self, request, import_form):
        initial = super().get_confirm_form_initial(request, import_form)
        if import_form is not None and "tenant" in import_form.fields:
            initial["tenant"] = import_form.cleaned_data["tenant"].pk
        return initial

    def import_tenant(self, request, form=None):
        """The operator's tenant, or the one platform staff chose on the form (None until then)."""
        if not is_platform_staff(request.user):
            return self.request_tenant(request)
        return (getattr(form, "cleaned_data", None) or {}).get("tenant")

    def get_import_resource_kwargs(self, request, **kwargs):
        return {"tenant": self.import_tenant(request, kwargs.get("form"))}

    def get_import_data_kwargs(self, **kwargs):
        # All or nothing: a row that fails when confirmed (the member it updates changed since
        # the preview) undoes the rows before it too.
        return {**super().get_import_data_kwargs(**kwargs), "rollback_on_validation_errors": True}

    def process_result(self, result, request):
        if result.has_errors() or result.has_validation_errors():
            problems = [
                f"row {row.number}, {column}: {' '.join(errors)}"
                for row in result.invalid_rows[:10]
                for column, errors in row.error_dict.items()
            ] + [f"row {row.number}: {row.errors[0].error}" for row in result.error_rows[:10]]
            problems += [str(error.error) for error in result.base_errors[:3]]
            self.message_user(
                request, f"Nothing was imported; since the preview: {'; '.join(problems)}", messages.ERROR
            )
            return HttpResponseRedirect(reverse(f"{self.admin_site.name}:rewards_member_import"))
        return super().process_result(result, request)

    def has_adjust_permission(self, request, obj=None) -> bool:
        return self.role_allows(request, OPERATIONS_ROLES) and self.in_scope(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            services.member_update(member=obj, **{name: getattr(obj, name) for name in MEMBER_EDITABLE})
            return
        member = services.member_create(
            tenant=obj.tenant,
            external_ref=obj.external_ref,
            locale=obj.locale,
            attributes=obj.attributes,
            status=obj.status,
        )
        adopt_saved(obj, member)

    def get_urls(self):
        info = (self.opts.app_label, self.opts.model_name)
        custom = [
            path(
                "<path:object_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="{}_{}_adjust".format(*info),
            )
        ]
        # Before the defaults, whose "<object_id>/" catch-all would swallow this path.
        return custom + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_adjust": self.has_adjust_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def adjust_view(self, request, object_id):
        member = self.get_object(request, unquote(object_id))
        if not self.has_adjust_permission(request, member):
            raise PermissionDenied
        if request.method != "POST":
            form = PointsAdjustForm(initial={"idempotency_key": uuid.uuid4()})
        else:
            form = PointsAdjustForm(request.POST)
            if form.is_valid():
                try:
                    result = self._post_adjustment(request, member, form.cleaned_data)
                except IdempotencyKeyConflict:
                    form = self._with_new_key(form)
                    form.add_error(
                        None,
                        "This form was already posted with other values. Check the member's balance; "
                        "submitting again posts a new adjustment.",
                    )
                except DomainError as exc:
                    form.add_error("points" if exc.field in ("points", "amount") else None, exc.message)
                else:
                    balance = selectors.member_balance(member=member)
                    if result.created:
                        points = form.cleaned_data["points"]
                        self._record_adjustment(request, member, result.transfer, points, form.cleaned_data["reason"])
                        self.message_user(request, f"Adjusted {points:+d} points; balance now {balance}.")
                    else:
                        message = f"This adjustment was already posted; balance is {balance}."
                        self.message_user(request, message, messages.WARNING)
                    change_url = f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change"
                    return HttpResponseRedirect(reverse(change_url, args=[member.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust points: {member}",
            "opts": self.opts,
            "original": member,
            "form": form,
            "balance": selectors.member_balance(member=member),
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/rewards/member/adjust.html", context)

    def _post_adjustment(self, request, member, data):
        return services.points_adjust(
            tenant=member.tenant,
            member=member,
            points=data["points"],
            reason=data["reason"],
            actor=f"operator:{request.user.get_username()}",
            idempotency_key=str(data["idempotency_key"]),
        )

    def _record_adjustment(self, request, member, transfer, points: int, reason: str) -> None:
        after = transfer.credit_balance_after if points > 0 else transfer.debit_balance_after
        self.log_operation(
            request,
            member,
            "Points adjusted",
            changes={"balance": (after - points, after)},
            points=points,
            reason=reason,
            transfer=str(transfer.pk),
        )

    def _with_new_key(self, form):
        """The same values under a new key, so that the next submit is a new adjustment."""
        data = form.data.copy()
        data["idempotency_key"] = str(uuid.uuid4())
        refreshed = PointsAdjustForm(data)
        refreshed.is_valid()
        return refreshed


class MemberAccountFilter(admin.SimpleListFilter):
    title = "owner"
    parameter_name = "owner"

    def lookups(self, request, model_admin):
        return (("member", "Members"), ("system", "System"))

    def queryset(self, request, queryset):
        if self.value() == "member":
            return queryset.filter(member__isnull=False)
        if self.value() == "system":
            return queryset.filter(member__isnull=True)
        return queryset


@admin.register(Account)
class AccountAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Read-only: balances move only through ledger transfers."""

    list_display = ("id", "kind", "member", "balance", "tenant", "created_at")
    list_filter = ("kind", MemberAccountFilter, "tenant")
    list_select_related = ("member", "tenant")
    search_fields = ("member__external_ref__exact",)
    search_help_text = "Exact memberRef."
    ordering = ("tenant", "kind", "pk")
    fields = ("tenant", "kind", "member", "current_balance", "created_at")
    readonly_fields = fields

    @admin.display(description="current balance")
    def current_balance(self, obj):
        # System accounts keep no balance column; theirs is derived from the transfers.
        return selectors.account_balance(account=obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _account_label(account: Account) -> str:
    if account.member_id is None:
        return f"system: {account.get_kind_display()}"
    return account.member.external_ref


@admin.register(Transfer)
class TransferAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """The ledger is immutable: nobody adds, changes or deletes a transfer here."""

    list_display = ("created_at", "kind", "amount", "debit", "credit", "reason", "tenant")
    list_filter = ("kind", "created_at", "tenant")
    list_select_related = ("tenant", "debit_account__member", "credit_account__member")
    search_fields = (
        "idempotency_key__exact",
        "reference_id__exact",
        "debit_account__member__external_ref__exact",
        "credit_account__member__external_ref__exact",
    )
    search_help_text = "Exact idempotency key, reference id or memberRef."
    ordering = ("-created_at", "-id")
    # Counting the whole ledger on every page is the slow part of a large changelist.
    show_full_result_count = False
    fields = (
        "id",
        "tenant",
        "created_at",
        "kind",
        "amount",
        "debit",
        "credit",
        "debit_balance_after",
        "credit_balance_after",
        "reason",
        "reference_type",
        "reference_id",
        "idempotency_key",
        "explanation",
    )
    readonly_fields = fields

    @admin.display(description="debit (from)", ordering="debit_account")
    def debit(self, obj):
        return _account_label(obj.debit_account)

    @admin.display(description="credit (to)", ordering="credit_account")
    def credit(self, obj):
        return _account_label(obj.credit_account)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MccCodesField(forms.CharField):
    """MCCs as the operator types them: "5812, 5814"."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [part for part in (super().to_python(value) or "").replace(",", " ").split() if part]


class SpendCategoryForm(forms.ModelForm):
    mcc_codes = MccCodesField(required=False, label="MCCs", help_text="Four-digit MCCs, separated by commas.")

    class Meta:
        model = SpendCategory
        fields = ("tenant", "code", "name", "parent", "mcc_codes")

    def clean(self):
        data = super().clean()
        tenant = data.get("tenant") or getattr(self.instance, "tenant", None)
        if tenant is not None and not self.has_error("parent") and not self.has_error("mcc_codes"):
            # The service checks again under its lock; this turns a refusal into a form error.
            data["mcc_codes"] = categories.category_validate(
                tenant=tenant,
                category=self.instance if self.instance.pk else None,
                parent=data.get("parent"),
                mcc_codes=data.get("mcc_codes", []),
            )
        return data


@admin.register(SpendCategory)
class SpendCategoryAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Writes go through the services: they announce the change and refresh the cached configuration."""

    add_roles = change_roles = PROGRAM_ROLES
    form = SpendCategoryForm

    list_display = ("code", "name", "parent", "tenant", "updated_at")
    list_filter = ("tenant",)
    list_select_related = ("parent", "tenant")
    search_fields = ("code", "name")
    ordering = ("tenant", "code")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "code", "name", "parent", "mcc_codes")
        return ("tenant", "code", "name", "parent", "mcc_codes", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # The code is how the API and inbound events address the category: fixed once created.
        return () if obj is None else ("code", "created_at", "updated_at")

    def has_delete_permission(self, request, obj=None):
        # Earning explanations name categories; nothing deletes one.
        return False

    def save_model(self, request, obj, form, change):
        if change:
            saved = categories.category_update(
                category=obj, **{name: getattr(obj, name) for name in categories.CATEGORY_FIELDS}
            )
        else:
            saved = categories.category_create(
                tenant=obj.tenant, code=obj.code, name=obj.name, parent=obj.parent, mcc_codes=obj.mcc_codes
            )
        adopt_saved(obj, saved)


class MultiplierForm(forms.ModelForm):
    class Meta:
        model = Multiplier
        fields = ("category", *categories.MULTIPLIER_FIELDS)

    def clean(self):
        data = super().clean()
        names = ("factor", "valid_from", "valid_to", "cap_points", "cap_period")
        if data.get("factor") is not None and not any(self.has_error(name) for name in names):
            categories.multiplier_validate(**{name: data.get(name) for name in names})
        return data


@admin.register(Multiplier)
class MultiplierAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Writes go through the services: a change makes a new version, is announced, and
    refreshes the cached configuration."""

    add_roles = change_roles = delete_roles = PROGRAM_ROLES
    form = MultiplierForm

    list_display = ("category", "factor", "tier", "valid_from", "valid_to", "version", "tenant")
    list_filter = ("tenant",)
    list_select_related = ("category", "tenant")
    search_fields = ("category__code",)
    ordering = ("tenant", "category__code", "pk")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("category", *categories.MULTIPLIER_FIELDS)
        return ("category", *categories.MULTIPLIER_FIELDS, "version", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("category", "version", "created_at", "updated_at")

    def save_model(self, request, obj, form, change):
        values = {name: getattr(obj, name) for name in categories.MULTIPLIER_FIELDS}
        if change:
            saved = categories.multiplier_update(multiplier=obj, **values)
        else:
            saved = categories.multiplier_create(tenant=obj.category.tenant, category=obj.category, **values)
        adopt_saved(obj, saved)

    def delete_model(self, request, obj):
        categories.multiplier_delete(multiplier=obj)

    def delete_queryset(self, request, queryset):
        for multiplier in queryset:
            categories.multiplier_delete(multiplier=multiplier)


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ("event_id", "type", "member_ref", "status", "points", "amount", "occurred_at", "tenant")
    list_filter = ("type", "status", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("event_id__exact", "member_ref__exact")
    search_help_text = "Exact eventId or memberRef."
    date_hierarchy = "occurred_at"
    ordering = ("-received_at", "-pk")
    readonly_fields = [f.name for f in InboundEvent._meta.fields]


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ("position", "type", "member_ref", "occurred_at", "published_at", "correlation_id", "tenant")
    list_filter = ("type", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("member_ref__exact", "correlation_id__exact")
    search_help_text = "Exact memberRef or correlation id."
    ordering = ("-position",)
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]


@admin.register(EarnedLot)
class EarnedLotAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ("id", "member", "points", "remaining", "pending_until", "expires_at", "created_at", "tenant")
    list_filter = ("tenant",)
    list_select_related = ("member", "tenant")
    search_fields = ("member__external_ref__exact",)
    search_help_text = "Exact memberRef."
    ordering = ("-created_at",)
    readonly_fields = [f.name for f in EarnedLot._meta.fields]


# Credit packages and purchases ---------------------------------------------------------


class CreditPackageForm(ServiceForm):
    class Meta:
        model = CreditPackage
        fields = ("tenant", "code", *credit.PACKAGE_FIELDS)
        help_texts = {"currency": "ISO 4217; the tenant's currency when left empty."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["currency"].required = False


@admin.register(CreditPackage)
class CreditPackageAdmin(ServiceFormAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """Packages of points for sale. Writes go through the services; purchases keep their own
    snapshot of price and points, so a package is edited, or retired (inactive), never deleted."""

    add_roles = change_roles = PROGRAM_ROLES
    form = CreditPackageForm

    list_display = ("name", "code", "price", "currency", "reward_points", "is_active", "sort_order", "tenant")
    list_filter = ("is_active", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("code", "name")
    ordering = ("tenant", "sort_order", "name")

    def get_fields(self, request, obj=None):
        fields = ("tenant", "code", *credit.PACKAGE_FIELDS)
        return fields if obj is None else (*fields, "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # The code is how operators and demo data address a package: fixed once created.
        return () if obj is None else ("code", "created_at", "updated_at")

    def service_write(self, request, obj, form):
        values = {name: form.cleaned_data[name] for name in credit.PACKAGE_FIELDS}
        if obj is not None:
            values["currency"] = values["currency"] or obj.currency
            return credit.credit_package_update(package=obj, **values)
        return credit.credit_package_create(
            tenant=self.form_tenant(request, obj, form), code=form.cleaned_data["code"], **values
        )


@admin.register(CreditPurchase)
class CreditPurchaseAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """Purchases are records: read-only. "Reconcile now" asks the gateway about pending ones."""

    list_display = (
        "created_at",
        "member",
        "package",
        "amount_paid",
        "currency",
        "points_awarded",
        "status",
        "decline_code",
        "tenant",
    )
    list_filter = ("status", "created_at", "tenant")
    list_select_related = ("member", "package", "tenant")
    search_fields = ("id__exact", "member__external_ref__exact", "gateway_reference__exact")
    search_help_text = "Exact purchase id, memberRef or gateway reference."
    ordering = ("-created_at", "-id")
    actions = ("reconcile_now",)
    readonly_fields = [f.name for f in CreditPurchase._meta.fields]

    def has_reconcile_permission(self, request) -> bool:
        return self.role_allows(request, OPERATIONS_ROLES)

    @admin.action(description="Reconcile selected pending purchases now", permissions=["reconcile"])
    def reconcile_now(self, request, queryset):
        ids = list(queryset.filter(status=CreditPurchase.Status.PENDING).values_list("pk", flat=True))
        if not ids:
            self.message_user(request, "None of the selected purchases is pending.", messages.WARNING)
            return
        outcomes = credit.credit_purchases_reconcile(older_than=timedelta(0), purchase_ids=ids)
        summary = ", ".join(f"{count} {outcome.replace('_', ' ')}" for outcome, count in sorted(outcomes.items()))
        self.message_user(request, f"Reconciled {len(ids)} pending purchase(s): {summary}.", messages.SUCCESS)
