"""Tenants (created by the platform admin), their limits and their API keys."""

import pytest
from rest_framework.test import APIClient

from tenants.models import ApiKey, Limit, Tenant
from tests.core.shapes import assert_error
from tests.factories import OperatorFactory, UserFactory

pytestmark = pytest.mark.django_db

TENANT_KEYS = {
    "tenantId",
    "slug",
    "name",
    "status",
    "currency",
    "pointValue",
    "earnRate",
    "rounding",
    "timezone",
    "defaultLocale",
    "createdAt",
    "updatedAt",
}
LIMIT_KEYS = {"scope", "maxPerDay", "maxTotal", "windowDays", "source", "memberRef"}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # HTTP Basic checks the password on every request; the default hasher is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


def basic_client(username: str) -> APIClient:
    from tests.conftest import PASSWORD, basic_auth

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(username, PASSWORD))
    return client


def test_platform_admin_creates_a_tenant_with_limits_and_a_key_shown_once(admin_api_client):
    # when the platform admin creates a tenant
    response = admin_api_client.post(
        "/api/v1/tenants",
        {"name": "Coffee Co", "currency": "EUR", "limits": {"user": {"maxPerDay": 500}}},
        format="json",
    )

    # then it exists with its default limits (the user one overridden) and a raw key
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == {*TENANT_KEYS, "apiKey"}
    assert body["slug"] == "coffee-co"
    assert body["currency"] == "EUR"
    assert {"id", "name", "prefix", "key", "createdAt"} <= set(body["apiKey"])
    raw = body["apiKey"]["key"]
    assert raw.startswith("lk_")
    assert body["apiKey"]["prefix"] == raw[:10]
    tenant = Tenant.objects.get(pk=body["tenantId"])
    limits = {lim.scope: lim for lim in Limit.objects.filter(tenant=tenant)}
    assert set(limits) == {"GLOBAL", "USER"}
    assert limits["USER"].max_per_day == 500
    assert limits["GLOBAL"].max_per_day is None
    assert not ApiKey.objects.filter(key_hash=raw).exists()

    # and the key works, and is never shown again
    client = key_client(raw)
    detail = client.get(f"/api/v1/tenants/{tenant.pk}")
    assert detail.status_code == 200, detail.json()
    assert set(detail.json()) == TENANT_KEYS
    keys = client.get(f"/api/v1/tenants/{tenant.pk}/api-keys")
    assert keys.status_code == 200
    assert [k["id"] for k in keys.json()["results"]] == [body["apiKey"]["id"]]
    assert "key" not in keys.json()["results"][0]
    assert raw not in keys.content.decode()


def test_a_new_tenant_has_the_default_limits(admin_api_client, settings):
    tenant_id = admin_api_client.post("/api/v1/tenants", {"name": "Plain"}, format="json").json()["tenantId"]

    response = admin_api_client.get(f"/api/v1/tenants/{tenant_id}/limits")

    assert response.status_code == 200, response.json()
    default_user = settings.DEFAULT_TENANT_LIMITS["USER"]
    assert response.json()["user"] == {
        "scope": "USER",
        "maxPerDay": default_user["max_per_day"],
        "maxTotal": default_user["max_total"],
        "windowDays": default_user["window_days"],
        "source": "tenant",
        "memberRef": "",
    }
    assert response.json()["global"]["source"] == "tenant"


def test_platform_admin_lists_tenants(admin_api_client, tenant, other_tenant):
    response = admin_api_client.get("/api/v1/tenants")

    assert response.status_code == 200, response.json()
    assert {t["tenantId"] for t in response.json()["results"]} == {str(tenant.pk), str(other_tenant.pk)}


def test_a_tenant_api_key_cannot_create_or_list_tenants(api_client):
    count = Tenant.objects.count()

    assert_error(api_client.post("/api/v1/tenants", {"name": "Mine"}, format="json"), 403)
    assert_error(api_client.get("/api/v1/tenants"), 403)
    assert Tenant.objects.count() == count


def test_anonymous_cannot_create_a_tenant(db):
    assert_error(APIClient().post("/api/v1/tenants", {"name": "Mine"}, format="json"), 401)
    assert Tenant.objects.count() == 0


@pytest.mark.parametrize("who", ["staff", "operator"])
def test_only_platform_admins_create_tenants(db, who):
    # Staff without the permission, and a tenant's own operator, are not platform admins.
    if who == "staff":
        user = UserFactory(username="staff-only", is_superuser=False)
    else:
        user = OperatorFactory(user__username="operator", user__is_superuser=True).user
    count = Tenant.objects.count()

    response = basic_client(user.username).post("/api/v1/tenants", {"name": "Mine"}, format="json")

    assert_error(response, 403)
    assert Tenant.objects.count() == count


