"""The VIP tiers back office: tenant scoping, roles, names per locale (right to left for
Arabic and Hebrew), benefits validated by the service and shown on their fields, writes
through the services (versions, `vip_tier.updated`), the policy, and members' tier history."""

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from rewards.models import OutboxEvent
from tenants.models import Operator
from tests.campaigns.helpers import ingest, purchase
from tests.factories import OperatorFactory
from tiers import services
from tiers.models import Tier, TierAssignment, TierHistory, TierPolicy

pytestmark = pytest.mark.django_db


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


def login_operator(client, tenant, role: str) -> Operator:
    operator = OperatorFactory(tenant=tenant, role=role)
    client.force_login(operator.user)
    return operator


def make_tier(tenant, tier_id="gold", names=None, **fields) -> Tier:
    return services.tier_create(tenant=tenant, tier_id=tier_id, names=names or {"en": tier_id.title()}, **fields)


def tier_data(**overrides) -> dict:
    """The tier editor as a browser posts it (unchecked boxes are absent)."""
    data = {
        "tier_id": "gold",
        "names.en": "Gold",
        "names.ar": "ذهبي",
        "names.he": "זהב",
        "names:new_locale": "",
        "names:new_name": "",
        "min_points": "5000",
        "rank": "2",
        "earn_multiplier": "1.5",
        "discount_percentage": "10",
        "exclusive_access": "on",
        "bonus_points": "20",
        "custom_perks": "Birthday gift\n\n  Lounge access  \n",
        "_save": "Save",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def form_errors(response) -> dict:
    assert response.status_code == 200, response.status_code
    return response.context["adminform"].form.errors


def input_tag(html: str, name: str) -> str:
    (tag,) = re.findall(rf'<input[^>]*name="{re.escape(name)}"[^>]*>', html)
    return tag


# Scoping and roles -----------------------------------------------------------------------


def test_operator_sees_only_own_tenants_tiers(client, tenant, other_tenant):
    mine = make_tier(tenant, "gold")
    theirs = make_tier(other_tenant, "secret-tier")
    login_operator(client, tenant, Operator.Role.VIEWER)

    response = client.get(url("tiers_tier_changelist"))

    assert response.status_code == 200
    assert [t.pk for t in response.context["cl"].result_list] == [mine.pk]
    assert "secret-tier" not in response.content.decode()
    assert client.get(url("tiers_tier_change", theirs.pk)).status_code == 404


def test_another_tenants_policy_history_and_assignments_are_not_found(client, tenant, other_tenant):
    make_tier(other_tenant, "base", min_points=0)
    ingest(other_tenant, purchase("p-1", "their-member", amount="10.00"))
    policy = services.tier_policy_get(tenant=other_tenant)
    history = TierHistory.objects.get(tenant=other_tenant)
    assignment = TierAssignment.objects.get(tenant=other_tenant)
    login_operator(client, tenant, Operator.Role.OWNER)

    assert client.get(url("tiers_tierpolicy_change", policy.pk)).status_code == 404
    assert client.get(url("tiers_tierhistory_change", history.pk)).status_code == 404
    assert client.get(url("tiers_tierassignment_change", assignment.pk)).status_code == 404
    assert client.post(url("tiers_tierpolicy_change", policy.pk), {"qualification": "ROLLING"}).status_code == 404
    assert list(client.get(url("tiers_tierhistory_changelist")).context["cl"].result_list) == []


def test_tier_list_shows_the_name_and_the_members_in_each_tier(client, tenant):
    make_tier(tenant, "base", names={"en": "Base", "ar": "أساسي"}, min_points=0)
    make_tier(tenant, "silver", names={"ar": "فضي", "en": "Silver"}, min_points=1000)
    for ref in ("m-1", "m-2"):
        ingest(tenant, purchase(f"p-{ref}", ref, amount="10.00"))
    ingest(tenant, purchase("p-big", "m-3", amount="1500.00"))
    login_operator(client, tenant, Operator.Role.VIEWER)

    response = client.get(url("tiers_tier_changelist"))

    admin = response.context["cl"].model_admin
    rows = {t.tier_id: (admin.display_name(t), t.member_count) for t in response.context["cl"].result_list}
    assert rows == {"base": ("Base", 2), "silver": ("Silver", 1)}


def test_viewer_reads_tiers_but_cannot_add_or_change(client, tenant):
    tier = make_tier(
        tenant,
        "gold",
        names={"en": "Gold", "ar": "ذهبي"},
        min_points=5000,
        benefits={"custom_perks": ["Lounge access"]},
    )
    login_operator(client, tenant, Operator.Role.VIEWER)

    page = client.get(url("tiers_tier_change", tier.pk))
    posted = client.post(url("tiers_tier_change", tier.pk), tier_data(min_points="1"))
    added = client.post(url("tiers_tier_add"), tier_data(tier_id="new"))

    html = page.content.decode()
    assert page.status_code == 200 and not page.context["has_change_permission"]
    assert 'name="names.en"' not in html
    assert '<span class="tier-name" dir="rtl" lang="ar"><b>ar</b>: ذهبي</span>' in html
    assert "Lounge access" in html
    assert posted.status_code == 403 and added.status_code == 403
    tier.refresh_from_db()
    assert (tier.min_points, tier.version) == (5000, 1)
    assert list(Tier.objects.filter(tenant=tenant).values_list("tier_id", flat=True)) == ["gold"]
    assert not OutboxEvent.objects.filter(type="vip_tier.updated").exists()


# The editor ------------------------------------------------------------------------------


def test_owner_creates_a_tier_with_names_in_three_locales_shown_right_to_left(client, tenant):
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("tiers_tier_add"), tier_data())

    assert response.status_code == 302, form_errors(response)
    tier = Tier.objects.get(tenant=tenant, tier_id="gold")
    assert tier.names == {"en": "Gold", "ar": "ذهبي", "he": "זהב"}
    assert tier.benefits == {"bonus_points": 20, "custom_perks": ["Birthday gift", "Lounge access"]}
    assert (tier.min_points, tier.earn_multiplier, tier.discount_percentage) == (5000, Decimal("1.5"), 10)
    assert (tier.exclusive_access, tier.free_shipping, tier.version) == (True, False, 1)
    assert OutboxEvent.objects.filter(tenant=tenant, type="vip_tier.created", data__tierId="gold").exists()

    html = client.get(url("tiers_tier_change", tier.pk)).content.decode()

    ar, he, en = input_tag(html, "names.ar"), input_tag(html, "names.he"), input_tag(html, "names.en")
    assert 'dir="rtl"' in ar and 'lang="ar"' in ar and 'value="ذهبي"' in ar
    assert 'dir="rtl"' in he and 'lang="he"' in he and 'value="זהב"' in he
    assert 'dir="ltr"' in en
    assert 'name="names:new_locale"' in html
    assert 'name="custom_perks"' in html and "Birthday gift\nLounge access" in html


