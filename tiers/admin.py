"""The VIP tiers back office: the tiers (a name per locale, benefits), the tenant's tier
policy, and read-only views of each member's current tier and tier history.

Every write goes through `tiers.services`. As in campaigns/admin.py, the service is called as
the form's last validation step, so that its refusal shows on the field it names: a
ValidationError at `benefits.bonus_points` lands under "Bonus points". Tiers and the policy
are the program: owners and managers change them; support and viewers read.
"""

from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from core.admin_scoping import TenantScopedAdminMixin
from core.admin_services import ReadOnlyAdminMixin, ServiceForm, ServiceFormAdminMixin
from core.roles import PROGRAM_ROLES
from tenants.models import Tenant, locale_validator
from tiers import services
from tiers.models import Tier, TierAssignment, TierHistory, TierPolicy
from tiers.qualification import member_tier_summary, tier_name

# Always offered, whatever the tier has: the platform's launch markets.
OFFERED_LOCALES = ("en", "ar", "he")
# Scripts written right to left, by primary language subtag.
RTL_LANGUAGES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "ku", "ps", "sd", "ug", "ur", "yi"})
HISTORY_SHOWN = 50


def locale_is_rtl(locale: str) -> bool:
    return locale.split("-")[0].lower() in RTL_LANGUAGES


