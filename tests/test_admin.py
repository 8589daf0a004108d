"""The back office: tenant scoping, roles, and writes that go through the services."""

import re

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.models import IdempotencyRecord
from rewards.models import Account, Member, Transfer
from rewards.selectors import member_balance
from rewards.services import points_adjust
from tenants.models import ApiKey, Limit, Operator, Tenant
from tenants.services import api_key_hash
from tests.factories import MemberFactory, OperatorFactory, UserFactory

pytestmark = pytest.mark.django_db

RAW_KEY = re.compile(r"lk_[A-Za-z0-9_-]{20,}")


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


def login_operator(client, tenant, role: str) -> Operator:
    operator = OperatorFactory(tenant=tenant, role=role)
    client.force_login(operator.user)
    return operator


def credit(member: Member, points: int) -> Transfer:
    return points_adjust(tenant=member.tenant, member=member, points=points, reason="setup", actor="test").transfer


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def adjust_form_key(client, member) -> str:
    response = client.get(url("rewards_member_adjust", member.pk))
    assert response.status_code == 200
    return str(response.context["form"].initial["idempotency_key"])


# Scoping -------------------------------------------------------------------------------


def test_operator_sees_only_own_tenants_members(client, tenant, other_tenant):
    mine = MemberFactory(tenant=tenant, external_ref="mine-1")
    theirs = MemberFactory(tenant=other_tenant, external_ref="theirs-1")
    login_operator(client, tenant, Operator.Role.VIEWER)

    response = client.get(url("rewards_member_changelist"))

    assert response.status_code == 200
    assert {m.pk for m in response.context["cl"].result_list} == {mine.pk}
    assert theirs.external_ref not in response.content.decode()
    # No tenant filter either: it would list every tenant's name.
    assert other_tenant.name not in response.content.decode()


def test_operator_search_and_filters_stay_in_own_tenant(client, tenant, other_tenant):
    MemberFactory(tenant=other_tenant, external_ref="shared-ref")
    mine = MemberFactory(tenant=tenant, external_ref="shared-ref")
    login_operator(client, tenant, Operator.Role.VIEWER)

    searched = client.get(url("rewards_member_changelist"), {"q": "shared"})
    filtered = client.get(url("rewards_member_changelist"), {"tenant__id__exact": other_tenant.pk})

    assert [m.pk for m in searched.context["cl"].result_list] == [mine.pk]
    assert list(filtered.context["cl"].result_list) == []


@pytest.mark.parametrize(
    "route",
    [
        "rewards_member_change",
        "rewards_member_delete",
        "rewards_member_history",
        "rewards_member_adjust",
        "rewards_transfer_change",
        "rewards_transfer_history",
        "rewards_account_change",
        "tenants_apikey_change",
        "tenants_apikey_delete",
        "tenants_limit_change",
        "tenants_operator_change",
        "tenants_tenant_change",
        "tenants_tenant_history",
    ],
)
def test_another_tenants_object_is_not_found(client, tenant, other_tenant, route):
    member = MemberFactory(tenant=other_tenant)
    transfer = credit(member, 10)
    objects = {
        "rewards_member": member,
        "rewards_transfer": transfer,
        "rewards_account": transfer.credit_account,
        "tenants_apikey": other_tenant.api_keys.get(),
        "tenants_limit": other_tenant.limits.first(),
        "tenants_operator": OperatorFactory(tenant=other_tenant),
        "tenants_tenant": other_tenant,
    }
    login_operator(client, tenant, Operator.Role.OWNER)
    obj = objects[route.rsplit("_", 1)[0]]

    response = client.get(url(route, obj.pk))

    assert response.status_code == 404


