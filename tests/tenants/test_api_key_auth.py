"""Authentication with tenant API keys (`X-API-Key`)."""

import pytest
from rest_framework.test import APIClient

from tenants.models import Tenant
from tenants.services import api_key_create
from tests.core.shapes import assert_error

pytestmark = pytest.mark.django_db


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


def test_a_valid_key_acts_for_its_tenant(api_client, tenant):
    response = api_client.get(f"/api/v1/tenants/{tenant.pk}")

    assert response.status_code == 200, response.json()
    assert response.json()["tenantId"] == str(tenant.pk)


def test_no_credentials_is_401(db):
    response = APIClient().get("/api/v1/members")

    assert_error(response, 401, code="not_authenticated")
    assert response.headers["WWW-Authenticate"] == "X-API-Key"


def test_an_unknown_key_is_401(db):
    response = key_client("lk_" + "x" * 43).get("/api/v1/members")

    assert_error(response, 401, code="invalid_api_key")


def test_a_revoked_key_is_401_at_once(api_client, tenant):
    # given a second key that works
    issued = api_key_create(tenant=tenant, name="pos")
    pos = key_client(issued.raw)
    assert pos.get("/api/v1/members").status_code == 200

    # when it is revoked through the API
    revoked = api_client.post(f"/api/v1/tenants/{tenant.pk}/api-keys/{issued.api_key.pk}:revoke")
    assert revoked.status_code == 200, revoked.json()

    # then it is refused, while the tenant's other key still works
    assert_error(pos.get("/api/v1/members"), 401, code="invalid_api_key")
    assert api_client.get("/api/v1/members").status_code == 200


def test_a_suspended_tenants_key_is_401(api_client, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)

    assert_error(api_client.get("/api/v1/members"), 401, code="tenant_suspended")
