"""Row-level security (core.rls): PostgreSQL's own wall between tenants, behind the query
scoping. Against a tenant B holding rows of every kind (`tests.test_admin_every_model`'s
`tenants`: the demo seeds plus the back office's objects), the application role narrowed to
tenant A reads none of B's rows in any tenant table and writes none; an API view whose query
forgot its tenant still answers with A's rows only; and a request leaves its connection as
the platform it found."""

import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from rest_framework.test import APIClient

from core import rls
from rewards import selectors
from rewards.models import Member
from tests.conftest import client_for_key
from tests.test_admin_every_model import tenants  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def count(table: str, tenant_id=None) -> int:
    with connection.cursor() as cursor:
        where = " WHERE tenant_id = %s" if tenant_id else ""
        cursor.execute(
            f"SELECT count(*) FROM {connection.ops.quote_name(table)}{where}", [tenant_id] if tenant_id else []
        )
        return cursor.fetchone()[0]


@pytest.fixture
def narrowed():
    """Narrow this connection to a tenant as the application role; back to the platform after."""
    yield rls.tenant_scope_enter
    rls.tenant_scope_exit()


def test_every_tenant_table_has_the_policy_and_row_level_security_on():
    tables = rls.tenant_tables()
    assert len(tables) >= 40  # every bounded context's tables, not a handful
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relrowsecurity"
        )
        secured = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT tablename FROM pg_policies WHERE policyname = %s", [rls.POLICY])
        with_policy = {row[0] for row in cursor.fetchall()}
    assert set(tables) - secured == set()
    assert set(tables) - with_policy == set()


def test_the_application_role_is_neither_superuser_nor_owner_nor_exempt():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = %s", [settings.DATABASE_APP_ROLE]
        )
        assert cursor.fetchone() == (False, False, False)
        cursor.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = %s",
            [settings.DATABASE_APP_ROLE],
        )
        assert cursor.fetchone()[0] == 0


def test_narrowed_to_a_the_database_shows_none_of_bs_rows_in_any_table(tenants, narrowed):  # noqa: F811
    a, b = tenants
    tables = rls.tenant_tables()
    # as the platform, B has rows in most tables (the check below is not vacuous)
    theirs = {table: count(table, b.pk) for table in tables}
    assert sum(1 for n in theirs.values() if n) >= 30, theirs

    narrowed(a.pk)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == settings.DATABASE_APP_ROLE
    # a raw query with no WHERE at all: B's rows are not there, A's are
    seen_of_b = {table: count(table, b.pk) for table in tables}
    assert {table: n for table, n in seen_of_b.items() if n} == {}
    assert count("rewards_member") == Member.objects.filter(tenant=a).count() > 0


def test_narrowed_to_a_no_row_of_b_can_be_written_or_changed(tenants, narrowed):  # noqa: F811
    a, b = tenants
    bs_member = Member.objects.filter(tenant=b).first()
    narrowed(a.pk)
    with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
        Member.objects.create(tenant=b, external_ref="smuggled")
    # an UPDATE or DELETE of B's rows finds nothing to touch
    assert Member.objects.filter(pk=bs_member.pk).update(status=Member.Status.CLOSED) == 0
    assert Member.objects.filter(tenant=b).delete()[0] == 0
    rls.tenant_scope_exit()
    assert Member.objects.get(pk=bs_member.pk).status == bs_member.status
    assert not Member.objects.filter(external_ref="smuggled").exists()


def test_a_session_that_names_no_tenant_sees_nothing_as_the_application_role(tenant):
    Member.objects.create(tenant=tenant, external_ref="somebody")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('role', %s, false), set_config(%s, '', false)", [settings.DATABASE_APP_ROLE, rls.SETTING]
        )
        try:
            assert count("rewards_member") == 0
        finally:
            cursor.execute("SELECT set_config('role', 'none', false), set_config(%s, '*', false)", [rls.SETTING])
    assert count("rewards_member") >= 1


def test_a_view_whose_query_forgot_its_tenant_still_answers_with_the_callers_rows_only(
    tenant, other_tenant, monkeypatch
):
    Member.objects.create(tenant=tenant, external_ref="mine")
    Member.objects.create(tenant=other_tenant, external_ref="not-mine")
    # the first wall knocked down: the member list's selector drops its tenant filter
    unscoped = selectors.member_list
    monkeypatch.setattr(selectors, "member_list", lambda *, tenant: unscoped(tenant=tenant).model.objects.all())

    response = client_for_key(tenant.raw_api_key).get("/api/v1/members")

    assert response.status_code == 200, response.content
    refs = [row["memberRef"] for row in response.json()["results"]]
    assert refs == ["mine"]
    # and the connection is the platform's again after the request
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user = session_user, current_setting(%s, true)", [rls.SETTING])
        assert cursor.fetchone() == (True, rls.PLATFORM)
    assert set(Member.objects.values_list("external_ref", flat=True)) == {"mine", "not-mine"}


def test_a_member_token_request_is_walled_in_to_the_members_tenant(tenant, other_tenant, monkeypatch):
    from rewards.services import member_token_issue

    mine = Member.objects.create(tenant=tenant, external_ref="me")
    Member.objects.create(tenant=other_tenant, external_ref="me")  # the same ref elsewhere
    seen = {}

    from rewards.api.views import MeApi

    original = MeApi.get

    def spy(view, request):
        seen["members"] = count("rewards_member")  # a raw count with no WHERE, inside the view
        return original(view, request)

    monkeypatch.setattr(MeApi, "get", spy)
    token, _ = member_token_issue(member=mine)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = client.get("/api/v1/me")

    assert response.status_code == 200, response.content
    assert seen == {"members": 1}


def test_an_operator_whose_admin_list_forgot_its_tenant_still_sees_their_tenants_rows_only(
    client, tenant, other_tenant, monkeypatch
):
    from django.contrib.admin.options import ModelAdmin

    from core.admin_scoping import TenantScopedAdminMixin
    from tests.factories import OperatorFactory

    Member.objects.create(tenant=tenant, external_ref="ours")
    Member.objects.create(tenant=other_tenant, external_ref="theirs")
    # the first wall knocked down: every scoped admin lists every tenant's rows
    monkeypatch.setattr(TenantScopedAdminMixin, "get_queryset", ModelAdmin.get_queryset)
    client.force_login(OperatorFactory(tenant=tenant).user)

    response = client.get("/admin/rewards/member/")

    assert response.status_code == 200
    assert "ours" in response.text
    assert "theirs" not in response.text