def test_posting_to_another_tenants_member_changes_nothing(client, tenant, other_tenant):
    theirs = MemberFactory(tenant=other_tenant)
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("rewards_member_change", theirs.pk), {"status": "CLOSED", "locale": "en"})
    adjust = client.post(
        url("rewards_member_adjust", theirs.pk),
        {"points": 50, "reason": "x", "idempotency_key": "6f1d0d0e-8c1e-4d55-9a8b-2f4e1a7b9c01"},
    )

    assert response.status_code == 404
    assert adjust.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Member.Status.ACTIVE
    assert member_balance(member=theirs) == 0


def test_foreign_key_choices_are_limited_to_own_tenant(client, tenant, other_tenant):
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.get(url("tenants_limit_add"))

    field = response.context["adminform"].form.fields["tenant"]
    assert list(field.queryset) == [tenant]
    assert field.disabled


def test_operator_add_sets_own_tenant_even_if_another_is_posted(client, tenant, other_tenant):
    login_operator(client, tenant, Operator.Role.SUPPORT)

    response = client.post(
        url("rewards_member_add"),
        {"tenant": other_tenant.pk, "external_ref": "new-member", "status": "ACTIVE", "locale": "en"},
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    member = Member.objects.get(external_ref="new-member")
    assert member.tenant == tenant
    # Through the service: the member has its points account.
    assert member_balance(member=member) == 0


def test_duplicate_member_ref_is_a_form_error_not_a_crash(client, tenant):
    MemberFactory(tenant=tenant, external_ref="dup")
    login_operator(client, tenant, Operator.Role.SUPPORT)

    response = client.post(url("rewards_member_add"), {"external_ref": "dup", "status": "ACTIVE", "locale": "en"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Member.objects.filter(tenant=tenant, external_ref="dup").count() == 1


def test_superuser_sees_all_tenants(client, tenant, other_tenant, platform_admin):
    mine = MemberFactory(tenant=tenant)
    theirs = MemberFactory(tenant=other_tenant)
    client.force_login(platform_admin)

    tenants = client.get(url("tenants_tenant_changelist"))
    members = client.get(url("rewards_member_changelist"))

    assert {t.pk for t in tenants.context["cl"].result_list} == {tenant.pk, other_tenant.pk}
    assert {m.pk for m in members.context["cl"].result_list} == {mine.pk, theirs.pk}


def test_staff_user_who_is_neither_operator_nor_superuser_sees_nothing(client, member):
    client.force_login(UserFactory(is_staff=True))

    assert client.get(url("rewards_member_changelist")).status_code == 403
    assert client.get(url("rewards_member_change", member.pk)).status_code == 404


# Roles ---------------------------------------------------------------------------------


def test_viewer_reads_but_cannot_add_or_change(client, tenant, member):
    login_operator(client, tenant, Operator.Role.VIEWER)

    assert client.get(url("rewards_member_change", member.pk)).status_code == 200
    assert client.get(url("rewards_member_add")).status_code == 403
    assert client.get(url("tenants_apikey_add")).status_code == 403
    assert client.get(url("tenants_limit_add")).status_code == 403
    response = client.post(url("rewards_member_change", member.pk), {"status": "SUSPENDED", "locale": "en"})
    assert response.status_code == 403
    member.refresh_from_db()
    assert member.status == Member.Status.ACTIVE


def test_viewer_cannot_adjust_points(client, tenant, member):
    login_operator(client, tenant, Operator.Role.VIEWER)

    page = client.get(url("rewards_member_change", member.pk))
    response = client.post(
        url("rewards_member_adjust", member.pk),
        {"points": 50, "reason": "x", "idempotency_key": "6f1d0d0e-8c1e-4d55-9a8b-2f4e1a7b9c01"},
    )

    assert "Adjust points" not in page.content.decode()
    assert response.status_code == 403
    assert member_balance(member=member) == 0


def test_support_edits_members_but_not_limits_or_keys(client, tenant, member):
    login_operator(client, tenant, Operator.Role.SUPPORT)

    response = client.post(url("rewards_member_change", member.pk), {"status": "SUSPENDED", "locale": "fr"})

    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.status, member.locale) == (Member.Status.SUSPENDED, "fr")
    assert client.get(url("tenants_limit_add")).status_code == 403
    assert client.get(url("tenants_apikey_add")).status_code == 403
    assert client.get(url("tenants_operator_add")).status_code == 403


def test_owner_edits_tenant_settings_but_not_status_and_cannot_create_tenants(client, tenant):
    login_operator(client, tenant, Operator.Role.OWNER)
    data = {
        "name": "Renamed",
        "slug": "hijacked",
        "status": "SUSPENDED",
        "currency": "EUR",
        "point_value": "0.02",
        "earn_rate": "2",
        "rounding": "HALF_UP",
        "timezone": "Europe/Paris",
        "default_locale": "fr",
    }

    response = client.post(url("tenants_tenant_change", tenant.pk), data)

    assert response.status_code == 302
    tenant.refresh_from_db()
    assert (tenant.name, tenant.currency, tenant.timezone) == ("Renamed", "EUR", "Europe/Paris")
    assert tenant.slug != "hijacked"
    assert tenant.status == Tenant.Status.ACTIVE
    assert client.get(url("tenants_tenant_add")).status_code == 403
    assert client.post(url("tenants_tenant_delete", tenant.pk), {"post": "yes"}).status_code == 403
    assert Tenant.objects.filter(pk=tenant.pk).exists()


def test_owner_adds_an_operator_to_own_tenant(client, tenant, other_tenant):
    login_operator(client, tenant, Operator.Role.OWNER)
    newcomer = UserFactory(username="newcomer")
    superuser = UserFactory(username="root", is_superuser=True)

    choices = list(client.get(url("tenants_operator_add")).context["adminform"].form.fields["user"].queryset)
    response = client.post(
        url("tenants_operator_add"), {"tenant": other_tenant.pk, "user": newcomer.pk, "role": "SUPPORT"}
    )

    assert newcomer in choices
    assert superuser not in choices
    assert response.status_code == 302
    operator = Operator.objects.get(user=newcomer)
    assert (operator.tenant, operator.role) == (tenant, Operator.Role.SUPPORT)


def test_owner_cannot_remove_themselves(client, tenant):
    me = login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("tenants_operator_delete", me.pk), {"post": "yes"})

    assert response.status_code == 403
    assert Operator.objects.filter(pk=me.pk).exists()


def test_operator_admin_index_lists_scoped_models_but_not_idempotency_records(client, tenant):
    login_operator(client, tenant, Operator.Role.VIEWER)

    response = client.get(url("index"))

    models = {m["object_name"] for app in response.context["app_list"] for m in app["models"]}
    assert {"Member", "Transfer", "Account", "Tenant", "ApiKey", "Limit", "Operator"} <= models
    assert "IdempotencyRecord" not in models
    assert "User" not in models


# Adjustments ---------------------------------------------------------------------------


def test_adjustment_form_credits_and_debits_through_the_service(client, tenant, member):
    operator = login_operator(client, tenant, Operator.Role.SUPPORT)

    page = client.get(url("rewards_member_change", member.pk))
    credited = client.post(
        url("rewards_member_adjust", member.pk),
        {"points": 120, "reason": "goodwill", "idempotency_key": adjust_form_key(client, member)},
    )
    debited = client.post(
        url("rewards_member_adjust", member.pk),
        {"points": -20, "reason": "correction", "idempotency_key": adjust_form_key(client, member)},
    )

    assert url("rewards_member_adjust", member.pk) in page.content.decode()
    assert credited.status_code == 302
    assert debited.status_code == 302
    assert member_balance(member=member) == 100
    transfers = Transfer.objects.filter(tenant=tenant, kind=Transfer.Kind.ADJUSTMENT).order_by("created_at")
    assert [(t.amount, t.reason) for t in transfers] == [(120, "goodwill"), (20, "correction")]
    assert {t.reference_id for t in transfers} == {f"operator:{operator.user.username}"}


def test_adjustment_that_would_go_negative_is_a_form_error_and_writes_nothing(client, tenant, member):
    credit(member, 30)
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(
        url("rewards_member_adjust", member.pk),
        {"points": -31, "reason": "too much", "idempotency_key": adjust_form_key(client, member)},
    )

    assert response.status_code == 200
    assert "The balance is too low for this debit." in response.context["form"].errors["points"]
    assert member_balance(member=member) == 30
    assert Transfer.objects.filter(tenant=tenant).count() == 1


def test_zero_points_or_missing_reason_is_refused(client, tenant, member):
    login_operator(client, tenant, Operator.Role.SUPPORT)

    response = client.post(
        url("rewards_member_adjust", member.pk),
        {"points": 0, "reason": "", "idempotency_key": adjust_form_key(client, member)},
    )

    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"points", "reason"}
    assert not Transfer.objects.filter(tenant=tenant).exists()