def test_the_editor_offers_the_tenants_default_locale_and_every_locale_the_tier_has(client, tenant):
    tenant.default_locale = "fa"
    tenant.save(update_fields=["default_locale"])
    tier = make_tier(tenant, "gold", names={"fa": "طلایی", "fr": "Or"})
    login_operator(client, tenant, Operator.Role.MANAGER)

    html = client.get(url("tiers_tier_change", tier.pk)).content.decode()

    offered = re.findall(r'name="names\.([A-Za-z-]+)"', html)
    assert offered == ["en", "ar", "he", "fa", "fr"]
    assert 'dir="rtl"' in input_tag(html, "names.fa")
    assert 'value="Or"' in input_tag(html, "names.fr") and 'dir="ltr"' in input_tag(html, "names.fr")


def test_another_locale_is_added_from_the_extra_row(client, tenant):
    tier = make_tier(tenant, "gold", names={"en": "Gold"})
    login_operator(client, tenant, Operator.Role.OWNER)
    data = tier_data(**{"names.ar": "", "names.he": "", "names:new_locale": "pt-BR", "names:new_name": "Ouro"})
    data.pop("tier_id")

    response = client.post(url("tiers_tier_change", tier.pk), data)

    assert response.status_code == 302, form_errors(response)
    tier.refresh_from_db()
    assert tier.names == {"en": "Gold", "pt-BR": "Ouro"}


@pytest.mark.parametrize(
    ("new_locale", "new_name", "message"),
    [("fr", "", "give both"), ("", "Or", "give both"), ("not a tag", "Or", "BCP 47"), ("en", "Gold", "already")],
)
def test_an_incomplete_or_bad_extra_locale_is_refused(client, tenant, new_locale, new_name, message):
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(
        url("tiers_tier_add"), tier_data(**{"names:new_locale": new_locale, "names:new_name": new_name})
    )

    assert message in " ".join(form_errors(response)["names"])
    assert not Tier.objects.exists()
    # Shown again as typed.
    assert f'value="{new_name}"' in input_tag(response.content.decode(), "names:new_name")


