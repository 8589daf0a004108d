"""Catalog search (seed 003): full-text over names and descriptions, typos forgiven by
trigrams, ranked; one tenant never finds another's items; cached results never hide an edit."""

import pytest
from rest_framework.test import APIClient

from catalog import search, services
from catalog.models import Item
from core.rls import WALL_QUERIES
from rewards.services import member_token_issue, points_adjust
from tests.catalog.helpers import item, put_in_tier, tier_ladder
from tests.core.shapes import assert_error
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

SEARCH = "/api/v1/catalog/search"


def client_of(member) -> APIClient:
    token, _ = member_token_issue(member=member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def found(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["name"] for row in response.json()["results"]]


@pytest.fixture
def shelf(tenant):
    return {
        "headphones": item(tenant, "Headphones", 2500, description="Over-ear, noise cancelling."),
        "earbuds": item(tenant, "Wireless Earbuds", 1500, description="Pairs with any headphones adapter."),
        "speaker": item(tenant, "Bluetooth Speaker", 1800, description="Waterproof, twelve hours."),
        "mug": item(tenant, "Coffee Mug", 300, names={"ar": "كوب قهوة"}, description="Ceramic."),
    }


def test_a_typo_still_finds_the_item(api_client, shelf):
    typo = api_client.get(SEARCH, {"q": "headphnes"})
    assert found(typo)[0] == "Headphones"
    assert typo["X-Search-Match"] == "similar"
    assert api_client.get(SEARCH, {"q": "headphones"})["X-Search-Match"] == "fulltext"
    assert found(api_client.get(SEARCH, {"q": "speakr"})) == ["Bluetooth Speaker"]


def test_words_match_as_prefixes_and_a_name_match_ranks_above_a_description_match(api_client, shelf):
    # "Headphones" has the word in its name, "Wireless Earbuds" only in its description
    assert found(api_client.get(SEARCH, {"q": "headphone"})) == ["Headphones", "Wireless Earbuds"]
    assert found(api_client.get(SEARCH, {"q": "waterproof"})) == ["Bluetooth Speaker"]
    assert found(api_client.get(SEARCH, {"q": "wireless earbuds"})) == ["Wireless Earbuds"]


def test_localized_names_are_searched(api_client, shelf):
    assert found(api_client.get(SEARCH, {"q": "قهوة"})) == ["Coffee Mug"]


def test_results_are_ranked_best_first(api_client, tenant):
    item(tenant, "Camping Lantern", 900, description="Not a tent, but good in one.")
    item(tenant, "Tent", 4000, description="Two-person tent, tent pegs included.")

    assert found(api_client.get(SEARCH, {"q": "tent"})) == ["Tent", "Camping Lantern"]


def test_a_tenant_never_finds_another_tenants_items(api_client, other_client, other_tenant, shelf):
    item(other_tenant, "Headphones Deluxe", 9000)

    mine = found(api_client.get(SEARCH, {"q": "headphones"}))
    theirs = found(other_client.get(SEARCH, {"q": "headphones"}))

    assert "Headphones Deluxe" not in mine
    assert theirs == ["Headphones Deluxe"]


@pytest.mark.django_db(transaction=True)  # the cache is retired on commit, as in production
def test_an_edit_shows_in_the_next_search_despite_the_cache(api_client, shelf):
    first = api_client.get(SEARCH, {"q": "speaker"})
    again = api_client.get(SEARCH, {"q": "speaker"})
    assert (first["X-Cache"], again["X-Cache"]) == ("MISS", "HIT")
    assert found(again) == ["Bluetooth Speaker"]

    # when an operator renames the speaker and adds another
    services.item_update(item=shelf["speaker"], expected_version=1, fields={"name": "Bluetooth Boombox"})
    item(Item.objects.get(pk=shelf["mug"].pk).tenant, "Smart Speaker", 5000)

    # then the next search sees both changes
    after = api_client.get(SEARCH, {"q": "speaker"})
    assert after["X-Cache"] == "MISS"
    assert found(after) == ["Smart Speaker"]
    assert found(api_client.get(SEARCH, {"q": "boombox"})) == ["Bluetooth Boombox"]


@pytest.mark.django_db(transaction=True)  # the cache is retired on commit, as in production
def test_a_change_made_outside_the_services_also_retires_the_cache(api_client, shelf):
    assert found(api_client.get(SEARCH, {"q": "mug"})) == ["Coffee Mug"]

    mug = Item.objects.get(pk=shelf["mug"].pk)
    mug.is_active = False
    mug.save()  # as the admin or an import would

    assert found(api_client.get(SEARCH, {"q": "mug"})) == []


@pytest.mark.django_db(transaction=True)  # the cache is retired on commit, as in production
def test_running_out_of_stock_shows_in_filtered_search(api_client, tenant):
    lamp = item(tenant, "Desk Lamp", 700, stock_quantity=1)
    assert found(api_client.get(SEARCH, {"q": "lamp", "inStock": "true"})) == ["Desk Lamp"]

    services.stock_reserve(tenant=tenant, item_id=lamp.pk, quantity=1, reference_type="test", reference_id="1")

    assert found(api_client.get(SEARCH, {"q": "lamp", "inStock": "true"})) == []


def test_members_find_only_what_their_tier_reaches(tenant, member, member_client):
    ladder = tier_ladder(tenant)
    put_in_tier(member, ladder["silver"])
    item(tenant, "Lounge Pass Silver", 3000, min_tier="silver")
    item(tenant, "Lounge Pass Gold", 6000, min_tier="gold")

    assert found(member_client.get(SEARCH, {"q": "lounge"})) == ["Lounge Pass Silver"]

    put_in_tier(member, ladder["gold"])
    assert sorted(found(member_client.get(SEARCH, {"q": "lounge"}))) == ["Lounge Pass Gold", "Lounge Pass Silver"]


def test_search_takes_the_list_filters_and_paginates(api_client, tenant):
    for n in range(7):
        item(tenant, f"Gift Card {n}", 1000 + n, kind="GIFT_CARD")
    item(tenant, "Gift Wrap", 50)

    first = api_client.get(SEARCH, {"q": "gift", "kind": "GIFT_CARD", "pageSize": 5}).json()
    second = api_client.get(SEARCH, {"q": "gift", "kind": "GIFT_CARD", "pageSize": 5, "page": 2}).json()

    assert first["count"] == 7
    assert len(first["results"]) == 5
    assert len(second["results"]) == 2
    assert {r["name"] for r in first["results"] + second["results"]} == {f"Gift Card {n}" for n in range(7)}


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "?!*&"}, {"q": "x" * 201}])
def test_a_missing_or_empty_query_is_a_400_naming_q(api_client, params):
    assert_error(api_client.get(SEARCH, params), 400, attr="q")