def test_double_submit_of_one_form_posts_once(client, tenant, member):
    login_operator(client, tenant, Operator.Role.SUPPORT)
    data = {"points": 75, "reason": "double click", "idempotency_key": adjust_form_key(client, member)}

    first = client.post(url("rewards_member_adjust", member.pk), data)
    second = client.post(url("rewards_member_adjust", member.pk), data)

    assert (first.status_code, second.status_code) == (302, 302)
    assert Transfer.objects.filter(tenant=tenant, kind=Transfer.Kind.ADJUSTMENT).count() == 1
    assert member_balance(member=member) == 75
    assert any("already posted" in m for m in messages_of(second))


def test_resubmitting_a_used_form_with_other_values_posts_nothing_and_offers_a_new_key(client, tenant, member):
    login_operator(client, tenant, Operator.Role.SUPPORT)
    key = adjust_form_key(client, member)
    client.post(url("rewards_member_adjust", member.pk), {"points": 10, "reason": "first", "idempotency_key": key})

    response = client.post(
        url("rewards_member_adjust", member.pk), {"points": 99, "reason": "edited", "idempotency_key": key}
    )

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert response.context["form"]["idempotency_key"].value() != key
    assert member_balance(member=member) == 10


def test_superuser_can_adjust_any_tenants_member(client, platform_admin, other_tenant):
    member = MemberFactory(tenant=other_tenant)
    client.force_login(platform_admin)

    response = client.post(
        url("rewards_member_adjust", member.pk),
        {"points": 5, "reason": "platform", "idempotency_key": adjust_form_key(client, member)},
    )

    assert response.status_code == 302
    assert member_balance(member=member) == 5


