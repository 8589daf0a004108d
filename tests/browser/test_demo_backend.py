"""The demo app's backend (config.demo), without a browser: which member's token the page gets,
a fresh one on request, and nothing at all unless DEMO_APP_ENABLED."""

import json
import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from rewards.models import Member
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_on(settings, tenant):
    settings.DEMO_APP_ENABLED = True
    settings.DEMO_APP_TENANT = tenant.slug
    return tenant


def page_config(response) -> dict:
    match = re.search(rb'<script id="demo-config" type="application/json">(.*?)</script>', response.content, re.S)
    assert match, response.content[:500]
    return json.loads(match.group(1))


def me(token: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/api/v1/me")


def test_the_page_signs_in_as_the_chosen_member_of_the_demo_tenant(demo_on, client):
    MemberFactory(tenant=demo_on, external_ref="demo-0002")
    MemberFactory(tenant=demo_on, external_ref="demo-0001")

    response = client.get("/demo/?member=demo-0002")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    config = page_config(response)
    assert config["memberRef"] == "demo-0002"
    assert config["apiBase"] == "/api/v1"
    assert config["wsPath"] == "/ws"
    assert me(config["token"]).json()["memberRef"] == "demo-0002"
    assert b'<option value="demo-0001">' in response.content


def test_without_a_choice_the_page_signs_in_as_the_first_demo_member(demo_on, client):
    MemberFactory(tenant=demo_on, external_ref="demo-0002")
    MemberFactory(tenant=demo_on, external_ref="demo-0001")

    config = page_config(client.get("/demo/"))

    assert config["memberRef"] == "demo-0001"


def test_a_fresh_token_is_issued_for_the_member_on_request(demo_on):
    MemberFactory(tenant=demo_on, external_ref="demo-0001")
    client = Client(enforce_csrf_checks=True)
    config = page_config(client.get("/demo/"))

    refused = client.post("/demo/token", {"memberRef": "demo-0001"})
    response = client.post("/demo/token", {"memberRef": "demo-0001"}, HTTP_X_CSRFTOKEN=config["csrfToken"])

    assert refused.status_code == 403  # a page elsewhere cannot ask for tokens
    assert response.status_code == 200
    assert response.json()["tokenType"] == "Bearer"
    assert me(response.json()["token"]).json()["memberRef"] == "demo-0001"


def test_members_of_other_tenants_and_inactive_members_get_no_token(demo_on, other_tenant, client):
    MemberFactory(tenant=other_tenant, external_ref="someone")
    MemberFactory(tenant=demo_on, external_ref="gone", status=Member.Status.CLOSED)

    assert client.get("/demo/?member=someone").status_code == 404
    assert client.get("/demo/?member=gone").status_code == 404
    assert client.post("/demo/token", {"memberRef": "someone"}).status_code == 404


def test_the_app_is_not_there_unless_enabled(settings, tenant, client):
    MemberFactory(tenant=tenant, external_ref="demo-0001")
    settings.DEMO_APP_TENANT = tenant.slug
    settings.DEMO_APP_ENABLED = False

    assert client.get("/demo/").status_code == 404
    assert client.post("/demo/token", {"memberRef": "demo-0001"}).status_code == 404


def test_without_the_demo_tenant_the_page_is_not_found(settings, client):
    settings.DEMO_APP_ENABLED = True
    settings.DEMO_APP_TENANT = "no-such-tenant"

    assert client.get("/demo/").status_code == 404