def test_the_services_name_rules_show_on_the_names(client, tenant):
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("tiers_tier_add"), tier_data(**{"names.en": ""}))  # Arabic and Hebrew only

    assert "Give at least the name in en" in " ".join(form_errors(response)["names"])
    assert not Tier.objects.exists()
    assert 'value="ذهبي"' in input_tag(response.content.decode(), "names.ar")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"bonus_points": "-5"}, "bonus_points", "whole number from 0"),
        ({"custom_perks": "\n".join(f"perk {n}" for n in range(51))}, "custom_perks", "at most 50"),
        ({"custom_perks": "x" * 201}, "custom_perks", "200 characters"),
    ],
)
def test_bad_benefits_are_an_inline_error_and_nothing_is_saved(client, tenant, overrides, field, message):
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("tiers_tier_add"), tier_data(**overrides))

    errors = form_errors(response)
    assert list(errors) == [field]
    assert message in " ".join(errors[field])
    assert not Tier.objects.exists()
    assert not OutboxEvent.objects.filter(type__startswith="vip_tier.").exists()


def test_bad_benefits_on_an_update_change_nothing(client, tenant):
    tier = make_tier(tenant, "gold", benefits={"bonus_points": 20})
    login_operator(client, tenant, Operator.Role.OWNER)
    data = tier_data(bonus_points="-1", min_points="1")
    data.pop("tier_id")

    response = client.post(url("tiers_tier_change", tier.pk), data)

    assert "whole number from 0" in " ".join(form_errors(response)["bonus_points"])
    tier.refresh_from_db()
    assert (tier.min_points, tier.benefits["bonus_points"], tier.version) == (0, 20, 1)
    assert not OutboxEvent.objects.filter(type="vip_tier.updated").exists()


@pytest.mark.parametrize(("tier_id", "message"), [("gold", "already exists"), ("Not An Id", "lowercase letters")])
def test_a_taken_or_malformed_tier_id_is_an_error_on_the_field(client, tenant, other_tenant, tier_id, message):
    make_tier(tenant, "gold")
    make_tier(other_tenant, "silver")
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("tiers_tier_add"), tier_data(tier_id=tier_id))

    errors = form_errors(response)
    assert list(errors) == ["tier_id"] and message in " ".join(errors["tier_id"])
    assert Tier.objects.filter(tenant=tenant).count() == 1
    # Another tenant's tierId is free to take.
    assert client.post(url("tiers_tier_add"), tier_data(tier_id="silver")).status_code == 302


def test_an_update_bumps_the_version_and_announces_only_the_changed_fields(client, tenant):
    tier = make_tier(
        tenant,
        "gold",
        names={"en": "Gold", "ar": "ذهبي", "he": "זהב"},
        min_points=5000,
        rank=2,
        earn_multiplier=Decimal("1.5"),
        discount_percentage=10,
        exclusive_access=True,
        benefits={"bonus_points": 20, "custom_perks": ["Birthday gift", "Lounge access"]},
    )
    login_operator(client, tenant, Operator.Role.MANAGER)
    data = tier_data(min_points="6000", bonus_points="25")
    data.pop("tier_id")

    response = client.post(url("tiers_tier_change", tier.pk), data)

    assert response.status_code == 302, form_errors(response)
    tier.refresh_from_db()
    assert (tier.version, tier.min_points, tier.benefits["bonus_points"]) == (2, 6000, 25)
    (event,) = OutboxEvent.objects.filter(tenant=tenant, type="vip_tier.updated")
    assert event.data["tierId"] == "gold" and event.data["version"] == 2
    assert sorted(event.data["updatedFields"]) == ["benefits", "minPoints"]


def test_saving_without_a_change_writes_nothing(client, tenant):
    tier = make_tier(tenant, "gold", names={"en": "Gold", "ar": "ذهبي", "he": "זהב"}, min_points=5000)
    login_operator(client, tenant, Operator.Role.OWNER)
    data = tier_data(
        min_points="5000", rank="0", earn_multiplier="1", discount_percentage="0", bonus_points="0", custom_perks=""
    )
    data.pop("tier_id")
    data.pop("exclusive_access")

    response = client.post(url("tiers_tier_change", tier.pk), data)

    assert response.status_code == 302, form_errors(response)
    tier.refresh_from_db()
    assert tier.version == 1
    assert not OutboxEvent.objects.filter(type="vip_tier.updated").exists()


# The policy ------------------------------------------------------------------------------