def test_member_changelist_shows_balance_without_a_query_per_row(client, tenant):
    login_operator(client, tenant, Operator.Role.VIEWER)
    credit(MemberFactory(tenant=tenant), 7)

    def changelist_queries():
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url("rewards_member_changelist"))
        assert response.status_code == 200
        return len(queries), response

    few, _ = changelist_queries()
    for _ in range(5):
        credit(MemberFactory(tenant=tenant), 3)
    many, response = changelist_queries()

    assert many == few
    assert sorted(m.points_balance for m in response.context["cl"].result_list) == [3, 3, 3, 3, 3, 7]


# The ledger is read-only ---------------------------------------------------------------


def test_transfers_cannot_be_added_changed_or_deleted_even_by_a_superuser(client, platform_admin, member):
    transfer = credit(member, 40)
    client.force_login(platform_admin)

    add = client.get(url("rewards_transfer_add"))
    delete = client.post(url("rewards_transfer_delete", transfer.pk), {"post": "yes"})
    change = client.post(url("rewards_transfer_change", transfer.pk), {"amount": 1, "reason": "edited"})
    bulk = client.post(
        url("rewards_transfer_changelist"),
        {"action": "delete_selected", "_selected_action": [transfer.pk], "post": "yes"},
    )
    view = client.get(url("rewards_transfer_change", transfer.pk))

    assert (add.status_code, delete.status_code, change.status_code) == (403, 403, 403)
    assert bulk.status_code in (200, 302)
    transfer.refresh_from_db()
    assert (transfer.amount, transfer.reason) == (40, "setup")
    assert member_balance(member=member) == 40
    assert view.status_code == 200


