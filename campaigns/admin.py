"""The campaigns back office: the campaign builder and its lifecycle, a dry-run preview,
cohorts (member uploads and CSV downloads, rules, recomputes), the catalogs rules name (actions, coupon pools)
and read-only views of what campaigns issued.

Every write goes through `campaigns.services` or `campaigns.cohorts`. The service is called
as the form's last validation step (`ServiceForm`), so that its refusal shows on the field it
names, e.g. a RuleInvalid at `rule_json.reward.points` as "reward.points: ..." under the rule.

Campaigns (their lifecycle too), cohorts, actions and coupon pools are the program: owners and
managers change them; support and viewers read.
"""

import csv
import functools
import io
import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, Q
from django.forms.fields import InvalidJSONInput
from django.http import HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from campaigns import cohorts, services
from campaigns.incentives import campaign_preview
from campaigns.models import (
    Action,
    Campaign,
    CampaignMemberUsage,
    Cohort,
    CohortRun,
    CouponCode,
    CouponPool,
    Incentive,
    QuestProgress,
)
from campaigns.rules import RULE_SCHEMA
from core.admin_scoping import TenantScopedAdminMixin
from core.admin_services import ReadOnlyAdminMixin, ServiceForm, ServiceFormAdminMixin
from core.exceptions import Conflict, DomainError
from core.roles import PROGRAM_ROLES

RULE_SCHEMA_API_PATH = "/api/v1/campaigns/rule-schema"
PREVIEW_MAX_EVENTS = 500
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MEMBER_REF_COLUMNS = ("memberref", "member_ref")
COUPON_CODE_COLUMNS = ("code", "coupon", "couponcode", "coupon_code")
RECENT_RUNS = 10
UNKNOWN_SHOWN = 200


def _operator_label(request) -> str:
    return f"operator:{request.user.get_username()}"


class _Echo:
    """A file that hands back what is written to it, so csv.writer can feed a streamed response."""

    def write(self, value):
        return value