def _change_url(admin_site, obj) -> str:
    opts = obj._meta
    return reverse(f"{admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


# Writes through the services -------------------------------------------------------------


# Names per locale ------------------------------------------------------------------------


class LocaleNamesWidget(forms.Widget):
    """One text input per locale, side by side, right to left for Arabic, Hebrew and other
    RTL scripts, and a row to add a locale. Posts `names.<locale>`, `names:new_locale` and
    `names:new_name`."""

    template_name = "admin/tiers/widgets/locale_names.html"

    def __init__(self, attrs=None, locales=()):
        super().__init__(attrs)
        self.locales = list(locales)

    def format_value(self, value):
        return value

    def id_for_label(self, id_):
        # The label points at the first input (English).
        return f"{id_}_{self.locales[0]}" if id_ and self.locales else id_

    def value_from_datadict(self, data, files, name):
        prefix = f"{name}."
        posted = {key[len(prefix) :]: data.get(key, "") for key in data if key.startswith(prefix)}
        names = {locale: posted.pop(locale, "") for locale in self.locales}
        names.update(posted)  # a locale added on a form that is shown again
        return {
            "names": names,
            "new_locale": (data.get(f"{name}:new_locale") or "").strip(),
            "new_name": data.get(f"{name}:new_name") or "",
        }

    def value_omitted_from_data(self, data, files, name):
        return not any(key.startswith(f"{name}.") or key.startswith(f"{name}:") for key in data)

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        if isinstance(value, dict) and "names" in value and isinstance(value["names"], dict):
            names, new_locale, new_name = value["names"], value.get("new_locale", ""), value.get("new_name", "")
        else:
            names, new_locale, new_name = (value if isinstance(value, dict) else {}), "", ""
        locales = [*self.locales, *(locale for locale in names if locale not in self.locales)]
        base_id = attrs.get("id") or f"id_{name}"
        context["widget"]["locales"] = [
            {
                "locale": locale,
                "input_name": f"{name}.{locale}",
                "id": f"{base_id}_{locale}",
                "value": names.get(locale) or "",
                "dir": "rtl" if locale_is_rtl(locale) else "ltr",
            }
            for locale in locales
        ]
        context["widget"]["new"] = {
            "locale_name": f"{name}:new_locale",
            "locale_id": f"{base_id}_new_locale",
            "locale_value": new_locale,
            "name_name": f"{name}:new_name",
            "name_id": f"{base_id}_new_name",
            "name_value": new_name,
        }
        return context


class LocaleNamesField(forms.Field):
    """The names as the service takes them, `{locale: name}`; a blank input is no name in
    that locale. The service checks the rest (tags, lengths, English or the default locale)."""

    widget = LocaleNamesWidget

    def to_python(self, value):
        if not isinstance(value, dict) or "names" not in value:
            return value or {}
        names = {locale: text.strip() for locale, text in value["names"].items() if (text or "").strip()}
        new_locale, new_name = value.get("new_locale", ""), (value.get("new_name") or "").strip()
        if new_locale or new_name:
            if not new_locale or not new_name:
                raise ValidationError("To add a locale, give both its code and the name in it.", code="incomplete")
            try:
                locale_validator(new_locale)
            except ValidationError:
                raise ValidationError(
                    f"{new_locale!r} is not a BCP 47 language tag (e.g. fr, pt-BR).", code="invalid_locale"
                ) from None
            if new_locale in names:
                raise ValidationError(f"The {new_locale} name is already above.", code="duplicate_locale")
            names[new_locale] = new_name
        return names

    def bound_data(self, data, initial):
        # Shown again as posted (blank inputs and the half-filled add row included).
        return data


# Tiers -----------------------------------------------------------------------------------


class PerksField(forms.CharField):
    """Custom perks, one per line."""

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [line.strip() for line in (super().to_python(value) or "").splitlines() if line.strip()]


class TierForm(ServiceForm):
    names = LocaleNamesField(
        label="Name",
        error_messages={"required": "Give the tier's name in English or in the tenant's default locale."},
        help_text="Leave a locale empty to have no name in it; members see English or the default locale instead.",
    )
    # Bounds are the service's (its JSON Schema): its refusal is shown under the field.
    bonus_points = forms.IntegerField(
        label="Bonus points",
        required=False,
        initial=0,
        widget=forms.NumberInput(attrs={"min": 0}),
        help_text="Extra points on every earning purchase of a member in this tier.",
    )
    custom_perks = PerksField(
        label="Custom perks",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text="One per line, e.g. Birthday gift.",
    )

    field_aliases = {
        "benefits.bonus_points": "bonus_points",
        "benefits.custom_perks": "custom_perks",
        "benefits": "custom_perks",
    }

    class Meta:
        model = Tier
        fields = (
            "tenant",
            "tier_id",
            "names",
            "min_points",
            "discount_percentage",
            "free_shipping",
            "exclusive_access",
            "earn_multiplier",
            "rank",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        benefits = self.instance.benefits or {}
        self.initial.setdefault("bonus_points", benefits.get("bonus_points", 0))
        self.initial.setdefault("custom_perks", list(benefits.get("custom_perks", [])))
        if "names" in self.fields:
            self.fields["names"].widget.locales = self._offered_locales()

    def _offered_locales(self) -> list[str]:
        tenant = self.instance.tenant if self.instance.tenant_id else None
        if tenant is None and "tenant" in self.fields:
            tenant = Tenant.objects.filter(pk=self.fields["tenant"].initial).first()
        offered = [*OFFERED_LOCALES]
        if tenant is not None and tenant.default_locale:
            offered.append(tenant.default_locale)
        offered.extend(self.instance.names or {})
        return list(dict.fromkeys(offered))

    def _get_validation_exclusions(self):
        # The service checks the tierId (its format, and TierAlreadyExists when taken), so
        # that a taken one is an error on the field rather than on the whole form.
        return {*super()._get_validation_exclusions(), "tier_id"}

    def benefits(self) -> dict:
        data = self.cleaned_data
        bonus_points = data.get("bonus_points")
        return {
            "bonus_points": 0 if bonus_points is None else bonus_points,
            "custom_perks": data.get("custom_perks", []),
        }


@admin.register(Tier)
class TierAdmin(ServiceFormAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    add_roles = change_roles = PROGRAM_ROLES
    form = TierForm

    list_display = (
        "tier_id",
        "display_name",
        "min_points",
        "discount_percentage",
        "earn_multiplier",
        "members",
        "version",
        "tenant",
    )
    list_filter = ("tenant",)
    list_select_related = ("tenant",)
    search_fields = ("tier_id",)
    ordering = ("tenant", "min_points", "rank", "tier_id")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("assignments"))

    @admin.display(description="name")
    def display_name(self, obj):
        return tier_name(obj, "en", obj.tenant.default_locale)

    @admin.display(description="members in tier", ordering="member_count")
    def members(self, obj):
        count = getattr(obj, "member_count", None)
        if count is None:
            count = obj.assignments.count()
        link = reverse(f"{self.admin_site.name}:tiers_tierassignment_changelist")
        return format_html('<a href="{}?tier__id__exact={}">{}</a>', link, obj.pk, count)

    # What a reader without the change permission sees instead of the inputs.
    @admin.display(description="names")
    def names_by_locale(self, obj):
        return format_html_join(
            mark_safe("<br>"),
            '<span class="tier-name" dir="{}" lang="{}"><b>{}</b>: {}</span>',
            (("rtl" if locale_is_rtl(locale) else "ltr", locale, locale, name) for locale, name in obj.names.items()),
        )

    @admin.display(description="bonus points")
    def bonus_points(self, obj):
        return (obj.benefits or {}).get("bonus_points", 0)

    @admin.display(description="custom perks")
    def custom_perks(self, obj):
        return format_html_join(
            mark_safe("<br>"), "{}", ((perk,) for perk in (obj.benefits or {}).get("custom_perks", []))
        )

    def get_fieldsets(self, request, obj=None):
        editable = obj is None or self.has_change_permission(request, obj)
        head = ("tenant", "tier_id") if obj is None else ("tenant", "tier_id", "version", "members")
        fieldsets = [
            (None, {"fields": head}),
            # The model's JSON, read-only, would show as {"ar": ...}.
            ("Names", {"fields": ("names" if editable else "names_by_locale",)}),
            (
                "Qualification and earning",
                {"fields": ("min_points", "rank", "earn_multiplier")},
            ),
            (
                "Benefits",
                {
                    "fields": (
                        "discount_percentage",
                        "free_shipping",
                        "exclusive_access",
                        "bonus_points",
                        "custom_perks",
                    )
                },
            ),
        ]
        if obj is not None:
            fieldsets.append(("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        # The tierId is how the API, assignments and events name the tier: fixed once created.
        return () if obj is None else ("tier_id", "version", "members", "created_at", "updated_at")

    def service_write(self, request, obj, form):
        data = form.cleaned_data
        if obj is None:
            return services.tier_create(
                tenant=self.form_tenant(request, obj, form),
                tier_id=data["tier_id"],
                names=data["names"],
                benefits=form.benefits(),
                **{name: data[name] for name in services.TIER_FIELDS if name not in ("names", "benefits")},
            )
        # Only what the operator changed, so that `vip_tier.updated` names just that.
        changed = set(form.changed_data)
        fields = {name: data[name] for name in services.TIER_FIELDS if name in changed}
        if changed & {"bonus_points", "custom_perks"}:
            fields["benefits"] = form.benefits()
        tier, form.updated_fields = services.tier_update(tenant=obj.tenant, tier=obj, **fields)
        return tier

    def construct_change_message(self, request, form, formsets, add=False):
        # The fields the service changed, as `vip_tier.updated` names them.
        if not add and getattr(form, "updated_fields", None) is not None:
            return [{"changed": {"fields": form.updated_fields}}] if form.updated_fields else []
        return super().construct_change_message(request, form, formsets, add)


# The tier policy -------------------------------------------------------------------------


class TierPolicyForm(ServiceForm):
    class Meta:
        model = TierPolicy
        fields = ("tenant", *services.POLICY_FIELDS)


@admin.register(TierPolicy)
class TierPolicyAdmin(ServiceFormAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """One per tenant, made with the defaults on first read (`tier_policy_get`)."""

    change_roles = PROGRAM_ROLES
    form = TierPolicyForm

    list_display = ("tenant", "qualification", "window_months", "downgrade_grace_days", "updated_at")
    list_select_related = ("tenant",)
    ordering = ("tenant__name",)

    def get_fields(self, request, obj=None):
        fields = ("tenant", *services.POLICY_FIELDS)
        return fields if obj is None else (*fields, "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("updated_at",)

    def has_add_permission(self, request):
        # An operator's tenant always has its policy (see changelist_view); platform staff
        # may make one for a tenant that has none yet.
        return self.request_tenant(request) is None and self.role_allows(request, PROGRAM_ROLES)

    def changelist_view(self, request, extra_context=None):
        # An operator has one policy: go straight to it.
        tenant = self.request_tenant(request)
        if tenant is not None and self.has_view_permission(request):
            policy = services.tier_policy_get(tenant=tenant)
            return HttpResponseRedirect(_change_url(self.admin_site, policy))
        return super().changelist_view(request, extra_context)

    def service_write(self, request, obj, form):
        tenant = self.form_tenant(request, obj, form)
        return services.tier_policy_update(
            tenant=tenant, **{name: form.cleaned_data[name] for name in services.POLICY_FIELDS}
        )


# Members' tiers (read-only) --------------------------------------------------------------


class ReasonFilter(admin.SimpleListFilter):
    """The reasons the operator's own history has (a plain field filter would list every
    tenant's)."""

    title = "reason"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        reasons = model_admin.get_queryset(request).order_by("reason").values_list("reason", flat=True).distinct()
        return [(reason, reason) for reason in reasons]

    def queryset(self, request, queryset):
        return queryset.filter(reason=self.value()) if self.value() else queryset


@admin.register(TierHistory)
class TierHistoryAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ("at", "member", "from_tier", "to_tier", "reason", "qualifying_points", "event_id", "tenant")
    list_filter = (
        ("to_tier", admin.RelatedOnlyFieldListFilter),
        ("from_tier", admin.RelatedOnlyFieldListFilter),
        ReasonFilter,
        "tenant",
    )
    list_select_related = ("member", "from_tier", "to_tier", "tenant")
    search_fields = ("member__external_ref__exact",)
    search_help_text = "Exact memberRef."
    date_hierarchy = "at"
    ordering = ("-at", "-pk")
    show_full_result_count = False
    readonly_fields = [f.name for f in TierHistory._meta.fields]


@admin.register(TierAssignment)
class TierAssignmentAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """Each member's current tier; the change page adds their history and qualifying points."""

    list_display = ("member", "tier", "assigned_at", "below_since", "evaluated_at", "tenant")
    list_filter = (("tier", admin.RelatedOnlyFieldListFilter), "tenant")
    list_select_related = ("member", "tier", "tenant")
    search_fields = ("member__external_ref__exact",)
    search_help_text = "Exact memberRef."
    ordering = ("-assigned_at", "member")
    show_full_result_count = False
    fields = ("member_link", "tier", "assigned_at", "below_since", "evaluated_at", "tenant")
    readonly_fields = fields

    @admin.display(description="member")
    def member_link(self, obj):
        url = reverse(f"{self.admin_site.name}:rewards_member_change", args=[obj.member_id])
        return format_html('<a href="{}">{}</a>', url, obj.member.external_ref)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        assignment = self.get_object(request, unquote(object_id))
        member = assignment.member
        history = list(
            TierHistory.objects.filter(tenant_id=assignment.tenant_id, member=member)
            .select_related("from_tier", "to_tier")
            .order_by("-at", "-pk")[:HISTORY_SHOWN]
        )
        history_url = reverse(f"{self.admin_site.name}:tiers_tierhistory_changelist")
        extra_context = {
            **(extra_context or {}),
            "tier_summary": member_tier_summary(member),
            "tier_history": history,
            "tier_history_shown": HISTORY_SHOWN,
            "tier_history_url": f"{history_url}?{urlencode({'q': member.external_ref})}",
        }
        return super().change_view(request, object_id, form_url, extra_context)