def test_accounts_are_read_only(client, platform_admin, member):
    account = Account.objects.get(member=member)
    client.force_login(platform_admin)

    assert client.get(url("rewards_account_add")).status_code == 403
    assert client.post(url("rewards_account_change", account.pk), {"kind": "EXPIRY"}).status_code == 403
    assert client.post(url("rewards_account_delete", account.pk), {"post": "yes"}).status_code == 403


def test_transfer_changelist_filters_and_searches_without_a_query_per_row(client, tenant):
    login_operator(client, tenant, Operator.Role.VIEWER)
    first = MemberFactory(tenant=tenant, external_ref="alpha")
    credit(first, 10)

    with CaptureQueriesContext(connection) as queries:
        client.get(url("rewards_transfer_changelist"))
    few = len(queries)
    for _ in range(5):
        credit(MemberFactory(tenant=tenant), 2)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url("rewards_transfer_changelist"))
    many = len(queries)
    target = Transfer.objects.filter(tenant=tenant).order_by("created_at").first()
    by_key = client.get(url("rewards_transfer_changelist"), {"q": target.idempotency_key})
    by_kind = client.get(url("rewards_transfer_changelist"), {"kind__exact": "EXPIRY"})
    by_member = client.get(url("rewards_transfer_changelist"), {"q": "alpha"})

    assert many == few
    assert len(response.context["cl"].result_list) == 6
    assert [t.pk for t in by_key.context["cl"].result_list] == [target.pk]
    assert list(by_kind.context["cl"].result_list) == []
    assert [t.pk for t in by_member.context["cl"].result_list] == [target.pk]


# API keys ------------------------------------------------------------------------------


def test_api_key_created_in_admin_is_shown_once_and_stored_only_as_a_hash(client, tenant, other_tenant):
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("tenants_apikey_add"), {"name": "till", "tenant": other_tenant.pk}, follow=True)

    shown = RAW_KEY.findall(response.content.decode())
    assert len(shown) == 1
    raw = shown[0]
    api_key = ApiKey.objects.get(name="till")
    assert api_key.tenant == tenant
    assert api_key.key_hash == api_key_hash(raw)
    assert raw.startswith(api_key.prefix)
    assert raw not in {api_key.name, api_key.prefix, api_key.key_hash}
    # The key works against the API, and is not shown again.
    assert client.get("/api/v1/members", HTTP_X_API_KEY=raw).status_code == 200
    again = client.get(url("tenants_apikey_changelist")).content.decode()
    detail = client.get(url("tenants_apikey_change", api_key.pk)).content.decode()
    assert raw not in again
    assert raw not in detail
    assert api_key.key_hash not in detail
    assert api_key.key_hash not in again


def test_revoke_action_revokes_only_own_tenants_selected_keys(client, tenant, other_tenant):
    login_operator(client, tenant, Operator.Role.OWNER)
    mine = tenant.api_keys.get()
    theirs = other_tenant.api_keys.get()

    response = client.post(
        url("tenants_apikey_changelist"),
        {"action": "revoke_keys", "_selected_action": [mine.pk, theirs.pk], "index": 0},
    )

    assert response.status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None
    assert theirs.revoked_at is None
    assert client.get("/api/v1/members", HTTP_X_API_KEY=tenant.raw_api_key).status_code == 401


def test_viewer_cannot_revoke_keys(client, tenant):
    login_operator(client, tenant, Operator.Role.VIEWER)
    mine = tenant.api_keys.get()

    client.post(url("tenants_apikey_changelist"), {"action": "revoke_keys", "_selected_action": [mine.pk], "index": 0})

    mine.refresh_from_db()
    assert mine.revoked_at is None


# Tenants and platform-only models ------------------------------------------------------


