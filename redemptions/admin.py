"""The redemptions back office: the operations queue (every redemption, read-only, with its
value calculation, status history and partner calls; "Retry now" and "Cancel and refund")
and the tenant's fulfilment partners with their health (circuit state, recent failures;
"Close circuit").

Redemptions are records: they move only through the workflow and the operator services, never
by editing a row. Owners, managers and support run the actions; a viewer only looks. Owners
and managers close a partner's circuit. Partner configurations (where the workers send the
partner's token) are changed by a tenant's owner.
"""

import re
from collections import defaultdict
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from catalog.models import Item
from core.admin_scoping import TenantScopedAdminMixin
from core.admin_services import ReadOnlyAdminMixin, ReadOnlyInline
from core.exceptions import DomainError
from core.roles import ACCOUNT_ROLES, OPERATIONS_ROLES, PROGRAM_ROLES
from redemptions import selectors, services
from redemptions.exceptions import NotCancellable
from redemptions.models import FulfilmentAttempt, PartnerConfig, Redemption, RedemptionTransition
from redemptions.partners import circuit_health, circuit_reset
from redemptions.states import FINAL

OPEN_STATUSES = tuple(status for status in Redemption.Status.values if status not in FINAL)
KIND_LABELS = dict(Item.Kind.choices)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _operator_label(request) -> str:
    return f"operator:{request.user.get_username()}"


def _change_url(admin_site, obj) -> str:
    opts = obj._meta
    return reverse(f"{admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def _short(redemption_id) -> str:
    return str(redemption_id)[:8]


def _when(moment) -> str:
    return f"{timesince(moment)} ago" if moment else "—"


# Redemptions -----------------------------------------------------------------------------


class OpenForFilter(admin.SimpleListFilter):
    """Redemptions still open (not completed, refunded or cancelled) this long after they were
    requested: a fulfilment normally takes seconds, so these are the ones to look at."""

    title = "open for"
    parameter_name = "open_for"
    ages = {
        "5m": (timedelta(minutes=5), "Over 5 minutes (stuck)"),
        "1h": (timedelta(hours=1), "Over 1 hour"),
        "1d": (timedelta(days=1), "Over 1 day"),
    }

    def lookups(self, request, model_admin):
        return [(key, label) for key, (_, label) in self.ages.items()]

    def queryset(self, request, queryset):
        age = self.ages.get(self.value())
        if age is None:
            return queryset
        return queryset.filter(status__in=OPEN_STATUSES, created_at__lt=timezone.now() - age[0])


class PartnerFilter(admin.SimpleListFilter):
    """The partners of the operator's tenant (all of them, named with their tenant, for
    platform staff)."""

    title = "partner"
    parameter_name = "partner"

    def lookups(self, request, model_admin):
        configs = PartnerConfig.objects.select_related("partner", "tenant").order_by("partner__name", "pk")
        tenant = model_admin.request_tenant(request)
        if tenant is not None:
            return [(str(c.pk), c.partner.name) for c in configs.filter(tenant=tenant)]
        return [(str(c.pk), f"{c.partner.name} ({c.tenant})") for c in configs]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(partner_config_id=int(value))


class RedemptionTransitionInline(ReadOnlyInline):
    model = RedemptionTransition
    fields = ("at", "from_status", "to_status", "actor", "reason", "detail")
    readonly_fields = fields
    ordering = ("at", "id")
    verbose_name = "status change"
    verbose_name_plural = "status history"


class FulfilmentAttemptInline(ReadOnlyInline):
    model = FulfilmentAttempt
    fields = ("at", "operation", "outcome", "duration_ms", "error")
    readonly_fields = fields
    ordering = ("at", "id")
    verbose_name = "partner call"
    verbose_name_plural = "partner calls"


class CancelForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Kept in the redemption's history.",
    )


