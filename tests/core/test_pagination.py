"""`pageSize` is a whole number from 1: anything else is a 400 naming it, not silently the
default page."""

import pytest

pytestmark = pytest.mark.django_db

PAGED = ["/api/v1/catalog/items", "/api/v1/members/{ref}/transfers", "/api/v1/members/{ref}/incentives"]


@pytest.mark.parametrize("path", PAGED)
@pytest.mark.parametrize("page_size", ["", "0", "-1", "x", "1.5", "null"])
def test_a_page_size_that_is_not_a_positive_whole_number_is_a_400_naming_it(api_client, member, path, page_size):
    response = api_client.get(path.format(ref=member.external_ref), {"pageSize": page_size})

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["type"] == "validation_error"
    assert [error["attr"] for error in body["errors"]] == ["pageSize"]


@pytest.mark.parametrize("path", PAGED)
def test_a_page_size_above_the_maximum_is_capped(api_client, member, path):
    response = api_client.get(path.format(ref=member.external_ref), {"pageSize": "100000"})

    assert response.status_code == 200, response.content
