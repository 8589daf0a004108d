"""Where the parser says an unstorable character is: never a path that holds one itself."""

import json

import pytest

pytestmark = pytest.mark.django_db


def test_a_nul_under_a_key_with_a_lone_surrogate_is_named_by_the_enclosing_field(api_client):
    rule = {"\ud800": [{"\x00": None}], "reward": {}}
    body = {"name": "x", "type": "SIMPLE", "startAt": "2030-01-01T00:00:00Z", "ruleJson": rule}

    response = api_client.post(
        "/api/v1/campaigns", json.dumps(body, ensure_ascii=True), content_type="application/json"
    )

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert (error["code"], error["attr"]) == ("null_characters", "ruleJson")


def test_a_nul_in_a_bare_json_string_is_named_as_the_request_as_a_whole(api_client):
    response = api_client.post("/api/v1/events", data='"a\\u0000b"', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["errors"][0] | {"detail": None} == {
        "code": "null_characters",
        "detail": None,
        "attr": "nonFieldErrors",
    }