@admin.register(Redemption)
class RedemptionAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """The operations queue, newest first (the "open for" filter finds the stuck ones)."""

    list_display = (
        "short_id",
        "member_ref",
        "item",
        "quantity",
        "points",
        "status",
        "partner",
        "attempts",
        "age",
        "failure_code",
        "created_at",
        "tenant",
    )
    list_display_links = ("short_id",)
    list_filter = ("status", PartnerFilter, OpenForFilter, "item_kind", "tenant")
    list_select_related = ("member", "item", "partner_config__partner", "tenant")
    search_fields = (
        "id__istartswith",
        "member__external_ref__exact",
        "item__name__icontains",
        "item__sku__iexact",
        "partner_reference__exact",
        "partner_order_id__exact",
    )
    search_help_text = "Redemption id (or its start), exact memberRef, item name or sku, partner reference or order."
    ordering = ("-created_at", "-id")
    # Counting every redemption on every page is the slow part of a large changelist.
    show_full_result_count = False
    actions = ("retry_now", "cancel_and_refund")
    inlines = (RedemptionTransitionInline, FulfilmentAttemptInline)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "tenant",
                    "status",
                    "member",
                    "item",
                    "item_kind",
                    "quantity",
                    "requested_by",
                    "created_at",
                    "updated_at",
                    "completed_at",
                )
            },
        ),
        (
            "Value calculation",
            {
                "fields": (
                    "unit_point_cost",
                    "discount_percentage",
                    "tier_code",
                    "unit_points",
                    "discount_points",
                    "points",
                    "cash_value",
                    "currency",
                    "point_value",
                )
            },
        ),
        (
            "Partner",
            {
                "fields": (
                    "partner_config",
                    "partner_order_id",
                    "partner_reference",
                    "partner_reference_kind",
                    "attempts",
                    "maybe_placed",
                    "lease_expires_at",
                    "failure_code",
                    "failure_reason",
                )
            },
        ),
        (
            "Ledger and stock",
            {
                "fields": ("debit_transfer", "refund_transfer", "lots", "stock_reserved", "idempotency_key"),
                "classes": ("collapse",),
            },
        ),
    )
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]

    # Columns -----------------------------------------------------------------------------

    @admin.display(description="id", ordering="id")
    def short_id(self, obj):
        return _short(obj.pk)

    @admin.display(description="memberRef", ordering="member__external_ref")
    def member_ref(self, obj):
        return obj.member.external_ref

    @admin.display(description="partner", ordering="partner_config__partner__name")
    def partner(self, obj):
        config = obj.partner_config
        return config.partner.name if config is not None else "—"

    @admin.display(description="open for", ordering="-created_at")
    def age(self, obj):
        return "—" if obj.is_final else timesince(obj.created_at)

    # Permissions -------------------------------------------------------------------------

    def has_operate_permission(self, request, obj=None) -> bool:
        return self.role_allows(request, OPERATIONS_ROLES) and self.in_scope(request, obj)

    # Actions -----------------------------------------------------------------------------

    @admin.action(description="Retry now", permissions=["operate"])
    def retry_now(self, request, queryset):
        queued, final = [], []
        for redemption in queryset:
            (queued if services.redemption_retry(redemption=redemption) else final).append(redemption)
        for redemption in queued:
            self.log_operation(request, redemption, "Retry queued", status=redemption.status)
        self._retry_message(request, queued, final)

    @admin.action(description="Cancel and refund", permissions=["operate"])
    def cancel_and_refund(self, request, queryset):
        redemptions = list(queryset.select_related("member", "item"))
        form = CancelForm(request.POST if request.POST.get("post") else None)
        if form.is_valid():
            outcomes = self._cancel(request, redemptions, form.cleaned_data["reason"])
            self._cancel_messages(request, outcomes)
            return None
        return self._cancel_page(request, redemptions, form, action="cancel_and_refund")

    def _retry_message(self, request, queued, final) -> None:
        skipped = f" Skipped {len(final)} already final: {', '.join(_short(r.pk) for r in final)}." if final else ""
        level = messages.SUCCESS if queued else messages.WARNING
        self.message_user(request, f"Queued the next step of {len(queued)} redemption(s).{skipped}", level)

    def _cancel(self, request, redemptions, reason: str) -> dict[str, list[str]]:
        """Cancel and refund each one; what became of each, by outcome."""
        outcomes = defaultdict(list)
        for redemption in redemptions:
            before = redemption.status
            try:
                redemption = services.redemption_operator_cancel(
                    redemption=redemption, actor=_operator_label(request), reason=reason
                )
            except NotCancellable:
                outcomes["final"].append(f"{_short(redemption.pk)} ({redemption.get_status_display().lower()})")
                continue
            except DomainError as exc:
                outcomes["error"].append(f"{_short(redemption.pk)}: {exc.message}")
                continue
            self.log_operation(
                request, redemption, "Cancel and refund", changes={"status": (before, redemption.status)}, reason=reason
            )
            if redemption.status == Redemption.Status.CANCELLED:
                outcomes["cancelled"].append(_short(redemption.pk))
            elif redemption.status == Redemption.Status.REFUNDED:
                outcomes["refunded"].append(_short(redemption.pk))
            else:
                outcomes["waiting"].append(_short(redemption.pk))
        return outcomes

    def _cancel_messages(self, request, outcomes: dict[str, list[str]]) -> None:
        texts = {
            "cancelled": (messages.SUCCESS, "Cancelled {n}; the points and stock are back: {ids}."),
            "refunded": (messages.SUCCESS, "Failed and refunded {n} that were with the partner: {ids}."),
            "waiting": (
                messages.WARNING,
                "Failed {n}; the refund follows once the partner voids the order (retried): {ids}.",
            ),
            "final": (messages.WARNING, "Left {n} as they were, already final: {ids}."),
            "error": (messages.ERROR, "Could not cancel {n}: {ids}."),
        }
        for outcome, (level, text) in texts.items():
            done = outcomes.get(outcome)
            if done:
                self.message_user(request, text.format(n=len(done), ids="; ".join(done)), level)

    def _cancel_page(self, request, redemptions, form, *, action: str = "", original=None):
        context = {
            **self.admin_site.each_context(request),
            "title": "Cancel and refund",
            "opts": self.opts,
            "original": original,
            "redemptions": redemptions,
            "form": form,
            "action": action,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/redemptions/redemption/cancel.html", context)

    # Detail page buttons -----------------------------------------------------------------

    def get_urls(self):
        info = (self.opts.app_label, self.opts.model_name)
        custom = [
            path(
                "<path:object_id>/retry/",
                self.admin_site.admin_view(self.retry_view),
                name="{}_{}_retry".format(*info),
            ),
            path(
                "<path:object_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="{}_{}_cancel".format(*info),
            ),
        ]
        # Before the defaults, whose "<object_id>/" catch-all would swallow these paths.
        return custom + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        redemption = self.get_object(request, unquote(object_id))
        can_operate = not redemption.is_final and self.has_operate_permission(request, redemption)
        extra_context = {**(extra_context or {}), "can_operate": can_operate}
        return super().change_view(request, object_id, form_url, extra_context)

    def retry_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        redemption = self.get_object(request, unquote(object_id))
        if not self.has_operate_permission(request, redemption):
            raise PermissionDenied
        if services.redemption_retry(redemption=redemption):
            self.log_operation(request, redemption, "Retry queued", status=redemption.status)
            self.message_user(request, f"Queued the next step of {_short(redemption.pk)}.", messages.SUCCESS)
        else:
            self.message_user(request, f"{_short(redemption.pk)} is already final.", messages.WARNING)
        return HttpResponseRedirect(_change_url(self.admin_site, redemption))

    def cancel_view(self, request, object_id):
        redemption = self.get_object(request, unquote(object_id))
        if not self.has_operate_permission(request, redemption):
            raise PermissionDenied
        form = CancelForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            outcomes = self._cancel(request, [redemption], form.cleaned_data["reason"])
            self._cancel_messages(request, outcomes)
            return HttpResponseRedirect(_change_url(self.admin_site, redemption))
        return self._cancel_page(request, [redemption], form, original=redemption)


# Partner configurations ------------------------------------------------------------------


class PartnerConfigForm(forms.ModelForm):
    base_url = forms.URLField(
        max_length=500, assume_scheme="https", help_text=PartnerConfig._meta.get_field("base_url").help_text
    )
    enabled_kinds = forms.MultipleChoiceField(
        label="Fulfils",
        choices=Item.Kind.choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one kind of item this partner fulfils."},
        help_text="The kinds of item redeemed through this partner.",
    )

    class Meta:
        model = PartnerConfig
        fields = (
            "tenant",
            "partner",
            "base_url",
            "credentials_ref",
            "enabled_kinds",
            "priority",
            "is_enabled",
            "timeout_seconds",
            "max_attempts",
            "failure_threshold",
            "reset_timeout_seconds",
        )

    def clean_base_url(self):
        url = self.cleaned_data["base_url"]
        if not url.lower().startswith(("http://", "https://")):
            raise forms.ValidationError("Give the partner's http or https URL.", code="invalid_scheme")
        return url

    def clean_credentials_ref(self):
        name = self.cleaned_data["credentials_ref"].strip()
        if name and not ENV_NAME.match(name):
            raise forms.ValidationError(
                "The name of the environment variable holding the token (letters, digits and _), "
                "never the token itself.",
                code="invalid_credentials_ref",
            )
        return name

    def clean_enabled_kinds(self):
        chosen = set(self.cleaned_data["enabled_kinds"])
        return [kind for kind in Item.Kind.values if kind in chosen]

    def clean(self):
        data = super().clean()
        tenant = data.get("tenant") or getattr(self.instance, "tenant", None)
        partner = data.get("partner") or getattr(self.instance, "partner", None)
        # Only platform staff choose the tenant; an operator's partners are theirs already.
        if tenant is not None and partner is not None and partner.tenant_id != tenant.pk:
            self.add_error("partner" if "partner" in self.fields else None, "This partner belongs to another tenant.")
        return data


@admin.register(PartnerConfig)
class PartnerConfigAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """How each partner is called, and how it is doing: the circuit (shared by every worker)
    and its calls in the last hour. Redemptions point at configurations, so one is disabled,
    not deleted."""

    add_roles = change_roles = ACCOUNT_ROLES
    form = PartnerConfigForm

    list_display = (
        "partner",
        "kinds",
        "priority",
        "is_enabled",
        "circuit",
        "failures_last_hour",
        "last_failure",
        "base_url",
        "tenant",
    )
    list_filter = ("is_enabled", "tenant")
    list_select_related = ("partner", "tenant")
    search_fields = ("partner__name", "partner__code", "base_url")
    ordering = ("tenant", "priority", "partner__name", "pk")
    actions = ("close_circuit",)
    health_fields = ("circuit_detail", "failures_last_hour", "recent_failures")

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (None, {"fields": ("tenant", "partner", "base_url", "credentials_ref", "enabled_kinds")}),
            ("Routing", {"fields": ("priority", "is_enabled")}),
            (
                "Calls",
                {"fields": ("timeout_seconds", "max_attempts", "failure_threshold", "reset_timeout_seconds")},
            ),
        ]
        if obj is not None:
            fieldsets.insert(1, ("Health", {"fields": self.health_fields}))
            fieldsets.append(("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        # Redemptions and the circuit name the partner: fixed once configured.
        return () if obj is None else ("partner", *self.health_fields, "created_at", "updated_at")

    def has_delete_permission(self, request, obj=None):
        return False

    def has_reset_permission(self, request, obj=None) -> bool:
        return self.role_allows(request, PROGRAM_ROLES) and self.in_scope(request, obj)

    # Health ------------------------------------------------------------------------------

    @staticmethod
    def _health(obj) -> dict:
        # Several columns of a row read it: once per row.
        if not hasattr(obj, "_health"):
            obj._health = selectors.partner_health(config=obj)
        return obj._health

    @staticmethod
    def _circuit(obj) -> dict:
        if not hasattr(obj, "_circuit"):
            obj._circuit = circuit_health(services.partner_settings(obj))
        return obj._circuit

    @admin.display(description="fulfils")
    def kinds(self, obj):
        return ", ".join(KIND_LABELS.get(kind, kind) for kind in obj.enabled_kinds) or "—"

    @admin.display(description="circuit")
    def circuit(self, obj):
        return self._circuit(obj)["state"]

    @admin.display(description="circuit")
    def circuit_detail(self, obj):
        circuit = self._circuit(obj)
        if circuit["state"] == "closed":
            return f"closed ({circuit['failures']} failure(s) in a row)"
        return f"{circuit['state']} since {_when(circuit['openedAt'])}"

    @admin.display(description="failed / calls (1 h)")
    def failures_last_hour(self, obj):
        health = self._health(obj)
        return f"{health['failed']} / {health['total']}"

    @admin.display(description="last failure (1 h)")
    def last_failure(self, obj):
        return _when(self._health(obj)["last_failure"])

    @admin.display(description="recent failures")
    def recent_failures(self, obj):
        failures = self._health(obj)["recent_failures"]
        if not failures:
            return f"None in the last {self._health(obj)['window_minutes']} minutes."
        link = f"{self.admin_site.name}:redemptions_redemption_change"
        rows = format_html_join(
            "",
            '<tr class="partner-failure-row"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
            '<td><a href="{}">{}</a></td></tr>',
            (
                (
                    f["at"].strftime("%Y-%m-%d %H:%M:%S"),
                    f["operation"],
                    FulfilmentAttempt.Outcome(f["outcome"]).label,
                    f["error"] or "—",
                    reverse(link, args=[f["redemption_id"]]),
                    _short(f["redemption_id"]),
                )
                for f in failures
            ),
        )
        head = mark_safe(
            "<thead><tr><th>when</th><th>call</th><th>outcome</th><th>error</th><th>redemption</th></tr></thead>"
        )
        return format_html('<table class="partner-failures">{}<tbody>{}</tbody></table>', head, rows)

    # Closing the circuit -----------------------------------------------------------------

    @admin.action(description="Close circuit", permissions=["reset"])
    def close_circuit(self, request, queryset):
        closed = []
        for config in queryset.select_related("partner"):
            self._close_circuit(request, config)
            closed.append(config.partner.name)
        self.message_user(request, f"Closed the circuit of {', '.join(closed) or 'no partner'}.", messages.SUCCESS)

    def _close_circuit(self, request, config) -> None:
        state = self._circuit(config)["state"]
        circuit_reset(services.partner_settings(config))
        self.log_operation(request, config, "Circuit closed", changes={"circuit": (state, "closed")})

    def get_urls(self):
        info = (self.opts.app_label, self.opts.model_name)
        custom = [
            path(
                "<path:object_id>/close-circuit/",
                self.admin_site.admin_view(self.close_circuit_view),
                name="{}_{}_close_circuit".format(*info),
            )
        ]
        # Before the defaults, whose "<object_id>/" catch-all would swallow this path.
        return custom + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        config = self.get_object(request, unquote(object_id))
        can_close = self.has_reset_permission(request, config) and self._circuit(config)["state"] != "closed"
        extra_context = {**(extra_context or {}), "can_close_circuit": can_close}
        return super().change_view(request, object_id, form_url, extra_context)

    def close_circuit_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        config = self.get_object(request, unquote(object_id))
        if not self.has_reset_permission(request, config):
            raise PermissionDenied
        self._close_circuit(request, config)
        self.message_user(request, f"Closed the circuit of {config.partner.name}.", messages.SUCCESS)
        return HttpResponseRedirect(_change_url(self.admin_site, config))