def test_tsquery_syntax_in_the_query_is_just_words(api_client, shelf):
    # the operators are dropped: "head phones", found by trigram similarity to the name
    assert found(api_client.get(SEARCH, {"q": "head:* & !phones | ('"})) == ["Headphones"]


@pytest.mark.django_db(transaction=True)  # the cache is retired on commit, as in production
def test_a_cached_page_is_served_as_rendered_without_loading_an_item(api_client, shelf, django_assert_num_queries):
    first = api_client.get(SEARCH, {"q": "headphone", "pageSize": 1})
    assert (first["X-Cache"], first["X-Search-Match"]) == ("MISS", "fulltext")

    with django_assert_num_queries(1 + WALL_QUERIES):  # the API key's tenant; no search, no items
        again = api_client.get(SEARCH, {"q": "headphone", "pageSize": 1})

    assert (again["X-Cache"], again["X-Search-Match"]) == ("HIT", "fulltext")
    assert again["Content-Type"] == "application/json"
    assert again.content == first.content
    assert again.json()["next"] == "http://testserver/api/v1/catalog/search?page=2&pageSize=1&q=headphone"

    # how the items matched is told on a hit too
    api_client.get(SEARCH, {"q": "headphnes"})
    typo = api_client.get(SEARCH, {"q": "headphnes"})
    assert (typo["X-Cache"], typo["X-Search-Match"]) == ("HIT", "similar")
    assert found(typo)[0] == "Headphones"


@pytest.mark.django_db(transaction=True)  # the cache is retired on commit, as in production
def test_a_cached_page_is_never_served_to_a_caller_it_would_show_otherwise(tenant, shelf, api_client):
    ladder = tier_ladder(tenant)  # silver 10 % off, gold 25 % off
    silver, gold = MemberFactory(tenant=tenant), MemberFactory(tenant=tenant)
    put_in_tier(silver, ladder["silver"])
    put_in_tier(gold, ladder["gold"])
    points_adjust(tenant=tenant, member=silver, points=2000, reason="x", actor="t")

    def cost(client, **params) -> list:
        response = client.get(SEARCH, {"q": "headphones", **params})
        assert response.status_code == 200, response.content
        return [row["memberPointCost"] for row in response.json()["results"]]

    # members in different tiers pay different prices for the same page
    assert cost(client_of(silver))[0] == 2250
    assert cost(client_of(gold))[0] == 1875
    assert cost(client_of(silver))[0] == 2250
    assert cost(api_client)[0] is None

    # the names follow the caller's locale, cached or not
    arabic = {"HTTP_ACCEPT_LANGUAGE": "ar"}
    assert found(api_client.get(SEARCH, {"q": "mug"})) == ["Coffee Mug"]
    assert found(api_client.get(SEARCH, {"q": "mug"}, **arabic)) == ["كوب قهوة"]
    assert found(api_client.get(SEARCH, {"q": "mug"}, **arabic)) == ["كوب قهوة"]
    assert found(api_client.get(SEARCH, {"q": "mug", "locale": "ar"})) == ["كوب قهوة"]
    assert found(api_client.get(SEARCH, {"q": "mug"})) == ["Coffee Mug"]

    # what a member can afford follows their balance, though nothing in the catalog changed
    assert cost(client_of(silver), affordable="true") == [1350]
    points_adjust(tenant=tenant, member=silver, points=500, reason="x", actor="t")
    assert cost(client_of(silver), affordable="true") == [2250, 1350]


def test_a_typo_is_corrected_to_a_word_of_the_catalog_and_searched_in_full_text(api_client, shelf):
    response = api_client.get(SEARCH, {"q": "wireles earbuds"})
    assert found(response) == ["Wireless Earbuds"]
    assert response["X-Search-Match"] == "similar"

    # a word the catalog gained after its vocabulary was read is still found by its name
    item(Item.objects.get(pk=shelf["mug"].pk).tenant, "Boombox Deluxe", 4000)
    assert found(api_client.get(SEARCH, {"q": "bombox"})) == ["Boombox Deluxe"]


def test_corrections_replace_only_the_words_the_catalog_lacks():
    known = ["headphones", "wireless", "speaker", "speakers"]
    assert search.corrected(["wireles", "headphnes"], known) == ["wireless", "headphones"]
    assert search.corrected(["wireless", "speak"], known) is None  # the last word is a prefix
    assert search.corrected(["xylophone"], known) is None  # nothing close enough