def _cohort_members_csv(rows, filename: str) -> StreamingHttpResponse:
    """memberRef, joined_at and cohort per row: the memberRef column is what the upload form
    reads, so a downloaded list can be uploaded again (to this cohort or another)."""
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(("memberRef", "joined_at", "cohort"))
        for code, member_ref, added_at in rows.iterator(chunk_size=2000):
            yield writer.writerow((member_ref, added_at.isoformat(), code))

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _change_url(admin_site, obj) -> str:
    opts = obj._meta
    return reverse(f"{admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


# Rules as JSON ---------------------------------------------------------------------------

RULE_TEMPLATES = [
    {
        "key": "double-points-category",
        "label": "Double points on a category",
        "campaignType": Campaign.Type.SIMPLE,
        "rule": {
            "trigger": {"eventTypes": ["transaction.created"]},
            "conditions": {"==": [{"var": "event.category"}, "dining"]},
            "reward": {"type": "POINTS", "multiplier": "2", "maxPoints": 1000},
        },
    },
    {
        "key": "actions-quest",
        "label": "Quest: N actions",
        "campaignType": Campaign.Type.QUEST,
        "rule": {
            "quest": {"steps": [{"actionCode": "app.login", "count": 5, "withinDays": 30}]},
            "reward": {"type": "POINTS", "points": 500},
        },
    },
    {
        "key": "percent-cashback",
        "label": "Percent cashback",
        "campaignType": Campaign.Type.SIMPLE,
        "rule": {
            "trigger": {"eventTypes": ["transaction.created"]},
            "conditions": {">=": [{"var": "event.amount"}, 50]},
            "reward": {"type": "CASHBACK", "percent": "5", "maxAmount": "20.00"},
        },
    },
    {
        "key": "coupon",
        "label": "Coupon on an action",
        "campaignType": Campaign.Type.SIMPLE,
        "rule": {
            "trigger": {"eventTypes": ["action"], "actionCodes": ["profile.completed"]},
            "reward": {"type": "COUPON", "pool": "welcome-10"},
        },
    },
]

COHORT_RULE_TEMPLATES = [
    {
        "key": "big-spenders",
        "label": "Spent 200 or more in 30 days",
        "rule": {">=": [{"var": "activity.spend.30d"}, 200]},
    },
    {
        "key": "lapsed",
        "label": "Lapsed: no purchase in 90 days",
        "rule": {
            "and": [
                {">": [{"var": "member.createdDaysAgo"}, 90]},
                {"==": [{"var": "activity.transactions.90d"}, 0]},
            ]
        },
    },
    {
        "key": "attribute",
        "label": "Member attribute equals",
        "rule": {"==": [{"var": "member.attributes.city"}, "Paris"]},
    },
]


class RuleJsonWidget(forms.Textarea):
    """A monospace textarea for a rule, with templates to insert and a link to the schema."""

    template_name = "admin/campaigns/widgets/rule_json.html"

    class Media:
        js = ("campaigns/rule_json.js",)

    def __init__(self, *, templates=(), schema_url_name: str | None = None, attrs=None):
        base = {
            "rows": 22,
            "cols": 90,
            "spellcheck": "false",
            "class": "vLargeTextField rule-json",
            "style": "font-family: ui-monospace, Menlo, Consolas, monospace; width: 100%; max-width: 64em;",
        }
        super().__init__(attrs={**base, **(attrs or {})})
        self.templates = list(templates)
        self.schema_url_name = schema_url_name

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["widget"]["templates"] = self.templates
        context["widget"]["templates_id"] = f"{attrs.get('id') or name}_templates"
        context["widget"]["schema_url"] = reverse(self.schema_url_name) if self.schema_url_name else ""
        context["widget"]["schema_api_path"] = RULE_SCHEMA_API_PATH if self.schema_url_name else ""
        return context


class RuleJsonField(forms.JSONField):
    """JSON shown pretty-printed (two-space indent), as the operator edits it. PostgreSQL
    stores objects with their keys reordered; `key_order` puts the top-level ones back in
    reading order (the rest follow as stored)."""

    def __init__(self, *, key_order=(), **kwargs):
        kwargs.setdefault("encoder", DjangoJSONEncoder)
        super().__init__(**kwargs)
        self.key_order = tuple(key_order)

    def prepare_value(self, value):
        if isinstance(value, InvalidJSONInput):
            return value
        if isinstance(value, dict) and self.key_order:
            first = {key: value[key] for key in self.key_order if key in value}
            value = {**first, **{key: item for key, item in value.items() if key not in first}}
            if isinstance(value.get("reward"), dict) and "type" in value["reward"]:
                value["reward"] = {"type": value["reward"]["type"], **value["reward"]}
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


# Writes through the services -------------------------------------------------------------


# Campaigns -------------------------------------------------------------------------------


class CampaignForm(ServiceForm):
    rule_json = RuleJsonField(
        label="Rule",
        key_order=("trigger", "quest", "conditions", "reward"),
        widget=RuleJsonWidget(templates=RULE_TEMPLATES, schema_url_name="admin:campaigns_campaign_rule_schema"),
        help_text="What triggers the campaign, its conditions and its reward, as JSON.",
    )
    field_aliases = {"cohort_id": "cohort"}

    class Meta:
        model = Campaign
        fields = ("tenant", *services.EDITABLE)

    def clean(self):
        data = super().clean()
        start_at, end_at = data.get("start_at"), data.get("end_at")
        if start_at and end_at and end_at <= start_at:
            # On the field, rather than the model constraint's message about the whole form.
            self.add_error("end_at", "Must be after the start.")
        return data


LIFECYCLE = {
    "activate": (services.campaign_activate, "Activate", "activated"),
    "pause": (services.campaign_pause, "Pause", "paused"),
    "end": (services.campaign_end, "End", "ended"),
}


class PreviewForm(forms.Form):
    last_n = forms.IntegerField(
        label="Last N events", min_value=1, max_value=PREVIEW_MAX_EVENTS, initial=50, help_text="Most recent first."
    )
    member_ref = forms.CharField(
        label="memberRef", max_length=128, required=False, help_text="Only this member's events (optional)."
    )


@admin.register(Campaign)
class CampaignAdmin(ServiceFormAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    add_roles = change_roles = PROGRAM_ROLES
    form = CampaignForm

    list_display = (
        "name",
        "status",
        "type",
        "priority",
        "start_at",
        "end_at",
        "rewards_issued",
        "amount_issued",
        "tenant",
    )
    list_filter = ("status", "type", "stacking", "start_at", "tenant")
    list_select_related = ("stats", "tenant")
    search_fields = ("name",)
    ordering = ("-priority", "-start_at", "pk")
    record_fields = ("status", "version", "rewards_issued", "amount_issued", "activated_at", "ended_at")

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (None, {"fields": ("tenant", "name", "description", "type")}),
            ("Schedule and audience", {"fields": ("start_at", "end_at", "cohort", "priority", "stacking")}),
            (
                "Budget and caps",
                {
                    "fields": (
                        "budget_rewards",
                        "budget_amount",
                        "member_cap_rewards",
                        "member_cap_amount",
                        "member_cap_period",
                    )
                },
            ),
            ("Rule", {"fields": ("rule_json",)}),
        ]
        if obj is not None:
            fieldsets.insert(1, ("Status", {"fields": (*self.record_fields, "created_at", "updated_at")}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        # Status moves only through the lifecycle buttons.
        return () if obj is None else (*self.record_fields, "created_at", "updated_at")

    @admin.display(description="rewards issued", ordering="stats__rewards_issued")
    def rewards_issued(self, obj):
        stats = getattr(obj, "stats", None)
        return stats.rewards_issued if stats else 0

    @admin.display(description="amount issued", ordering="stats__amount_issued")
    def amount_issued(self, obj):
        stats = getattr(obj, "stats", None)
        return stats.amount_issued if stats else 0

    def has_change_permission(self, request, obj=None):
        # An ENDED campaign is a record: it is shown read-only.
        ended = obj is not None and obj.status == Campaign.Status.ENDED
        return super().has_change_permission(request, obj) and not ended

    def has_lifecycle_permission(self, request, obj=None) -> bool:
        return self.role_allows(request, PROGRAM_ROLES) and self.in_scope(request, obj)

    def service_write(self, request, obj, form):
        values = {name: form.cleaned_data[name] for name in services.EDITABLE}
        tenant = self.form_tenant(request, obj, form)
        if obj is None:
            return services.campaign_create(tenant=tenant, **values)
        return services.campaign_update(tenant=tenant, campaign=obj, **values)

    # Views ------------------------------------------------------------------------------

    def get_urls(self):
        info = (self.opts.app_label, self.opts.model_name)
        custom = [
            path(
                "rule-schema/",
                self.admin_site.admin_view(self.rule_schema_view),
                name="{}_{}_rule_schema".format(*info),
            ),
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="{}_{}_preview".format(*info),
            ),
        ]
        for verb in LIFECYCLE:
            custom.append(
                path(
                    f"<path:object_id>/{verb}/",
                    self.admin_site.admin_view(functools.partial(self.lifecycle_view, verb=verb)),
                    name="{}_{}_{}".format(*info, verb),
                )
            )
        # Before the defaults, whose "<object_id>/" catch-all would swallow these paths.
        return custom + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        campaign = self.get_object(request, unquote(object_id))
        actions = []
        if self.has_lifecycle_permission(request, campaign):
            actions = [
                {"verb": verb, "label": label}
                for verb, (_, label, _) in LIFECYCLE.items()
                if campaign.status in services.TRANSITIONS[verb][0]
            ]
        extra_context = {
            **(extra_context or {}),
            "lifecycle_actions": actions,
            "rule_schema_api_path": RULE_SCHEMA_API_PATH,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def rule_schema_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse(RULE_SCHEMA, json_dumps_params={"indent": 2})

    def lifecycle_view(self, request, object_id, verb):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        campaign = self.get_object(request, unquote(object_id))
        if not self.has_lifecycle_permission(request, campaign):
            raise PermissionDenied
        service, _, done = LIFECYCLE[verb]
        try:
            campaign = service(tenant=campaign.tenant, campaign=campaign)
        except Conflict as exc:
            self.message_user(request, f"Not {done}: {exc.message}", messages.ERROR)
        else:
            self.log_change(request, campaign, f"Campaign {done}.")
            self.message_user(request, f"Campaign “{campaign}” {done}; it is now {campaign.status}.", messages.SUCCESS)
        return HttpResponseRedirect(_change_url(self.admin_site, campaign))

    def preview_view(self, request, object_id):
        campaign = self.get_object(request, unquote(object_id))
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        form = PreviewForm(request.GET if "last_n" in request.GET else {"last_n": 50})
        result = None
        if form.is_valid():
            result = campaign_preview(
                tenant=campaign.tenant,
                campaign=campaign,
                last_n=form.cleaned_data["last_n"],
                member_ref=form.cleaned_data["member_ref"] or None,
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Preview: {campaign}",
            "opts": self.opts,
            "original": campaign,
            "form": form,
            "result": result,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/preview.html", context)


# Cohorts ---------------------------------------------------------------------------------


class CohortForm(ServiceForm):
    rule_json = RuleJsonField(
        label="Rule",
        required=False,
        widget=RuleJsonWidget(templates=COHORT_RULE_TEMPLATES, attrs={"rows": 14}),
        help_text="DYNAMIC cohorts only: the condition a member meets to belong (member and activity variables).",
    )

    class Meta:
        model = Cohort
        fields = ("tenant", "name", "code", "kind", "rule_json")

    def clean(self):
        data = super().clean()
        kind = data.get("kind") or self.instance.kind
        rule = data.get("rule_json")
        if kind == Cohort.Kind.STATIC:
            if rule not in (None, {}):
                self.add_error("rule_json", "A static cohort lists its members; leave the rule empty.")
            data["rule_json"] = {}
        elif kind == Cohort.Kind.DYNAMIC and rule is None and not self.has_error("rule_json"):
            self.add_error("rule_json", "A dynamic cohort needs its rule.")
        return data


class MembersUploadForm(forms.Form):
    file = forms.FileField(
        required=False,
        label="CSV file",
        help_text="One memberRef per line, or a column headed memberRef (or member_ref).",
    )
    refs = forms.CharField(
        required=False,
        label="Or paste memberRefs",
        widget=forms.Textarea(attrs={"rows": 8, "cols": 60}),
        help_text="One per line.",
    )
    mode = forms.ChoiceField(
        choices=(
            ("replace", "Replace the current members with this list"),
            ("add", "Add these to the current members"),
        ),
        initial="replace",
        widget=forms.RadioSelect,
    )

    def clean(self):
        data = super().clean()
        upload, pasted = data.get("file"), data.get("refs") or ""
        if upload is None and not pasted.strip():
            raise ValidationError("Choose a CSV file or paste memberRefs.")
        refs = _column_values(_csv_rows(upload), MEMBER_REF_COLUMNS, "memberRef") if upload is not None else []
        refs += [line.strip() for line in pasted.splitlines() if line.strip()]
        if not refs:
            raise ValidationError("The list names no memberRef.")
        data["member_refs"] = refs
        return data


def _csv_rows(upload) -> list[list[str]]:
    if upload.size > MAX_UPLOAD_BYTES:
        raise ValidationError(f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError("The file is not UTF-8 text.") from None
    try:
        return [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise ValidationError(f"The file is not valid CSV: {exc}") from None


def _column_values(rows: list[list[str]], names: tuple[str, ...], label: str) -> list[str]:
    """The values of the column headed by one of `names` (any case), or of the only column."""
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    column = next((header.index(name) for name in names if name in header), None)
    if column is not None:
        body = rows[1:]
    elif all(len(row) == 1 for row in rows):
        column, body = 0, rows
    else:
        raise ValidationError(f"The file has several columns: head the one to read {label}.")
    return [row[column].strip() for row in body if len(row) > column and row[column].strip()]


@admin.register(Cohort)
class CohortAdmin(ServiceFormAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    add_roles = change_roles = PROGRAM_ROLES
    form = CohortForm

    list_display = ("name", "code", "kind", "member_count", "computed_at", "updated_at", "tenant")
    list_filter = ("kind", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("name", "code")
    ordering = ("tenant", "code")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "name", "code", "kind", "rule_json")
        fields = ("tenant", "name", "code", "kind", "member_count", "computed_at", "created_at", "updated_at")
        return (*fields, "rule_json") if obj.kind == Cohort.Kind.DYNAMIC else fields

    def get_readonly_fields(self, request, obj=None):
        # Campaign conditions name the code; the kind decides how members are kept.
        return () if obj is None else ("code", "kind", "member_count", "computed_at", "created_at", "updated_at")

    def has_write_permission(self, request, obj=None) -> bool:
        return self.role_allows(request, PROGRAM_ROLES) and self.in_scope(request, obj)

    def service_write(self, request, obj, form):
        data = form.cleaned_data
        if obj is None:
            return cohorts.cohort_create(
                tenant=self.form_tenant(request, obj, form),
                name=data["name"],
                code=data["code"],
                kind=data["kind"],
                rule_json=data["rule_json"] if data["kind"] == Cohort.Kind.DYNAMIC else None,
                member_refs=[],
                requested_by=_operator_label(request),
            )
        return self._cohort_update(request, obj, form)

    def _cohort_update(self, request, obj, form):
        data = form.cleaned_data
        rule = data.get("rule_json") if obj.kind == Cohort.Kind.DYNAMIC and "rule_json" in form.changed_data else None
        original = Cohort.objects.get(pk=obj.pk)  # the form has already applied its values to obj
        cohort, form.recompute_run = cohorts.cohort_update(
            tenant=original.tenant,
            cohort=original,
            name=data.get("name"),
            rule_json=rule,
            requested_by=_operator_label(request),
        )
        return cohort

    def get_urls(self):
        info = (self.opts.app_label, self.opts.model_name)
        custom = [
            path(
                "<path:object_id>/members/",
                self.admin_site.admin_view(self.members_upload_view),
                name="{}_{}_members".format(*info),
            ),
            path(
                "<path:object_id>/recompute/",
                self.admin_site.admin_view(self.recompute_view),
                name="{}_{}_recompute".format(*info),
            ),
            path(
                "<path:object_id>/members.csv",
                self.admin_site.admin_view(self.members_export_view),
                name="{}_{}_members_export".format(*info),
            ),
        ]
        return custom + super().get_urls()

    # Member lists out: anyone who may read the cohort, viewers too. A button on the cohort's
    # page rather than a list action, since a viewer's lists offer no actions at all.

    def members_export_view(self, request, object_id):
        cohort = self.get_object(request, unquote(object_id))  # another tenant's: 404
        if not self.has_view_permission(request, cohort):
            raise PermissionDenied
        rows = cohorts.cohort_member_rows(tenant=cohort.tenant, cohort=cohort)
        return _cohort_members_csv(rows, f"cohort-{cohort.tenant.slug}-{cohort.code}.csv")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        cohort = self.get_object(request, unquote(object_id))
        extra_context = {
            **(extra_context or {}),
            "can_write": self.has_write_permission(request, cohort),
            "can_export": self.has_view_permission(request, cohort),
            "is_dynamic": cohort.kind == Cohort.Kind.DYNAMIC,
            "recent_runs": list(
                cohorts.cohort_run_list(tenant=cohort.tenant, cohort=cohort)[:RECENT_RUNS]
                if cohort.kind == Cohort.Kind.DYNAMIC
                else []
            ),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def response_add(self, request, obj, post_url_continue=None):
        if obj.kind == Cohort.Kind.DYNAMIC:
            self.message_user(request, "Its members are being computed in the background.", messages.INFO)
        return super().response_add(request, obj, post_url_continue)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if getattr(form, "recompute_run", None) is not None:
            self.message_user(request, "The rule changed: a recompute is queued.", messages.INFO)

    def recompute_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        cohort = self.get_object(request, unquote(object_id))
        if not self.has_write_permission(request, cohort):
            raise PermissionDenied
        try:
            run = cohorts.cohort_recompute_request(
                tenant=cohort.tenant, cohort=cohort, requested_by=_operator_label(request)
            )
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.log_operation(request, cohort, "Recompute requested", run=str(run.pk))
            self.message_user(request, f"Recompute queued (run {run.pk}).", messages.SUCCESS)
        return HttpResponseRedirect(_change_url(self.admin_site, cohort))

    def members_upload_view(self, request, object_id):
        cohort = self.get_object(request, unquote(object_id))
        if not self.has_write_permission(request, cohort):
            raise PermissionDenied
        if cohort.kind != Cohort.Kind.STATIC:
            self.message_user(request, "A dynamic cohort's members follow from its rule.", messages.ERROR)
            return HttpResponseRedirect(_change_url(self.admin_site, cohort))
        result = None
        if request.method == "POST":
            form = MembersUploadForm(request.POST, request.FILES)
            if form.is_valid():
                before = cohort.member_count
                try:
                    result = cohorts.cohort_members_set(
                        tenant=cohort.tenant,
                        cohort=cohort,
                        member_refs=form.cleaned_data["member_refs"],
                        replace=form.cleaned_data["mode"] == "replace",
                    )
                except DomainError as exc:
                    form.add_error(None, exc.message)
                else:
                    cohort.refresh_from_db()
                    change = f"Members uploaded: {result['added']} added, {result['removed']} removed."
                    self.log_operation(request, cohort, change, changes={"members": (before, cohort.member_count)})
                    self._report_upload(request, result)
                    form = MembersUploadForm()
        else:
            form = MembersUploadForm()
        context = {
            **self.admin_site.each_context(request),
            "title": f"Upload members: {cohort}",
            "opts": self.opts,
            "original": cohort,
            "form": form,
            "result": result,
            "unknown_shown": (result or {}).get("unknown", [])[:UNKNOWN_SHOWN],
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/campaigns/cohort/members_upload.html", context)

    def _report_upload(self, request, result):
        unknown = len(result["unknown"])
        summary = f"{result['added']} added, {result['removed']} removed."
        if unknown:
            self.message_user(request, f"{summary} {unknown} unknown memberRef(s) skipped.", messages.WARNING)
        else:
            self.message_user(request, summary, messages.SUCCESS)


@admin.register(CohortRun)
class CohortRunAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "cohort",
        "status",
        "progress",
        "added",
        "removed",
        "members_after",
        "finished_at",
        "tenant",
    )
    list_filter = ("status", ("cohort", admin.RelatedOnlyFieldListFilter), "tenant")
    list_select_related = ("cohort", "tenant")
    ordering = ("-created_at", "-pk")
    readonly_fields = [f.name for f in CohortRun._meta.fields]


# Catalogs ------------------------------------------------------------------------------


class ActionForm(ServiceForm):
    class Meta:
        model = Action
        fields = ("tenant", "code", "description")


@admin.register(Action)
class ActionAdmin(ServiceFormAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """The action codes campaign triggers and quest steps may name."""

    add_roles = change_roles = PROGRAM_ROLES
    form = ActionForm

    list_display = ("code", "description", "created_at", "tenant")
    list_filter = ("tenant",)
    list_select_related = ("tenant",)
    search_fields = ("code", "description")
    ordering = ("tenant", "code")

    def get_fields(self, request, obj=None):
        return ("tenant", "code", "description") if obj is None else ("tenant", "code", "description", "created_at")

    def get_readonly_fields(self, request, obj=None):
        # Rules name the code.
        return () if obj is None else ("code", "created_at")

    def service_write(self, request, obj, form):
        code = obj.code if obj is not None else form.cleaned_data["code"]
        action, _ = services.action_upsert(
            tenant=self.form_tenant(request, obj, form), code=code, description=form.cleaned_data["description"]
        )
        return action


class CouponPoolForm(ServiceForm):
    class Meta:
        model = CouponPool
        fields = ("tenant", "code", "name")


class CodesUploadForm(forms.Form):
    file = forms.FileField(required=False, label="CSV file", help_text="One code per line, or a column headed code.")
    codes = forms.CharField(
        required=False,
        label="Or paste codes",
        widget=forms.Textarea(attrs={"rows": 10, "cols": 60}),
        help_text="One per line.",
    )

    def clean(self):
        data = super().clean()
        upload, pasted = data.get("file"), data.get("codes") or ""
        if upload is None and not pasted.strip():
            raise ValidationError("Choose a CSV file or paste codes.")
        codes = _column_values(_csv_rows(upload), COUPON_CODE_COLUMNS, "code") if upload is not None else []
        codes += [line.strip() for line in pasted.splitlines() if line.strip()]
        if not codes:
            raise ValidationError("The list has no code.")
        data["code_list"] = codes
        return data


@admin.register(CouponPool)
class CouponPoolAdmin(ServiceFormAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """Pools are made by the service and then filled with codes; a pool itself is not edited."""

    add_roles = PROGRAM_ROLES
    form = CouponPoolForm

    list_display = ("code", "name", "free_codes", "assigned_codes", "created_at", "tenant")
    list_filter = ("tenant",)
    list_select_related = ("tenant",)
    search_fields = ("code", "name")
    ordering = ("tenant", "code")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                free=Count("codes", filter=Q(codes__member__isnull=True)),
                assigned=Count("codes", filter=Q(codes__member__isnull=False)),
            )
        )

    @admin.display(description="free codes", ordering="free")
    def free_codes(self, obj):
        return getattr(obj, "free", None)

    @admin.display(description="assigned codes", ordering="assigned")
    def assigned_codes(self, obj):
        return getattr(obj, "assigned", None)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "code", "name")
        return ("tenant", "code", "name", "free_codes", "assigned_codes", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("code", "name", "free_codes", "assigned_codes", "created_at")

    def has_upload_permission(self, request, obj=None) -> bool:
        return self.role_allows(request, PROGRAM_ROLES) and self.in_scope(request, obj)

    def service_write(self, request, obj, form):
        return services.coupon_pool_create(
            tenant=self.form_tenant(request, obj, form), code=form.cleaned_data["code"], name=form.cleaned_data["name"]
        )

    def get_urls(self):
        info = (self.opts.app_label, self.opts.model_name)
        custom = [
            path(
                "<path:object_id>/codes/",
                self.admin_site.admin_view(self.codes_upload_view),
                name="{}_{}_codes".format(*info),
            )
        ]
        return custom + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        pool = self.get_object(request, unquote(object_id))
        extra_context = {**(extra_context or {}), "can_upload": self.has_upload_permission(request, pool)}
        return super().change_view(request, object_id, form_url, extra_context)

    def codes_upload_view(self, request, object_id):
        pool = self.get_object(request, unquote(object_id))
        if not self.has_upload_permission(request, pool):
            raise PermissionDenied
        if request.method == "POST":
            form = CodesUploadForm(request.POST, request.FILES)
            if form.is_valid():
                codes = form.cleaned_data["code_list"]
                try:
                    added = services.coupon_codes_add(tenant=pool.tenant, pool=pool, codes=codes)
                except DomainError as exc:
                    where = exc.field or ""
                    if where.startswith("codes."):
                        form.add_error(None, f"Code {int(where.split('.')[1]) + 1}: {exc.message}")
                    else:
                        form.add_error(None, exc.message)
                else:
                    skipped = len(codes) - added
                    self.log_operation(request, pool, f"{added} codes added.")
                    self.message_user(
                        request,
                        f"{added} code(s) added; {skipped} already in the pool or repeated.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(_change_url(self.admin_site, pool))
        else:
            form = CodesUploadForm()
        counts = pool.codes.aggregate(
            free=Count("pk", filter=Q(member__isnull=True)), assigned=Count("pk", filter=Q(member__isnull=False))
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Add codes: {pool}",
            "opts": self.opts,
            "original": pool,
            "form": form,
            "counts": counts,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/campaigns/couponpool/codes_upload.html", context)


@admin.register(CouponCode)
class CouponCodeAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ("code", "pool", "member", "assigned_at", "tenant")
    list_filter = (("pool", admin.RelatedOnlyFieldListFilter), "tenant")
    list_select_related = ("pool", "member", "tenant")
    search_fields = ("code__exact", "member__external_ref__exact")
    search_help_text = "Exact code or memberRef."
    ordering = ("pool", "pk")
    show_full_result_count = False
    readonly_fields = ("tenant", "pool", "code", "member", "assigned_at")


# What campaigns issued -----------------------------------------------------------------


@admin.register(Incentive)
class IncentiveAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = (
        "issued_at",
        "type",
        "status",
        "reward_amount",
        "reward_currency",
        "member",
        "campaign",
        "event_id",
        "tenant",
    )
    list_filter = ("type", "status", ("campaign", admin.RelatedOnlyFieldListFilter), "tenant")
    list_select_related = ("member", "campaign", "tenant")
    search_fields = ("member__external_ref__exact", "event_id__exact")
    search_help_text = "Exact memberRef or eventId."
    date_hierarchy = "issued_at"
    ordering = ("-issued_at", "-pk")
    show_full_result_count = False
    readonly_fields = [f.name for f in Incentive._meta.fields]


@admin.register(QuestProgress)
class QuestProgressAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ("occurred_at", "campaign", "member", "action_code", "event_id", "completed_at", "tenant")
    list_filter = (("campaign", admin.RelatedOnlyFieldListFilter), "tenant")
    list_select_related = ("campaign", "member", "tenant")
    search_fields = ("member__external_ref__exact", "event_id__exact")
    search_help_text = "Exact memberRef or eventId."
    ordering = ("-occurred_at", "-pk")
    show_full_result_count = False
    readonly_fields = [f.name for f in QuestProgress._meta.fields]


@admin.register(CampaignMemberUsage)
class CampaignMemberUsageAdmin(ReadOnlyAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """What each member has had from a campaign per cap period: why a cap was reached."""

    list_display = ("campaign", "member", "period_start", "rewards", "amount", "tenant")
    list_filter = (("campaign", admin.RelatedOnlyFieldListFilter), "tenant")
    list_select_related = ("campaign", "member", "tenant")
    search_fields = ("member__external_ref__exact",)
    search_help_text = "Exact memberRef."
    ordering = ("-period_start", "-pk")
    show_full_result_count = False
    readonly_fields = [f.name for f in CampaignMemberUsage._meta.fields]