@pytest.mark.parametrize(
    ("body", "status", "attr"),
    [
        ({}, 400, "name"),
        ({"name": "X", "currency": "usd"}, 400, "currency"),
        ({"name": "X", "timezone": "Mars/Base"}, 400, "timezone"),
        ({"name": "X", "pointValue": "0"}, 400, "pointValue"),
        ({"name": "X", "limits": {"user": {"maxPerDay": -1}}}, 400, "limits.user.maxPerDay"),
        ({"name": "X", "slug": "taken"}, 409, "slug"),
    ],
    ids=["no-name", "currency", "timezone", "point-value", "limit", "slug-taken"],
)
def test_tenant_creation_errors_name_the_field_and_write_nothing(admin_api_client, body, status, attr):
    admin_api_client.post("/api/v1/tenants", {"name": "First", "slug": "taken"}, format="json")
    counts = (Tenant.objects.count(), Limit.objects.count(), ApiKey.objects.count())

    response = admin_api_client.post("/api/v1/tenants", body, format="json")

    assert_error(response, status, attr=attr)
    assert (Tenant.objects.count(), Limit.objects.count(), ApiKey.objects.count()) == counts


def test_effective_limits_with_and_without_a_member_override(api_client, tenant):
    url = f"/api/v1/tenants/{tenant.pk}/limits"
    before = api_client.get(url, {"memberRef": "vip-1"})
    assert before.status_code == 200, before.json()
    assert set(before.json()) == {"global", "user"}
    assert set(before.json()["user"]) == LIMIT_KEYS
    assert before.json()["user"]["source"] == "tenant"
    assert before.json()["user"]["memberRef"] == "vip-1"

    # when the member gets an override
    upsert = api_client.post(
        f"/api/v1/tenants/{tenant.pk}/user-limits",
        {"memberRef": "vip-1", "maxPerDay": 5000, "maxTotal": 20000, "windowDays": 30},
        format="json",
    )
    assert upsert.status_code == 200, upsert.json()
    assert upsert.json()["user"]["source"] == "member"

    # then it wins for that member only
    mine = api_client.get(url, {"memberRef": "vip-1"}).json()["user"]
    assert mine == {
        "scope": "USER",
        "maxPerDay": 5000,
        "maxTotal": 20000,
        "windowDays": 30,
        "source": "member",
        "memberRef": "vip-1",
    }
    others = api_client.get(url, {"memberRef": "someone"}).json()["user"]
    assert others["source"] == "tenant"
    assert others["maxPerDay"] == before.json()["user"]["maxPerDay"]
    assert api_client.get(url).json()["user"]["source"] == "tenant"


def test_user_limit_upsert_replaces_the_one_row(api_client, tenant):
    url = f"/api/v1/tenants/{tenant.pk}/user-limits"
    api_client.post(url, {"memberRef": "vip-1", "maxPerDay": 5000, "maxTotal": 20000}, format="json")

    response = api_client.post(url, {"memberRef": "vip-1", "maxPerDay": 7000}, format="json")

    assert response.status_code == 200, response.json()
    rows = Limit.objects.filter(tenant=tenant, scope="USER", member_ref="vip-1")
    assert rows.count() == 1
    assert (rows.get().max_per_day, rows.get().max_total) == (7000, None)


@pytest.mark.parametrize(("scope", "section"), [("GLOBAL", "global"), ("USER", "user")])
def test_tenant_wide_limit_upsert(api_client, tenant, scope, section):
    response = api_client.post(
        f"/api/v1/tenants/{tenant.pk}/limits", {"scope": scope, "maxPerDay": 1_000_000}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()[section]["maxPerDay"] == 1_000_000
    rows = Limit.objects.filter(tenant=tenant, scope=scope, member_ref="")
    assert rows.count() == 1
    assert rows.get().max_per_day == 1_000_000


def test_api_keys_are_created_listed_and_revoked(api_client, tenant):
    url = f"/api/v1/tenants/{tenant.pk}/api-keys"

    # given a second key
    created = api_client.post(url, {"name": "pos"}, format="json")
    assert created.status_code == 201, created.json()
    assert {"id", "name", "prefix", "key", "createdAt"} <= set(created.json())
    pos = key_client(created.json()["key"])
    assert pos.get("/api/v1/members").status_code == 200

    # then the list shows both, without their secrets
    listed = api_client.get(url).json()["results"]
    assert {k["name"] for k in listed} == {"default", "pos"}
    assert all(set(k) == {"id", "name", "prefix", "createdAt", "lastUsedAt", "revokedAt"} for k in listed)

    # when it is revoked (twice: revoking is idempotent)
    revoke_url = f"{url}/{created.json()['id']}:revoke"
    revoked = api_client.post(revoke_url)
    again = api_client.post(revoke_url)

    # then it stops working at once and the list shows it revoked
    assert revoked.status_code == 200, revoked.json()
    assert revoked.json()["revokedAt"] is not None
    assert again.json()["revokedAt"] == revoked.json()["revokedAt"]
    assert_error(pos.get("/api/v1/members"), 401)
    listed = {k["name"]: k for k in api_client.get(url).json()["results"]}
    assert listed["pos"]["revokedAt"] == revoked.json()["revokedAt"]
    assert listed["default"]["revokedAt"] is None


@pytest.mark.parametrize("key_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_revoking_an_unknown_key_is_404(api_client, tenant, key_id):
    assert_error(api_client.post(f"/api/v1/tenants/{tenant.pk}/api-keys/{key_id}:revoke"), 404)
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
