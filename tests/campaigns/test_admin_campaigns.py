"""The campaigns back office: tenant scoping, roles, the builder's writes through the
services, the lifecycle buttons, the dry-run preview, cohorts and the catalogs."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from campaigns import cohorts, services
from campaigns.admin import COHORT_RULE_TEMPLATES, RULE_TEMPLATES
from campaigns.models import (
    Action,
    Campaign,
    CampaignMemberUsage,
    CampaignStats,
    Cohort,
    CohortMember,
    CohortRun,
    CouponCode,
    CouponPool,
    Incentive,
)
from campaigns.rules import RULE_SCHEMA, RuleContext, rule_check
from rewards.api.events import event_validate
from rewards.earning import event_ingest
from rewards.models import InboundEvent, OutboxEvent, Transfer
from tenants.models import Operator
from tests.campaigns.helpers import campaign_admin_form
from tests.factories import MemberFactory, OperatorFactory

pytestmark = pytest.mark.django_db

POINTS_ON_PURCHASE = {"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "POINTS", "points": 100}}


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


def login_operator(client, tenant, role: str) -> Operator:
    operator = OperatorFactory(tenant=tenant, role=role)
    client.force_login(operator.user)
    return operator


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def make_campaign(tenant, *, name="Welcome", rule=None, type="SIMPLE", **fields) -> Campaign:
    return services.campaign_create(
        tenant=tenant,
        name=name,
        type=type,
        start_at=fields.pop("start_at", timezone.now() - timedelta(days=30)),
        rule_json=rule or POINTS_ON_PURCHASE,
        **fields,
    )


def purchase(tenant, event_id: str, member_ref: str, amount="20.00", **extra):
    body = {
        "type": "transaction.created",
        "event_id": event_id,
        "member_ref": member_ref,
        "amount": amount,
        "currency": "USD",
        "occurred_at": (timezone.now() - timedelta(days=1)).isoformat(),
        **extra,
    }
    return event_ingest(tenant=tenant, event=event_validate(body))


def builder_data(rule, **overrides) -> dict:
    """The builder form as a browser posts it."""
    return campaign_admin_form(rule, **{"name": "Double dining", "priority": "5", **overrides})


def form_errors(response) -> dict:
    assert response.status_code == 200, response.status_code
    return response.context["adminform"].form.errors


# Scoping -------------------------------------------------------------------------------


def test_operator_sees_only_own_tenants_campaigns(client, tenant, other_tenant):
    mine = make_campaign(tenant, name="Mine")
    theirs = make_campaign(other_tenant, name="Theirs-secret")
    login_operator(client, tenant, Operator.Role.VIEWER)

    response = client.get(url("campaigns_campaign_changelist"))

    assert response.status_code == 200
    assert [c.pk for c in response.context["cl"].result_list] == [mine.pk]
    assert "Theirs-secret" not in response.content.decode()
    assert client.get(url("campaigns_campaign_change", theirs.pk)).status_code == 404


def test_campaign_list_shows_what_was_issued(client, tenant):
    campaign = make_campaign(tenant)
    CampaignStats.objects.filter(campaign=campaign).update(rewards_issued=3, amount_issued=Decimal("300"))
    login_operator(client, tenant, Operator.Role.VIEWER)

    response = client.get(url("campaigns_campaign_changelist"), {"status__exact": "DRAFT"})

    (row,) = response.context["cl"].result_list
    admin = response.context["cl"].model_admin
    assert (admin.rewards_issued(row), admin.amount_issued(row)) == (3, Decimal("300"))


@pytest.mark.parametrize(
    ("route", "method"),
    [
        ("campaigns_campaign_change", "get"),
        ("campaigns_campaign_preview", "get"),
        ("campaigns_campaign_activate", "post"),
        ("campaigns_campaign_history", "get"),
        ("campaigns_cohort_change", "get"),
        ("campaigns_cohort_members", "post"),
        ("campaigns_cohort_recompute", "post"),
        ("campaigns_couponpool_change", "get"),
        ("campaigns_couponpool_codes", "post"),
        ("campaigns_action_change", "get"),
    ],
)
def test_another_tenants_objects_are_not_found(client, tenant, other_tenant, route, method):
    objects = {
        "campaign": make_campaign(other_tenant),
        "cohort": cohorts.cohort_create(tenant=other_tenant, name="VIP", code="vip", kind="STATIC", member_refs=[]),
        "couponpool": services.coupon_pool_create(tenant=other_tenant, code="welcome", name="Welcome"),
        "action": services.action_upsert(tenant=other_tenant, code="app.login")[0],
    }
    login_operator(client, tenant, Operator.Role.OWNER)
    obj = objects[route.split("_")[1]]

    response = getattr(client, method)(url(route, obj.pk), {"refs": "x", "codes": "x"} if method == "post" else {})

    assert response.status_code == 404
    assert Campaign.objects.get(tenant=other_tenant).status == Campaign.Status.DRAFT
    assert not CouponCode.objects.exists()


def test_cohort_choices_in_the_builder_are_the_operators_tenants(client, tenant, other_tenant):
    mine = cohorts.cohort_create(tenant=tenant, name="Mine", code="mine", kind="STATIC", member_refs=[])
    cohorts.cohort_create(tenant=other_tenant, name="Theirs", code="theirs", kind="STATIC", member_refs=[])
    login_operator(client, tenant, Operator.Role.OWNER)

    form = client.get(url("campaigns_campaign_add")).context["adminform"].form

    assert list(form.fields["cohort"].queryset) == [mine]
    assert form.fields["tenant"].disabled


# The builder ---------------------------------------------------------------------------


def test_a_bad_rule_is_an_inline_error_naming_its_path_and_creates_nothing(client, tenant):
    login_operator(client, tenant, Operator.Role.OWNER)
    bad = {"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "POINTS", "points": 0}}

    response = client.post(url("campaigns_campaign_add"), builder_data(bad))

    errors = form_errors(response)
    assert list(errors) == ["rule_json"]
    (message,) = errors["rule_json"]
    assert message.startswith("reward.points: ")
    assert "reward.points: " in response.content.decode()
    # The operator's JSON comes back as typed, to be fixed.
    assert json.loads(response.context["adminform"].form["rule_json"].value()) == bad
    assert not Campaign.objects.exists()
    assert not CampaignStats.objects.exists()


@pytest.mark.parametrize(
    ("rule", "campaign_type", "path"),
    [
        # Checks beyond the schema, made by the service against the tenant's catalogs.
        (
            {
                "trigger": {"eventTypes": ["action"], "actionCodes": ["app.nope"]},
                "reward": {"type": "POINTS", "points": 5},
            },
            "SIMPLE",
            "trigger.actionCodes.0: ",
        ),
        (
            {"trigger": {"eventTypes": ["action"]}, "reward": {"type": "COUPON", "pool": "none"}},
            "SIMPLE",
            "reward.pool: ",
        ),
        ({"trigger": {"eventTypes": ["action"]}, "reward": {"type": "POINTS", "points": 5}}, "QUEST", "quest: "),
        (
            {
                "trigger": {"eventTypes": ["transaction.created"]},
                "conditions": {">=": [{"var": "event.nope"}, 5]},
                "reward": {"type": "POINTS", "points": 5},
            },
            "SIMPLE",
            "conditions.>=.0.var: ",
        ),
    ],
)
def test_the_services_refusals_name_the_failing_part_of_the_rule(client, tenant, rule, campaign_type, path):
    login_operator(client, tenant, Operator.Role.MANAGER)

    response = client.post(url("campaigns_campaign_add"), builder_data(rule, type=campaign_type))

    (message,) = form_errors(response)["rule_json"]
    assert message.startswith(path), message
    assert not Campaign.objects.exists()


def test_json_that_does_not_parse_is_a_field_error(client, tenant):
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("campaigns_campaign_add"), builder_data('{"reward": '))

    assert "rule_json" in form_errors(response)
    assert response.context["adminform"].form["rule_json"].value() == '{"reward": '
    assert not Campaign.objects.exists()


def test_other_refusals_land_on_their_fields(client, tenant):
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(
        url("campaigns_campaign_add"),
        builder_data(POINTS_ON_PURCHASE, end_at_0="2025-12-31", end_at_1="00:00:00"),
    )

    assert "end_at" in form_errors(response)
    assert not Campaign.objects.exists()


def test_a_good_rule_creates_a_draft_campaign_through_the_service(client, tenant, other_tenant):
    login_operator(client, tenant, Operator.Role.MANAGER)
    services.action_upsert(tenant=tenant, code="app.login")
    rule = {"quest": {"steps": [{"actionCode": "app.login", "count": 3}]}, "reward": {"type": "POINTS", "points": 50}}

    response = client.post(
        url("campaigns_campaign_add"), builder_data(rule, type="QUEST", tenant=other_tenant.pk, status="ACTIVE")
    )

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    campaign = Campaign.objects.get()
    assert (campaign.tenant, campaign.status, campaign.type) == (tenant, Campaign.Status.DRAFT, "QUEST")
    assert (campaign.name, campaign.priority, campaign.rule_json) == ("Double dining", 5, rule)
    # The service made its stats row, where the budget is counted.
    assert CampaignStats.objects.filter(campaign=campaign, rewards_issued=0).exists()
    assert any("was added successfully" in m for m in messages_of(response))


def test_superuser_creates_a_campaign_for_the_tenant_chosen(client, platform_admin, tenant, other_tenant):
    theirs = cohorts.cohort_create(tenant=other_tenant, name="Theirs", code="theirs", kind="STATIC", member_refs=[])
    client.force_login(platform_admin)

    wrong_cohort = client.post(
        url("campaigns_campaign_add"), builder_data(POINTS_ON_PURCHASE, tenant=tenant.pk, cohort=theirs.pk)
    )
    created = client.post(url("campaigns_campaign_add"), builder_data(POINTS_ON_PURCHASE, tenant=other_tenant.pk))

    # The service refuses another tenant's cohort; the refusal lands on the cohort field.
    assert "cohort" in form_errors(wrong_cohort)
    assert created.status_code == 302
    assert Campaign.objects.get().tenant == other_tenant


def test_the_builder_shows_the_rule_pretty_printed_with_templates_and_the_schema(client, tenant):
    campaign = make_campaign(tenant)
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.get(url("campaigns_campaign_change", campaign.pk))
    page = response.content.decode()

    # Pretty-printed, in reading order (PostgreSQL stores the keys reordered).
    shown = response.context["adminform"].form["rule_json"].value()
    assert shown == json.dumps(POINTS_ON_PURCHASE, indent=2)
    assert "monospace" in page
    assert all(template["label"] in page for template in RULE_TEMPLATES)
    assert url("campaigns_campaign_rule_schema") in page
    assert "campaigns/rule_json.js" in page
    schema = client.get(url("campaigns_campaign_rule_schema"))
    assert schema.status_code == 200
    assert schema.json() == json.loads(json.dumps(RULE_SCHEMA))


@pytest.mark.parametrize("template", RULE_TEMPLATES, ids=lambda t: t["key"])
def test_each_rule_template_is_a_valid_rule_for_its_type(template):
    # Structure only: the action codes and pools it names are the operator's to adjust.
    assert rule_check(template["rule"], campaign_type=template["campaignType"], context=RuleContext())


@pytest.mark.parametrize("template", COHORT_RULE_TEMPLATES, ids=lambda t: t["key"])
def test_each_cohort_rule_template_is_a_valid_cohort_rule(template):
    assert cohorts.cohort_rule_check(template["rule"])


def test_editing_goes_through_the_service_and_makes_a_new_version(client, tenant):
    campaign = make_campaign(tenant, name="Before")
    login_operator(client, tenant, Operator.Role.OWNER)
    rule = {"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "POINTS", "multiplier": "2"}}

    response = client.post(url("campaigns_campaign_change", campaign.pk), builder_data(rule, name="After"))

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.name, campaign.rule_json, campaign.version) == ("After", rule, 2)
    assert campaign.status == Campaign.Status.DRAFT


def test_a_bad_edit_changes_nothing(client, tenant):
    campaign = make_campaign(tenant, name="Before")
    login_operator(client, tenant, Operator.Role.OWNER)
    bad = {"trigger": {"eventTypes": ["action"]}, "reward": {"type": "CASHBACK", "percent": "5"}}

    response = client.post(url("campaigns_campaign_change", campaign.pk), builder_data(bad, name="After"))

    (message,) = form_errors(response)["rule_json"]
    assert message.startswith("reward.percent: ")
    campaign.refresh_from_db()
    assert (campaign.name, campaign.rule_json, campaign.version) == ("Before", POINTS_ON_PURCHASE, 1)


def test_status_is_read_only_in_the_builder(client, tenant):
    campaign = make_campaign(tenant)
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(
        url("campaigns_campaign_change", campaign.pk), builder_data(POINTS_ON_PURCHASE, status="ACTIVE")
    )

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


# Lifecycle -----------------------------------------------------------------------------


def test_activate_and_pause_buttons_change_the_status(client, tenant):
    campaign = make_campaign(tenant)
    login_operator(client, tenant, Operator.Role.OWNER)

    page = client.get(url("campaigns_campaign_change", campaign.pk)).content.decode()
    activated = client.post(url("campaigns_campaign_activate", campaign.pk))
    campaign.refresh_from_db()
    status_after_activate = campaign.status
    paused_page = client.get(url("campaigns_campaign_change", campaign.pk)).content.decode()
    paused = client.post(url("campaigns_campaign_pause", campaign.pk))
    campaign.refresh_from_db()

    assert url("campaigns_campaign_activate", campaign.pk) in page
    assert url("campaigns_campaign_pause", campaign.pk) not in page
    assert activated.status_code == 302
    assert activated["Location"] == url("campaigns_campaign_change", campaign.pk)
    assert status_after_activate == Campaign.Status.ACTIVE
    assert any("activated" in m for m in messages_of(activated))
    assert url("campaigns_campaign_pause", campaign.pk) in paused_page
    assert campaign.status == Campaign.Status.PAUSED
    assert any("paused" in m for m in messages_of(paused))


def test_an_illegal_transition_is_an_error_message_and_changes_nothing(client, tenant):
    campaign = make_campaign(tenant)
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("campaigns_campaign_pause", campaign.pk), follow=True)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    (message,) = response.context["messages"]
    assert message.level_tag == "error"
    assert "Cannot pause a campaign that is DRAFT" in message.message


def test_lifecycle_buttons_only_take_a_post(client, tenant):
    campaign = make_campaign(tenant)
    login_operator(client, tenant, Operator.Role.OWNER)

    assert client.get(url("campaigns_campaign_activate", campaign.pk)).status_code == 405
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_an_ended_campaign_is_read_only(client, tenant):
    campaign = make_campaign(tenant, name="Over")
    services.campaign_activate(tenant=tenant, campaign=campaign)
    login_operator(client, tenant, Operator.Role.OWNER)

    ended = client.post(url("campaigns_campaign_end", campaign.pk))
    page = client.get(url("campaigns_campaign_change", campaign.pk))
    edit = client.post(url("campaigns_campaign_change", campaign.pk), builder_data(POINTS_ON_PURCHASE, name="Again"))

    assert ended.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.status, campaign.name) == (Campaign.Status.ENDED, "Over")
    assert page.status_code == 200
    assert 'name="rule_json"' not in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert not page.context["lifecycle_actions"]
    assert edit.status_code == 403


def test_support_reads_campaigns_but_neither_edits_them_nor_runs_the_lifecycle(client, tenant):
    campaign = make_campaign(tenant)
    login_operator(client, tenant, Operator.Role.SUPPORT)

    page = client.get(url("campaigns_campaign_change", campaign.pk))
    response = client.post(url("campaigns_campaign_activate", campaign.pk))

    assert page.status_code == 200
    assert 'name="rule_json"' not in page.content.decode()
    assert url("campaigns_campaign_activate", campaign.pk) not in page.content.decode()
    assert response.status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_a_manager_edits_campaigns_and_runs_the_lifecycle(client, tenant):
    campaign = make_campaign(tenant)
    login_operator(client, tenant, Operator.Role.MANAGER)

    page = client.get(url("campaigns_campaign_change", campaign.pk))
    response = client.post(url("campaigns_campaign_activate", campaign.pk))

    assert 'name="rule_json"' in page.content.decode()
    assert url("campaigns_campaign_activate", campaign.pk) in page.content.decode()
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.ACTIVE


def test_viewer_cannot_change_campaigns(client, tenant):
    campaign = make_campaign(tenant, name="Keep")
    login_operator(client, tenant, Operator.Role.VIEWER)

    page = client.get(url("campaigns_campaign_change", campaign.pk))
    add = client.get(url("campaigns_campaign_add"))
    edit = client.post(url("campaigns_campaign_change", campaign.pk), builder_data(POINTS_ON_PURCHASE, name="Changed"))
    activate = client.post(url("campaigns_campaign_activate", campaign.pk))
    create = client.post(url("campaigns_campaign_add"), builder_data(POINTS_ON_PURCHASE))

    assert page.status_code == 200
    assert 'name="rule_json"' not in page.content.decode()
    assert url("campaigns_campaign_activate", campaign.pk) not in page.content.decode()
    assert (add.status_code, edit.status_code, activate.status_code, create.status_code) == (403, 403, 403, 403)
    campaign.refresh_from_db()
    assert (campaign.name, campaign.status) == ("Keep", Campaign.Status.DRAFT)
    assert Campaign.objects.count() == 1


# Preview -------------------------------------------------------------------------------


def _written_rows(tenant) -> dict:
    return {
        "incentives": Incentive.objects.count(),
        "stats": list(CampaignStats.objects.values_list("campaign_id", "rewards_issued", "amount_issued")),
        "usage": CampaignMemberUsage.objects.count(),
        "outbox": OutboxEvent.objects.count(),
        "transfers": Transfer.objects.count(),
        "events": InboundEvent.objects.count(),
        "versions": list(Campaign.objects.values_list("pk", "version", "status")),
    }


def test_preview_shows_what_a_campaign_would_issue_on_past_events_and_writes_nothing(client, tenant):
    # given: past purchases, applied by the engine while no campaign was running
    purchase(tenant, "p-1", "alice", category="dining")
    purchase(tenant, "p-2", "bob", category="dining")
    purchase(tenant, "p-3", "alice", category="groceries")
    campaign = make_campaign(
        tenant,
        rule={
            "trigger": {"eventTypes": ["transaction.created"]},
            "conditions": {"==": [{"var": "event.category"}, "dining"]},
            "reward": {"type": "POINTS", "points": 100},
        },
        member_cap_rewards=5,
    )
    login_operator(client, tenant, Operator.Role.VIEWER)
    before = _written_rows(tenant)

    # when
    response = client.get(url("campaigns_campaign_preview", campaign.pk))
    alice = client.get(url("campaigns_campaign_preview", campaign.pk), {"last_n": 50, "member_ref": "alice"})

    # then
    assert response.status_code == 200
    result = response.context["result"]
    outcomes = {row["eventId"]: row["outcome"] for row in result["rows"]}
    assert outcomes == {"p-1": "issued", "p-2": "issued", "p-3": "conditions_not_met"}
    assert result["summary"]["issued"] == 2
    assert result["summary"]["points"] == 200
    page = response.content.decode()
    assert page.count('class="preview-row outcome-issued"') == 2
    assert "p-3" in page
    assert {row["eventId"] for row in alice.context["result"]["rows"]} == {"p-1", "p-3"}
    assert _written_rows(tenant) == before
    assert not Incentive.objects.exists()


def test_preview_of_an_active_campaign_spends_no_budget(client, tenant):
    purchase(tenant, "p-1", "alice")
    campaign = make_campaign(tenant, budget_rewards=1, member_cap_rewards=1)
    services.campaign_activate(tenant=tenant, campaign=campaign)
    login_operator(client, tenant, Operator.Role.OWNER)
    before = _written_rows(tenant)

    response = client.get(url("campaigns_campaign_preview", campaign.pk), {"last_n": 5})
    again = client.get(url("campaigns_campaign_preview", campaign.pk), {"last_n": 5})

    assert [row["outcome"] for row in response.context["result"]["rows"]] == ["issued"]
    # Had the first preview spent the budget of one, the second would find it exhausted.
    assert [row["outcome"] for row in again.context["result"]["rows"]] == ["issued"]
    assert _written_rows(tenant) == before


def test_preview_refuses_a_bad_form(client, tenant):
    campaign = make_campaign(tenant)
    login_operator(client, tenant, Operator.Role.VIEWER)

    response = client.get(url("campaigns_campaign_preview", campaign.pk), {"last_n": 0})

    assert response.status_code == 200
    assert "last_n" in response.context["form"].errors
    assert response.context["result"] is None


# Incentives and other records ----------------------------------------------------------


def test_incentives_are_read_only_scoped_and_searchable(client, tenant, other_tenant):
    for t in (tenant, other_tenant):
        services.campaign_activate(tenant=t, campaign=make_campaign(t, member_cap_rewards=5))
    purchase(tenant, "mine-1", "alice")
    purchase(tenant, "mine-2", "bob")
    purchase(other_tenant, "theirs-1", "carol")
    theirs = Incentive.objects.get(event_id="theirs-1")
    login_operator(client, tenant, Operator.Role.OWNER)

    listing = client.get(url("campaigns_incentive_changelist"))
    searched = client.get(url("campaigns_incentive_changelist"), {"q": "bob"})

    assert {i.event_id for i in listing.context["cl"].result_list} == {"mine-1", "mine-2"}
    assert "theirs-1" not in listing.content.decode()
    assert [i.event_id for i in searched.context["cl"].result_list] == ["mine-2"]
    assert client.get(url("campaigns_incentive_change", theirs.pk)).status_code == 404
    assert client.get(url("campaigns_incentive_add")).status_code == 403
    mine = Incentive.objects.get(event_id="mine-1")
    assert client.post(url("campaigns_incentive_delete", mine.pk), {"post": "yes"}).status_code == 403
    usage = client.get(url("campaigns_campaignmemberusage_changelist"))
    assert usage.status_code == 200
    assert {u.tenant_id for u in usage.context["cl"].result_list} == {tenant.pk}


def test_the_campaign_filter_lists_only_own_campaigns(client, tenant, other_tenant):
    services.campaign_activate(tenant=tenant, campaign=make_campaign(tenant, name="Ours"))
    services.campaign_activate(tenant=other_tenant, campaign=make_campaign(other_tenant, name="Rival-promo"))
    purchase(tenant, "mine-1", "alice")
    purchase(other_tenant, "theirs-1", "carol")
    login_operator(client, tenant, Operator.Role.VIEWER)

    response = client.get(url("campaigns_incentive_changelist"))

    assert "Ours" in response.content.decode()
    assert "Rival-promo" not in response.content.decode()


# Cohorts -------------------------------------------------------------------------------


def static_cohort(tenant, code="vip") -> Cohort:
    return cohorts.cohort_create(tenant=tenant, name=code.upper(), code=code, kind="STATIC", member_refs=[])


def dynamic_cohort(tenant, code="paris") -> Cohort:
    rule = {"==": [{"var": "member.attributes.city"}, "Paris"]}
    return cohorts.cohort_create(tenant=tenant, name=code.title(), code=code, kind="DYNAMIC", rule_json=rule)


def test_csv_upload_to_a_static_cohort_adds_members_and_reports_unknown_refs(client, tenant, other_tenant):
    for ref in ("m-1", "m-2", "m-3"):
        MemberFactory(tenant=tenant, external_ref=ref)
    MemberFactory(tenant=other_tenant, external_ref="elsewhere")
    cohort = static_cohort(tenant)
    login_operator(client, tenant, Operator.Role.MANAGER)
    csv_file = SimpleUploadedFile(
        "members.csv", b"email,memberRef\na@x.io,m-1\nb@x.io,m-2\nc@x.io,ghost\nd@x.io,elsewhere\n", "text/csv"
    )

    response = client.post(url("campaigns_cohort_members", cohort.pk), {"file": csv_file, "mode": "replace"})

    assert response.status_code == 200
    assert response.context["result"] == {"added": 2, "removed": 0, "unknown": ["ghost", "elsewhere"]}
    page = response.content.decode()
    assert "<code>ghost</code>" in page and "<code>elsewhere</code>" in page
    assert any("2 added, 0 removed. 2 unknown" in m for m in messages_of(response))
    members = CohortMember.objects.filter(cohort=cohort)
    assert set(members.values_list("member__external_ref", flat=True)) == {"m-1", "m-2"}
    cohort.refresh_from_db()
    assert cohort.member_count == 2


def test_a_plain_list_replaces_and_adding_keeps_the_rest(client, tenant):
    for ref in ("m-1", "m-2", "m-3"):
        MemberFactory(tenant=tenant, external_ref=ref)
    cohort = static_cohort(tenant)
    cohorts.cohort_members_set(tenant=tenant, cohort=cohort, member_refs=["m-1", "m-2"])
    login_operator(client, tenant, Operator.Role.OWNER)

    replaced = client.post(
        url("campaigns_cohort_members", cohort.pk),
        {"file": SimpleUploadedFile("refs.csv", b"m-3\r\n\r\nm-1\r\n"), "mode": "replace"},
    )
    added = client.post(url("campaigns_cohort_members", cohort.pk), {"refs": "m-2\n", "mode": "add"})

    assert replaced.context["result"] == {"added": 1, "removed": 1, "unknown": []}
    assert added.context["result"] == {"added": 1, "removed": 0, "unknown": []}
    refs = CohortMember.objects.filter(cohort=cohort).values_list("member__external_ref", flat=True)
    assert set(refs) == {"m-1", "m-2", "m-3"}


def test_a_csv_with_several_unnamed_columns_is_refused(client, tenant):
    cohort = static_cohort(tenant)
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(
        url("campaigns_cohort_members", cohort.pk),
        {"file": SimpleUploadedFile("x.csv", b"a,b\nc,d\n"), "mode": "replace"},
    )

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert response.context["result"] is None


def test_viewer_cannot_upload_members(client, tenant):
    MemberFactory(tenant=tenant, external_ref="m-1")
    cohort = static_cohort(tenant)
    login_operator(client, tenant, Operator.Role.VIEWER)

    page = client.get(url("campaigns_cohort_change", cohort.pk))
    response = client.post(url("campaigns_cohort_members", cohort.pk), {"refs": "m-1", "mode": "add"})

    assert url("campaigns_cohort_members", cohort.pk) not in page.content.decode()
    assert response.status_code == 403
    assert not CohortMember.objects.exists()


def test_recompute_button_queues_a_run_and_recent_runs_are_listed(client, tenant):
    cohort = dynamic_cohort(tenant)
    # The run its creation queued has finished.
    CohortRun.objects.filter(cohort=cohort).update(status=CohortRun.Status.SUCCEEDED, progress=100, added=4)
    operator = login_operator(client, tenant, Operator.Role.MANAGER)

    page = client.get(url("campaigns_cohort_change", cohort.pk))
    response = client.post(url("campaigns_cohort_recompute", cohort.pk), follow=True)

    assert url("campaigns_cohort_recompute", cohort.pk) in page.content.decode()
    assert [run.status for run in page.context["recent_runs"]] == [CohortRun.Status.SUCCEEDED]
    runs = CohortRun.objects.filter(cohort=cohort).order_by("created_at")
    assert [run.status for run in runs] == [CohortRun.Status.SUCCEEDED, CohortRun.Status.QUEUED]
    assert runs.last().requested_by == f"operator:{operator.user.username}"
    assert any("Recompute queued" in m.message for m in response.context["messages"])
    assert [run.status for run in response.context["recent_runs"]] == [
        CohortRun.Status.QUEUED,
        CohortRun.Status.SUCCEEDED,
    ]
    assert 'class="cohort-run status-queued"' in response.content.decode()


def test_recomputing_a_static_cohort_is_an_error_message(client, tenant):
    cohort = static_cohort(tenant)
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("campaigns_cohort_recompute", cohort.pk), follow=True)

    (message,) = response.context["messages"]
    assert message.level_tag == "error"
    assert not CohortRun.objects.exists()


def test_creating_a_dynamic_cohort_checks_its_rule_and_queues_a_recompute(client, tenant):
    login_operator(client, tenant, Operator.Role.OWNER)
    data = {"name": "Big spenders", "code": "big", "kind": "DYNAMIC"}

    bad = client.post(
        url("campaigns_cohort_add"), {**data, "rule_json": json.dumps({">=": [{"var": "event.amount"}, 5]})}
    )
    good = client.post(url("campaigns_cohort_add"), {**data, "rule_json": json.dumps(COHORT_RULE_TEMPLATES[0]["rule"])})

    (message,) = form_errors(bad)["rule_json"]
    assert message.startswith(">=.0.var: ")
    assert good.status_code == 302
    cohort = Cohort.objects.get()
    assert (cohort.tenant, cohort.kind, cohort.rule_json) == (tenant, "DYNAMIC", COHORT_RULE_TEMPLATES[0]["rule"])
    assert CohortRun.objects.filter(cohort=cohort, status=CohortRun.Status.QUEUED).count() == 1


def test_a_static_cohort_is_created_without_a_rule(client, tenant):
    login_operator(client, tenant, Operator.Role.OWNER)
    data = {"name": "VIP", "code": "vip", "kind": "STATIC"}

    with_rule = client.post(url("campaigns_cohort_add"), {**data, "rule_json": json.dumps({"==": [1, 1]})})
    created = client.post(url("campaigns_cohort_add"), {**data, "rule_json": ""})
    duplicate = client.post(url("campaigns_cohort_add"), {**data, "rule_json": ""})

    assert "rule_json" in form_errors(with_rule)
    assert created.status_code == 302
    assert "code" in form_errors(duplicate) or form_errors(duplicate).get("__all__")
    cohort = Cohort.objects.get()
    assert (cohort.kind, cohort.rule_json, cohort.member_count) == ("STATIC", {}, 0)


def test_editing_a_dynamic_cohorts_rule_checks_it_and_queues_a_recompute(client, tenant):
    cohort = dynamic_cohort(tenant)
    CohortRun.objects.filter(cohort=cohort).update(status=CohortRun.Status.SUCCEEDED)
    login_operator(client, tenant, Operator.Role.OWNER)
    new_rule = {"==": [{"var": "member.attributes.city"}, "Lyon"]}

    page = client.get(url("campaigns_cohort_change", cohort.pk))
    self_ref = client.post(
        url("campaigns_cohort_change", cohort.pk),
        {"name": "Paris", "rule_json": json.dumps({"in": ["paris", {"var": "member.cohorts"}]})},
    )
    changed = client.post(
        url("campaigns_cohort_change", cohort.pk), {"name": "Lyon", "rule_json": json.dumps(new_rule)}
    )

    assert page.context["adminform"].form["rule_json"].value() == json.dumps(cohort.rule_json, indent=2)
    (message,) = form_errors(self_ref)["rule_json"]
    assert message.startswith("in.0: ")
    assert changed.status_code == 302
    cohort.refresh_from_db()
    assert (cohort.name, cohort.rule_json) == ("Lyon", new_rule)
    assert CohortRun.objects.filter(cohort=cohort, status=CohortRun.Status.QUEUED).count() == 1


def test_cohort_list_shows_kind_and_count(client, tenant, other_tenant):
    MemberFactory(tenant=tenant, external_ref="m-1")
    cohort = static_cohort(tenant)
    cohorts.cohort_members_set(tenant=tenant, cohort=cohort, member_refs=["m-1"])
    static_cohort(other_tenant, code="rival")
    login_operator(client, tenant, Operator.Role.VIEWER)

    response = client.get(url("campaigns_cohort_changelist"))

    assert [(c.code, c.kind, c.member_count) for c in response.context["cl"].result_list] == [("vip", "STATIC", 1)]


# Catalogs ------------------------------------------------------------------------------


def test_owner_adds_actions_and_support_cannot(client, tenant):
    login_operator(client, tenant, Operator.Role.OWNER)

    created = client.post(url("campaigns_action_add"), {"code": "app.login", "description": "Logged in"})
    duplicate = client.post(url("campaigns_action_add"), {"code": "app.login", "description": "Again"})
    bad = client.post(url("campaigns_action_add"), {"code": "has space", "description": ""})
    login_operator(client, tenant, Operator.Role.SUPPORT)
    refused = client.post(url("campaigns_action_add"), {"code": "app.open", "description": ""})

    assert created.status_code == 302
    assert form_errors(duplicate)
    assert "code" in form_errors(bad)
    assert refused.status_code == 403
    assert list(Action.objects.values_list("tenant", "code", "description")) == [(tenant.pk, "app.login", "Logged in")]


def test_coupon_pool_is_created_and_filled_through_the_services(client, tenant):
    login_operator(client, tenant, Operator.Role.MANAGER)

    created = client.post(url("campaigns_couponpool_add"), {"code": "welcome-10", "name": "Welcome 10%"})
    pool = CouponPool.objects.get()
    pasted = client.post(url("campaigns_couponpool_codes", pool.pk), {"codes": "AAA\nBBB\nAAA\n"})
    uploaded = client.post(
        url("campaigns_couponpool_codes", pool.pk),
        {"file": SimpleUploadedFile("codes.csv", b"code,value\nBBB,10\nCCC,10\n")},
    )
    listing = client.get(url("campaigns_couponpool_changelist"))

    assert created.status_code == 302
    assert (pool.tenant, pool.code) == (tenant, "welcome-10")
    assert pasted.status_code == 302
    assert any("2 code(s) added; 1 already" in m for m in messages_of(pasted))
    assert uploaded.status_code == 302
    assert set(CouponCode.objects.filter(pool=pool).values_list("code", flat=True)) == {"AAA", "BBB", "CCC"}
    (row,) = listing.context["cl"].result_list
    assert (row.free, row.assigned) == (3, 0)


def test_a_coupon_campaign_needs_an_existing_pool_and_issues_its_codes(client, tenant):
    pool = services.coupon_pool_create(tenant=tenant, code="welcome-10", name="Welcome")
    services.coupon_codes_add(tenant=tenant, pool=pool, codes=["ONLY-ONE"])
    login_operator(client, tenant, Operator.Role.OWNER)
    rule = {"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "COUPON", "pool": "welcome-10"}}

    client.post(url("campaigns_campaign_add"), builder_data(rule))
    campaign = Campaign.objects.get()
    client.post(url("campaigns_campaign_activate", campaign.pk))
    purchase(tenant, "p-1", "alice")
    listing = client.get(url("campaigns_couponpool_changelist"))

    (row,) = listing.context["cl"].result_list
    assert (row.free, row.assigned) == (0, 1)
    assert Incentive.objects.get().coupon.code == "ONLY-ONE"


def test_operator_admin_index_lists_the_campaign_models(client, tenant):
    login_operator(client, tenant, Operator.Role.VIEWER)

    response = client.get(url("index"))

    models = {m["object_name"] for app in response.context["app_list"] for m in app["models"]}
    expected = {"Campaign", "Cohort", "CohortRun", "Action", "CouponPool", "CouponCode", "Incentive", "QuestProgress"}
    assert expected | {"CampaignMemberUsage"} <= models


def test_renaming_a_static_cohort_keeps_its_members_and_queues_nothing(client, tenant):
    MemberFactory(tenant=tenant, external_ref="m-1")
    cohort = static_cohort(tenant)
    cohorts.cohort_members_set(tenant=tenant, cohort=cohort, member_refs=["m-1"])
    login_operator(client, tenant, Operator.Role.MANAGER)

    page = client.get(url("campaigns_cohort_change", cohort.pk))
    response = client.post(url("campaigns_cohort_change", cohort.pk), {"name": "Very important"})

    assert 'name="rule_json"' not in page.content.decode()
    assert response.status_code == 302
    cohort.refresh_from_db()
    assert (cohort.name, cohort.kind, cohort.rule_json, cohort.member_count) == ("Very important", "STATIC", {}, 1)
    assert not CohortRun.objects.exists()
