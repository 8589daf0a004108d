"""VIP tiers through the API (seed 004): create, read in the caller's locale, replace and
update (with `vip_tier.updated`), validation of names and benefits, the tier policy, and who
may do what."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from rewards.models import OutboxEvent
from tests.core.shapes import assert_error
from tiers import services
from tiers.models import Tier, TierPolicy

pytestmark = pytest.mark.django_db

GOLD = {
    "tierId": "gold",
    "names": {"en": "Gold", "ar": "ذهبي", "he": "זהב"},
    "minPoints": 1000,
    "discountPercentage": "12.50",
    "freeShipping": True,
    "exclusiveAccess": False,
    "benefits": {"bonusPoints": 100, "customPerks": ["Lounge access"]},
    "earnMultiplier": "1.5",
    "rank": 2,
}


def create(client, **overrides):
    response = client.post("/api/v1/tiers", {**GOLD, **overrides}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


# Create and read ------------------------------------------------------------------------


def test_a_tier_is_created_with_every_field_and_announced(api_client, tenant):
    body = create(api_client)

    assert body == {
        "tierId": "gold",
        "name": "Gold",
        "names": {"en": "Gold", "ar": "ذهبي", "he": "זהב"},
        "locale": "en",
        "minPoints": 1000,
        "discountPercentage": "12.50",
        "freeShipping": True,
        "exclusiveAccess": False,
        "benefits": {"bonusPoints": 100, "customPerks": ["Lounge access"]},
        "earnMultiplier": "1.500",
        "rank": 2,
        "version": 1,
        "createdAt": body["createdAt"],
        "updatedAt": body["updatedAt"],
    }
    tier = Tier.objects.get(tenant=tenant, tier_id="gold")
    assert tier.discount_percentage == Decimal("12.50")
    assert tier.earn_multiplier == Decimal("1.5")
    # stored as the seed spells it: snake_case inside the JSON
    assert tier.benefits == {"bonus_points": 100, "custom_perks": ["Lounge access"]}
    event = OutboxEvent.objects.get(tenant=tenant, type="vip_tier.created")
    assert event.data["tierId"] == "gold"
    assert event.data["eventId"] == str(event.event_id)


def test_a_taken_tier_id_is_a_409(api_client):
    create(api_client)

    assert_error(api_client.post("/api/v1/tiers", GOLD, format="json"), 409, code="tier_exists", attr="tierId")


def test_defaults_apply_when_only_the_id_and_names_are_given(api_client):
    response = api_client.post("/api/v1/tiers", {"tierId": "starter", "names": {"en": "Starter"}}, format="json")

    assert response.status_code == 201, response.json()
    starter = response.json()
    assert (starter["minPoints"], starter["discountPercentage"], starter["earnMultiplier"]) == (0, "0.00", "1.000")
    assert starter["benefits"] == {"bonusPoints": 0, "customPerks": []}
    assert (starter["freeShipping"], starter["exclusiveAccess"], starter["rank"]) == (False, False, 0)


def test_the_list_is_ordered_by_min_points(api_client):
    create(api_client, tierId="platinum", minPoints=5000)
    create(api_client, tierId="silver", minPoints=100)
    create(api_client, tierId="gold", minPoints=1000)

    listed = api_client.get("/api/v1/tiers").json()

    assert [t["tierId"] for t in listed["results"]] == ["silver", "gold", "platinum"]
    assert listed["count"] == 3


def test_an_unknown_tier_is_a_404(api_client):
    assert_error(api_client.get("/api/v1/tiers/nothing"), 404, code="tier_not_found")
    assert_error(api_client.get("/api/v1/tiers/NOT_AN_ID"), 404, code="tier_not_found")


def test_tier_names_keep_their_language_tags(api_client):
    names = {"en": "Gold", "pt-BR": "Ouro", "zh-Hant-TW": "金"}
    body = create(api_client, names=names)

    assert body["names"] == names
    assert api_client.get("/api/v1/tiers/gold?locale=pt-BR").json()["name"] == "Ouro"


# Locale negotiation --------------------------------------------------------------------


def test_accept_language_ar_returns_the_arabic_name(api_client):
    create(api_client)

    response = api_client.get("/api/v1/tiers/gold", HTTP_ACCEPT_LANGUAGE="ar")

    assert (response.json()["name"], response.json()["locale"]) == ("ذهبي", "ar")
    assert "Accept-Language" in response["Vary"]
    listed = api_client.get("/api/v1/tiers", HTTP_ACCEPT_LANGUAGE="ar").json()["results"]
    assert [(t["name"], t["locale"]) for t in listed] == [("ذهبي", "ar")]


@pytest.mark.parametrize(
    ("names", "query", "accept", "expected"),
    [
        # q-values: the most wanted available language wins
        ({"en": "Gold", "ar": "ذهبي", "fr": "Or"}, "", "fr;q=0.5, ar;q=0.9, de", "ar"),
        ({"en": "Gold", "ar": "ذهبي"}, "", "de, ar;q=0", "en"),
        # ?locale= beats Accept-Language
        ({"en": "Gold", "ar": "ذهبي"}, "?locale=en", "ar", "en"),
        ({"en": "Gold", "he": "זהב"}, "?locale=he", "en", "he"),
        # ar matches ar-EG, and ar-EG matches ar, by the primary subtag
        ({"en": "Gold", "ar-EG": "ذهبي"}, "", "ar", "ar-EG"),
        ({"en": "Gold", "ar": "ذهبي"}, "?locale=ar-EG", "", "ar"),
        ({"en": "Gold", "ar": "ذهبي", "ar-EG": "ذهبي مصري"}, "?locale=ar-eg", "", "ar-EG"),
        # an unknown locale falls back to English
        ({"en": "Gold", "ar": "ذهبي"}, "?locale=xx", "de-DE, *", "en"),
        ({"en": "Gold", "ar": "ذهبي"}, "?locale=!!", "garbage;q=abc", "en"),
    ],
)
def test_the_name_is_in_the_negotiated_locale(api_client, names, query, accept, expected):
    create(api_client, names=names)

    body = api_client.get(f"/api/v1/tiers/gold{query}", HTTP_ACCEPT_LANGUAGE=accept).json()

    assert body["locale"] == expected
    assert body["name"] == names[expected]


def test_an_unknown_locale_falls_back_to_the_tenants_default_then_english_then_any(api_client, tenant):
    tenant.default_locale = "he"
    tenant.save(update_fields=["default_locale"])
    create(api_client, tierId="gold", names={"en": "Gold", "he": "זהב"})
    create(api_client, tierId="silver", names={"en": "Silver", "fr": "Argent"}, minPoints=1)
    create(api_client, tierId="bronze", names={"he": "ארד", "fr": "Bronze"}, minPoints=2)
    Tier.objects.filter(tier_id="bronze").update(names={"fr": "Bronze", "de": "Bronze-de"})

    shown = {t["tierId"]: t["locale"] for t in api_client.get("/api/v1/tiers?locale=xx").json()["results"]}

    assert shown == {"gold": "he", "silver": "en", "bronze": "de"}


# Replace and update --------------------------------------------------------------------


def test_put_replaces_every_field_and_announces_the_changed_ones(api_client, tenant):
    create(api_client)

    response = api_client.put(
        "/api/v1/tiers/gold",
        {"names": {"en": "Gold+", "ar": "ذهبي"}, "minPoints": 1000, "discountPercentage": "15"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    # absent fields took their defaults
    assert body["benefits"] == {"bonusPoints": 0, "customPerks": []}
    assert (body["freeShipping"], body["earnMultiplier"], body["rank"]) == (False, "1.000", 0)
    assert (body["name"], body["discountPercentage"], body["version"]) == ("Gold+", "15.00", 2)
    event = OutboxEvent.objects.get(tenant=tenant, type="vip_tier.updated")
    assert event.data == {
        "eventId": str(event.event_id),
        "tierId": "gold",
        "updatedFields": ["names", "discountPercentage", "freeShipping", "benefits", "earnMultiplier", "rank"],
        "version": 2,
        "updatedAt": event.data["updatedAt"],
    }
    assert event.data["updatedAt"].endswith("Z")


def test_patch_changes_only_the_fields_given(api_client, tenant):
    create(api_client)

    response = api_client.patch("/api/v1/tiers/gold", {"benefits": {"bonusPoints": 250}}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["benefits"] == {"bonusPoints": 250, "customPerks": []}
    assert (body["minPoints"], body["discountPercentage"], body["version"]) == (1000, "12.50", 2)
    event = OutboxEvent.objects.get(tenant=tenant, type="vip_tier.updated")
    assert event.data["updatedFields"] == ["benefits"]


def test_a_patch_that_changes_nothing_keeps_the_version_and_announces_nothing(api_client, tenant):
    create(api_client)

    response = api_client.patch("/api/v1/tiers/gold", {"discountPercentage": "12.5", "minPoints": 1000}, format="json")

    assert response.json()["version"] == 1
    assert not OutboxEvent.objects.filter(tenant=tenant, type="vip_tier.updated").exists()


def test_the_tier_id_cannot_change(api_client):
    create(api_client)

    response = api_client.put("/api/v1/tiers/gold", {"tierId": "silver", "names": {"en": "x"}}, format="json")

    assert_error(response, 400, attr="tierId")
    assert api_client.get("/api/v1/tiers/gold").json()["name"] == "Gold"


def test_put_needs_the_names(api_client):
    create(api_client)

    assert_error(api_client.put("/api/v1/tiers/gold", {"minPoints": 5}, format="json"), 400, attr="names")


# Validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("benefits", "attr"),
    [
        ({"bonusPoints": -1}, "benefits.bonusPoints"),
        ({"bonusPoints": 1.5}, "benefits.bonusPoints"),
        ({"bonusPoints": "100"}, "benefits.bonusPoints"),
        ({"bonusPoints": True}, "benefits.bonusPoints"),
        ({"customPerks": "lounge"}, "benefits.customPerks"),
        ({"customPerks": ["ok", 3]}, "benefits.customPerks"),
        ({"customPerks": [""]}, "benefits.customPerks"),
        ({"cashback": 5}, "benefits"),
        ("lots", "benefits"),
        ([], "benefits"),
    ],
)
def test_benefits_are_checked_against_their_schema(api_client, benefits, attr):
    response = api_client.post("/api/v1/tiers", {**GOLD, "benefits": benefits}, format="json")

    body = assert_error(response, 400, attr=attr)
    assert not Tier.objects.exists(), body


def test_an_unknown_benefit_is_named_as_the_wire_spells_it(api_client):
    body = assert_error(
        api_client.post("/api/v1/tiers", {**GOLD, "benefits": {"cashBack": 5}}, format="json"), 400, attr="benefits"
    )

    assert "cashBack" in body["errors"][0]["detail"]


@pytest.mark.parametrize(
    ("names", "code"),
    [
        ({}, "invalid"),
        ("Gold", "invalid"),
        ({"ar": "ذهبي"}, "default_locale_missing"),
        ({"en": ""}, "blank"),
        ({"en": "   "}, "blank"),
        ({"en": 5}, "blank"),
        ({"en": "Gold", "not a tag": "x"}, "invalid_locale"),
        ({"en": "Gold", "AR": "x"}, "invalid_locale"),
        ({"en": "Gold", "pt-BR": "Ouro", "pt-br": "Ouro"}, "duplicate_locale"),
        ({"en": "G" * 101}, "max_length"),
    ],
)
def test_names_need_a_valid_locale_each_and_english_or_the_default(api_client, names, code):
    response = api_client.post("/api/v1/tiers", {**GOLD, "names": names}, format="json")

    assert_error(response, 400, code=code, attr="names")


def test_the_tenants_default_locale_can_stand_in_for_english(api_client, tenant):
    tenant.default_locale = "ar"
    tenant.save(update_fields=["default_locale"])

    body = create(api_client, names={"ar": "ذهبي"})

    assert (body["name"], body["locale"]) == ("ذهبي", "ar")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("discountPercentage", "100.01"),
        ("discountPercentage", "-1"),
        ("discountPercentage", "1.005"),
        ("minPoints", -1),
        ("earnMultiplier", "-0.5"),
        ("rank", 40000),
        ("tierId", "Gold Tier"),
    ],
)
def test_out_of_range_fields_are_refused(api_client, field, value):
    assert_error(api_client.post("/api/v1/tiers", {**GOLD, field: value}, format="json"), 400, attr=field)


def test_the_database_refuses_benefits_that_break_the_schema(tenant):
    if connection.vendor != "postgresql":
        pytest.skip("the CHECK is PostgreSQL's")
    tier = services.tier_create(tenant=tenant, tier_id="gold", names={"en": "Gold"})

    with pytest.raises(IntegrityError), transaction.atomic():
        Tier.objects.filter(pk=tier.pk).update(benefits={"bonus_points": -5})


def test_the_service_refuses_float_money(tenant):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.tier_create(tenant=tenant, tier_id="gold", names={"en": "Gold"}, discount_percentage=12.5)


# Who may do what -----------------------------------------------------------------------


def test_another_tenant_cannot_see_or_change_a_tier(api_client, other_client):
    create(api_client)

    assert_error(other_client.get("/api/v1/tiers/gold"), 404)
    assert_error(other_client.patch("/api/v1/tiers/gold", {"rank": 9}, format="json"), 404)
    assert other_client.get("/api/v1/tiers").json()["results"] == []
    assert api_client.get("/api/v1/tiers/gold").json()["rank"] == 2


def test_the_same_tier_id_in_two_tenants_is_two_tiers(api_client, other_client):
    create(api_client)
    create(other_client, names={"en": "Their gold"})

    assert api_client.get("/api/v1/tiers/gold").json()["name"] == "Gold"
    assert other_client.get("/api/v1/tiers/gold").json()["name"] == "Their gold"


def test_a_member_app_reads_tiers_in_its_language_but_cannot_write(api_client, member_client):
    create(api_client)

    assert member_client.get("/api/v1/tiers/gold", HTTP_ACCEPT_LANGUAGE="he").json()["name"] == "זהב"
    assert member_client.get("/api/v1/tiers").status_code == 200
    assert_error(member_client.post("/api/v1/tiers", {**GOLD, "tierId": "x"}, format="json"), 403)
    assert_error(member_client.patch("/api/v1/tiers/gold", {"rank": 1}, format="json"), 403)
    assert_error(member_client.get("/api/v1/tier-policy"), 403)


def test_no_credentials_get_a_401(db):
    from rest_framework.test import APIClient

    assert_error(APIClient().get("/api/v1/tiers"), 401)


def test_a_viewer_operator_reads_but_cannot_write(tenant, api_client):
    from tests.conftest import PASSWORD, basic_auth
    from tests.factories import OperatorFactory

    create(api_client)
    viewer = OperatorFactory(tenant=tenant, role="VIEWER")
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(viewer.user.username, PASSWORD))

    assert client.get("/api/v1/tiers/gold").status_code == 200
    assert_error(client.patch("/api/v1/tiers/gold", {"rank": 1}, format="json"), 403)


# Tier policy ---------------------------------------------------------------------------


def test_the_tier_policy_starts_lifetime_and_can_be_replaced(api_client, tenant):
    first = api_client.get("/api/v1/tier-policy")

    assert first.status_code == 200
    assert {k: first.json()[k] for k in ("qualification", "windowMonths", "downgradeGraceDays")} == {
        "qualification": "LIFETIME",
        "windowMonths": 12,
        "downgradeGraceDays": 0,
    }
    assert TierPolicy.objects.filter(tenant=tenant).count() == 1

    response = api_client.put(
        "/api/v1/tier-policy", {"qualification": "ROLLING", "windowMonths": 6, "downgradeGraceDays": 30}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["qualification"] == "ROLLING"
    policy = TierPolicy.objects.get(tenant=tenant)
    assert (policy.qualification, policy.window_months, policy.downgrade_grace_days) == ("ROLLING", 6, 30)


@pytest.mark.parametrize(
    ("body", "attr"),
    [
        ({"qualification": "FOREVER"}, "qualification"),
        ({"qualification": "ROLLING", "windowMonths": 0}, "windowMonths"),
        ({"qualification": "ROLLING", "windowMonths": 121}, "windowMonths"),
        ({"qualification": "LIFETIME", "downgradeGraceDays": -1}, "downgradeGraceDays"),
        ({}, "qualification"),
    ],
)
def test_an_invalid_policy_is_refused(api_client, body, attr):
    assert_error(api_client.put("/api/v1/tier-policy", body, format="json"), 400, attr=attr)


def test_each_tenant_has_its_own_policy(api_client, other_client):
    api_client.put("/api/v1/tier-policy", {"qualification": "ROLLING", "windowMonths": 3}, format="json")

    assert other_client.get("/api/v1/tier-policy").json()["qualification"] == "LIFETIME"
