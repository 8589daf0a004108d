import pytest

from tenants.models import Operator
from tests.conftest import PASSWORD, basic_auth
from tests.factories import OperatorFactory


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "can_write"), [("OWNER", True), ("MANAGER", True), ("SUPPORT", True), ("VIEWER", False)]
)
def test_operators_reach_their_tenant_through_the_api_by_role(client, tenant, member, role, can_write):
    operator = OperatorFactory(tenant=tenant, role=role)
    auth = basic_auth(operator.user.username, PASSWORD)

    read = client.get(f"/api/v1/members/{member.external_ref}", HTTP_AUTHORIZATION=auth)
    write = client.post(
        f"/api/v1/members/{member.external_ref}/adjustments",
        {"points": 5, "reason": "goodwill"},
        content_type="application/json",
        HTTP_AUTHORIZATION=auth,
    )

    assert read.status_code == 200
    assert write.status_code == (201 if can_write else 403)
    member.refresh_from_db()
    assert member.accounts.get().balance == (5 if can_write else 0)


@pytest.mark.django_db
def test_an_operator_is_not_a_platform_admin(client, tenant):
    operator = OperatorFactory(tenant=tenant, role=Operator.Role.OWNER, user__is_superuser=False)
    response = client.post(
        "/api/v1/tenants",
        {"name": "Sneaky"},
        content_type="application/json",
        HTTP_AUTHORIZATION=basic_auth(operator.user.username, PASSWORD),
    )
    assert response.status_code == 403
