"""Every tenant-scoped admin model, tried by an owner of tenant A against a tenant B that has
rows of every kind: none of B's rows in A's lists, none of B's objects opens, and no form
offers one of B's objects to pick."""

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.forms import ModelChoiceField, ModelMultipleChoiceField
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from campaigns.cohorts import cohort_create, cohort_recompute_request
from campaigns.models import CohortRun
from campaigns.services import coupon_codes_add, coupon_pool_create
from core.admin_scoping import TenantScopedAdminMixin
from core.roles import OWNER
from insights.models import ReconciliationDrift
from insights.reconciliation import reconcile_tenant
from rewards.models import CreditPackage, CreditPurchase, Member
from tenants.models import Tenant
from tests.campaigns.helpers import action, action_rule, campaign_make, ingest
from tests.factories import OperatorFactory
from tests.test_admin_roles import world
from tiers.models import TierPolicy

pytestmark = pytest.mark.django_db

SCOPED = sorted(
    (model_admin for model_admin in admin.site._registry.values() if isinstance(model_admin, TenantScopedAdminMixin)),
    key=lambda model_admin: model_admin.opts.label,
)


@pytest.fixture
def tenants(tenant, capsys, settings):
    """A (the caller's, with a little of everything) and B (the demo tenant: everything
    `make run` seeds, plus one of each thing the back office acts on)."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # world's endpoints point at 127.0.0.1
    world(tenant)
    call_command("seed_demo", members=4)
    other = Tenant.objects.get(slug="demo")
    world(other)  # before the demo's own tiers, which leave an existing gold alone
    call_command("seed_demo_tiers")
    call_command("seed_demo_campaigns")
    call_command("seed_demo_catalog")
    call_command("seed_demo_redemptions")
    call_command("seed_demo_insights", members=2)
    activity(other)
    capsys.readouterr()
    return tenant, other


def activity(tenant) -> None:
    """What the seeds leave out: incentives under a member cap, quest progress, a cohort run,
    coupons, a credit purchase and the tier policy."""
    member = Member.objects.filter(tenant=tenant).order_by("external_ref").first()
    campaign_make(tenant, rule=action_rule("app.login", points=5), member_cap_rewards=3, member_cap_period="WEEK")
    ingest(tenant, action("every-model-1", member.external_ref, occurredAt=timezone.now().isoformat()))
    cohort = cohort_create(
        tenant=tenant,
        name="Parisians",
        code="paris",
        kind="DYNAMIC",
        rule_json={"==": [{"var": "member.attributes.city"}, "Paris"]},
    )
    if not CohortRun.objects.filter(cohort=cohort).exists():
        cohort_recompute_request(tenant=tenant, cohort=cohort, requested_by="test")
    pool = coupon_pool_create(tenant=tenant, code="spring", name="Spring")
    coupon_codes_add(tenant=tenant, pool=pool, codes=["SPRING-1", "SPRING-2"])
    package = CreditPackage.objects.filter(tenant=tenant).first()
    CreditPurchase.objects.create(
        tenant=tenant,
        member=member,
        package=package,
        amount_paid=package.price,
        currency=package.currency,
        points_awarded=package.reward_points,
    )
    TierPolicy.objects.get_or_create(tenant=tenant)
    # A reconciliation run that found drift (a hand-made one: the seeded books agree).
    run = reconcile_tenant(tenant=tenant)
    ReconciliationDrift.objects.create(
        tenant=tenant, run=run, kind="ITEM_STOCK", object_type="catalog.Item", object_id="x", stored=1, computed=2
    )


_operators: dict = {}


def theirs(model_admin, tenant) -> list:
    """The rows an owner of `tenant` sees in this admin (its own scoping says what is theirs)."""
    if tenant.pk not in _operators:
        _operators.clear()
        _operators[tenant.pk] = OperatorFactory(tenant=tenant, role=OWNER).user
    request = RequestFactory().get("/admin/")
    request.user = _operators[tenant.pk]
    return list(model_admin.get_queryset(request)[:50])


def change_url(model_admin, obj) -> str:
    return reverse(f"admin:{model_admin.opts.app_label}_{model_admin.opts.model_name}_change", args=[obj.pk])


def test_the_other_tenant_has_rows_of_every_scoped_model(tenants):
    _, other = tenants
    empty = [model_admin.opts.label for model_admin in SCOPED if not theirs(model_admin, other)]
    assert len(SCOPED) > 30
    assert not empty, f"the isolation tests below would prove nothing for {empty}"


def test_no_list_shows_another_tenants_rows_and_none_of_them_opens(client, tenants):
    mine, other = tenants
    client.force_login(OperatorFactory(tenant=mine, role=OWNER).user)

    checked = 0
    for model_admin in SCOPED:
        label = model_admin.opts.label
        changelist = reverse(f"admin:{model_admin.opts.app_label}_{model_admin.opts.model_name}_changelist")
        page = client.get(changelist, follow=True)  # a one-per-tenant model opens its own row
        assert page.status_code == 200, label
        html = page.content.decode()
        rows = theirs(model_admin, other)
        for obj in rows:
            assert change_url(model_admin, obj) not in html, f"{label}: B's {obj.pk} listed"
        for obj in rows[:3]:
            assert client.get(change_url(model_admin, obj)).status_code == 404, f"{label}: B's {obj.pk} opened"
            checked += 1
    assert checked > 60


def test_no_form_offers_another_tenants_objects_to_pick(tenants):
    mine, other = tenants
    request = RequestFactory().get("/admin/")
    request.user = OperatorFactory(tenant=mine, role=OWNER).user
    offered = 0
    for model_admin in SCOPED:
        objects = theirs(model_admin, mine)
        forms = [model_admin.get_form(request)] if model_admin.has_add_permission(request) else []
        if objects and model_admin.has_change_permission(request, objects[0]):
            forms.append(model_admin.get_form(request, objects[0], change=True))
        for form_class in forms:
            for name, field in form_class.base_fields.items():
                if not isinstance(field, ModelChoiceField | ModelMultipleChoiceField):
                    continue
                related = field.queryset.model
                foreign = [a for a in SCOPED if a.model is related]
                if not foreign:
                    continue
                their_pks = [obj.pk for obj in theirs(foreign[0], other)]
                assert their_pks, f"{related._meta.label}: B has none to be offered"
                assert not field.queryset.filter(pk__in=their_pks).exists(), (
                    f"{model_admin.opts.label}.{name} offers B's {related._meta.label}"
                )
                offered += 1
    assert offered > 10