def test_an_operator_goes_straight_to_the_policy_and_changes_it_through_the_service(client, tenant):
    login_operator(client, tenant, Operator.Role.OWNER)

    listed = client.get(url("tiers_tierpolicy_changelist"))
    assert listed.status_code == 302 and listed.url == url("tiers_tierpolicy_change", tenant.pk)

    response = client.post(
        listed.url, {"qualification": "ROLLING", "window_months": "6", "downgrade_grace_days": "30", "_save": "Save"}
    )

    assert response.status_code == 302, form_errors(response)
    policy = TierPolicy.objects.get(tenant=tenant)
    assert (policy.qualification, policy.window_months, policy.downgrade_grace_days) == ("ROLLING", 6, 30)


def test_a_policy_out_of_range_is_refused_and_a_viewer_cannot_change_it(client, tenant):
    login_operator(client, tenant, Operator.Role.OWNER)
    change = url("tiers_tierpolicy_change", tenant.pk)
    client.get(url("tiers_tierpolicy_changelist"))

    response = client.post(change, {"qualification": "ROLLING", "window_months": "500", "downgrade_grace_days": "0"})

    assert "window_months" in form_errors(response)
    assert TierPolicy.objects.get(tenant=tenant).qualification == "LIFETIME"

    login_operator(client, tenant, Operator.Role.VIEWER)
    assert client.post(change, {"qualification": "ROLLING", "window_months": "6"}).status_code == 403
    assert client.get(url("tiers_tierpolicy_add")).status_code == 403


# Members' tiers --------------------------------------------------------------------------


def test_tier_history_shows_a_member_earning_past_a_tier(client, tenant, other_tenant):
    make_tier(tenant, "base", min_points=0)
    make_tier(tenant, "silver", min_points=1000)
    make_tier(tenant, "gold", min_points=5000)
    make_tier(other_tenant, "base", min_points=0)
    ingest(other_tenant, purchase("o-1", "m-1", amount="10.00"))  # the same memberRef elsewhere
    ingest(tenant, purchase("p-1", "m-1", amount="400.00"))
    ingest(tenant, purchase("p-2", "m-1", amount="700.00"))  # 1,100 points: silver
    ingest(tenant, purchase("p-3", "m-2", amount="10.00"))
    login_operator(client, tenant, Operator.Role.VIEWER)

    response = client.get(url("tiers_tierhistory_changelist"), {"q": "m-1"})

    assert response.status_code == 200
    rows = [
        (h.member.external_ref, h.from_tier_id and h.from_tier.tier_id, h.to_tier.tier_id, h.reason)
        for h in response.context["cl"].result_list
    ]
    assert rows == [("m-1", "base", "silver", "upgrade"), ("m-1", None, "base", "default")]
    assert response.context["cl"].result_list[0].event_id == "p-2"
    assert response.context["cl"].result_list[0].qualifying_points == 1100

    silver = Tier.objects.get(tenant=tenant, tier_id="silver")
    upgrades = client.get(url("tiers_tierhistory_changelist"), {"to_tier__id__exact": silver.pk, "reason": "upgrade"})
    assert [h.member.external_ref for h in upgrades.context["cl"].result_list] == ["m-1"]


def test_a_members_tier_page_shows_the_tier_the_history_and_qualifying_points(client, tenant):
    make_tier(tenant, "base", min_points=0)
    make_tier(tenant, "silver", names={"en": "Silver"}, min_points=1000)
    make_tier(tenant, "gold", names={"en": "Gold"}, min_points=5000)
    ingest(tenant, purchase("p-1", "m-1", amount="1200.00"))
    assignment = TierAssignment.objects.get(member__tenant=tenant, member__external_ref="m-1")
    login_operator(client, tenant, Operator.Role.VIEWER)

    listed = client.get(url("tiers_tierassignment_changelist"), {"q": "m-1"})
    response = client.get(url("tiers_tierassignment_change", assignment.pk))

    assert [a.tier.tier_id for a in listed.context["cl"].result_list] == ["silver"]
    assert response.status_code == 200
    assert response.context["tier_summary"]["qualifying_points"] == 1200
    assert response.context["tier_summary"]["next_tier"]["points_to_go"] == 3800
    assert [(h.to_tier.tier_id, h.reason) for h in response.context["tier_history"]] == [
        ("silver", "upgrade"),
        ("base", "default"),
    ]
    html = response.content.decode()
    assert 'class="qualifying-points">1200<' in html
    assert html.count('class="tier-history-row"') == 2
    assert "?q=m-1" in html
    assert 'name="_save"' not in html