def test_superuser_creates_a_tenant_through_the_service(client, platform_admin):
    client.force_login(platform_admin)
    data = {
        "name": "Coffee Co",
        "slug": "coffee-co",
        "status": "ACTIVE",
        "currency": "EUR",
        "point_value": "0.01",
        "earn_rate": "1",
        "rounding": "FLOOR",
        "timezone": "UTC",
        "default_locale": "en",
    }

    response = client.post(url("tenants_tenant_add"), data, follow=True)

    tenant = Tenant.objects.get(slug="coffee-co")
    assert tenant.currency == "EUR"
    assert set(Limit.objects.filter(tenant=tenant).values_list("scope", flat=True)) == {"GLOBAL", "USER"}
    (raw,) = RAW_KEY.findall(response.content.decode())
    assert tenant.api_keys.get().key_hash == api_key_hash(raw)


def test_superuser_deletes_a_tenant_without_a_ledger_but_an_operator_cannot(client, tenant, platform_admin):
    login_operator(client, tenant, Operator.Role.OWNER)
    assert client.post(url("tenants_apikey_delete", tenant.api_keys.get().pk), {"post": "yes"}).status_code == 403

    client.force_login(platform_admin)
    response = client.post(url("tenants_tenant_delete", tenant.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    assert not ApiKey.objects.filter(tenant_id=tenant.pk).exists()
    assert not Operator.objects.filter(tenant_id=tenant.pk).exists()


def test_idempotency_records_are_for_superusers_only_and_read_only(client, tenant, platform_admin):
    record = IdempotencyRecord.objects.create(scope="t", key="k", fingerprint="f", locked_at="2026-01-01T00:00Z")
    login_operator(client, tenant, Operator.Role.OWNER)
    assert client.get(url("core_idempotencyrecord_changelist")).status_code == 403

    client.force_login(platform_admin)
    assert client.get(url("core_idempotencyrecord_changelist")).status_code == 200
    assert client.get(url("core_idempotencyrecord_add")).status_code == 403
    assert client.post(url("core_idempotencyrecord_delete", record.pk), {"post": "yes"}).status_code == 403
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()


def test_site_header(client, platform_admin):
    client.force_login(platform_admin)

    assert "Loyalty back office" in client.get(url("index")).content.decode()


@pytest.mark.django_db
def test_event_store_outbox_and_lots_are_read_only_and_scoped(client, tenant, other_tenant):
    from decimal import Decimal

    from rewards.earning import event_ingest
    from rewards.models import EarnedLot, InboundEvent, OutboxEvent

    for t, ref in ((tenant, "mine"), (other_tenant, "theirs")):
        event_ingest(
            tenant=t,
            event={
                "type": "transaction.created",
                "event_id": f"e-{ref}",
                "member_ref": ref,
                "amount": Decimal("10.00"),
                "currency": "USD",
                "occurred_at": None,
            },
        )
    operator = OperatorFactory(tenant=tenant, role=Operator.Role.OWNER)
    client.force_login(operator.user)

    listing = client.get("/admin/rewards/inboundevent/")
    assert listing.status_code == 200
    assert b"e-mine" in listing.content and b"e-theirs" not in listing.content
    theirs = InboundEvent.objects.get(event_id="e-theirs")
    assert client.get(f"/admin/rewards/inboundevent/{theirs.pk}/change/").status_code == 404
    mine = InboundEvent.objects.get(event_id="e-mine")
    assert client.get(f"/admin/rewards/inboundevent/{mine.pk}/change/").status_code == 200
    for model in ("inboundevent", "outboxevent", "earnedlot"):
        assert client.get(f"/admin/rewards/{model}/add/").status_code == 403
    lot = EarnedLot.objects.get(member__external_ref="mine")
    assert client.post(f"/admin/rewards/earnedlot/{lot.pk}/delete/", {"post": "yes"}).status_code == 403
    assert EarnedLot.objects.filter(pk=lot.pk).exists()
    assert OutboxEvent.objects.filter(tenant=tenant).count() == 1
