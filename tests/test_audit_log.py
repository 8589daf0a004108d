"""The audit log: what is recorded when operators change the configuration in the back office
and when a tenant's backend (or an operator) changes it through the API — who, when, the
tenant, before and after — and the back office page where each operator reads their own
tenant's entries."""

import json
import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns import services as campaigns
from catalog import services as catalog
from catalog.models import Partner
from core.roles import ALL_ROLES
from redemptions import services as redemptions
from redemptions.models import PartnerConfig
from rewards.services import member_update, points_adjust
from tenants.models import Operator, WebhookEndpoint
from tenants.services import api_key_create
from tenants.webhooks import webhook_endpoint_create, webhook_endpoint_secret_rotate
from tests.campaigns.helpers import campaign_admin_form
from tests.conftest import PASSWORD, basic_auth
from tests.factories import MemberFactory, OperatorFactory

pytestmark = pytest.mark.django_db

RULE = {"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "POINTS", "points": 100}}
CREATE, UPDATE = LogEntry.Action.CREATE, LogEntry.Action.UPDATE


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


def entries_of(obj):
    return LogEntry.objects.get_for_object(obj).order_by("timestamp", "pk")


def login(client, tenant, role) -> Operator:
    operator = OperatorFactory(tenant=tenant, role=role)
    client.force_login(operator.user)
    return operator


def make_campaign(tenant, name="Welcome"):
    return campaigns.campaign_create(
        tenant=tenant, name=name, type="SIMPLE", start_at=timezone.now() - timedelta(days=1), rule_json=RULE
    )


def listed(response) -> list:
    assert response.status_code == 200, response.status_code
    return list(response.context["cl"].result_list)


# What is recorded ------------------------------------------------------------------------


def test_a_change_in_the_back_office_is_recorded_with_who_when_the_tenant_and_before_and_after(client, tenant):
    campaign = make_campaign(tenant)
    operator = login(client, tenant, Operator.Role.MANAGER)
    before = timezone.now()

    response = client.post(url("campaigns_campaign_change", campaign.pk), campaign_admin_form(RULE, name="After"))

    assert response.status_code == 302
    created, updated = entries_of(campaign)
    assert created.action == CREATE and created.changes["name"] == ["None", "Welcome"]
    # The campaign's own fields, not the other side of its relations (incentives, usage...).
    assert set(created.changes) <= {field.name for field in type(campaign)._meta.concrete_fields}
    assert updated.action == UPDATE
    assert updated.changes["name"] == ["Welcome", "After"]
    assert "version" not in updated.changes and "updated_at" not in updated.changes
    assert updated.additional_data == {"tenant": str(tenant.pk), "actor": f"operator:{operator.user.username}"}
    assert updated.actor == operator.user
    assert updated.timestamp >= before
    assert updated.remote_addr == "127.0.0.1"
    # The request id, as the access log and the outbound events carry it.
    assert re.fullmatch(r"[0-9a-f]{32}", updated.cid or "")


def test_a_change_through_the_api_names_the_api_key(api_client, tenant, member):
    response = api_client.patch(f"/api/v1/members/{member.external_ref}", {"status": "SUSPENDED"}, format="json")

    assert response.status_code == 200, response.content
    (entry,) = entries_of(member).filter(action=UPDATE)
    assert entry.changes == {"status": ["ACTIVE", "SUSPENDED"]}
    assert entry.additional_data == {"tenant": str(tenant.pk), "actor": f"api-key:{tenant.api_keys.get().prefix}"}
    assert entry.actor is None


def test_an_operator_calling_the_api_is_named_too(tenant, member):
    operator = OperatorFactory(tenant=tenant, role=Operator.Role.SUPPORT)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=basic_auth(operator.user.username, PASSWORD))

    response = api.patch(f"/api/v1/members/{member.external_ref}", {"locale": "fr"}, format="json")

    assert response.status_code == 200, response.content
    (entry,) = entries_of(member).filter(action=UPDATE)
    assert entry.changes == {"locale": ["en", "fr"]}
    assert entry.additional_data["actor"] == f"operator:{operator.user.username}"


def test_a_change_outside_a_request_is_the_systems(client, tenant, member, platform_admin):
    member_update(member=member, status="SUSPENDED")

    (entry,) = entries_of(member).filter(action=UPDATE)
    assert entry.additional_data == {"tenant": str(tenant.pk), "actor": None}
    client.force_login(platform_admin)
    page = client.get(url("auditlog_logentry_change", entry.pk)).content.decode()
    assert "system" in page


def test_only_the_audited_fields_of_a_member_are_recorded(tenant):
    member = MemberFactory(tenant=tenant, external_ref="alice", locale="en")

    (created,) = entries_of(member)

    assert set(created.changes) <= {"status", "locale", "attributes"}
    assert created.additional_data["tenant"] == str(tenant.pk)


def test_secrets_never_reach_the_log(client, tenant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    endpoint = webhook_endpoint_create(tenant=tenant, url="http://127.0.0.1:9/hooks")
    first_secret = endpoint.secret
    rotated = webhook_endpoint_secret_rotate(endpoint=WebhookEndpoint.objects.get(pk=endpoint.pk))
    issued = api_key_create(tenant=tenant, name="ci")

    rotation = entries_of(endpoint).get(action=UPDATE)
    assert rotation.changes == {"secret": ["(hidden)", "(hidden)"]}
    everything = json.dumps([[e.changes, e.serialized_data, e.object_repr] for e in LogEntry.objects.all()])
    for secret in (first_secret, rotated.secret, issued.raw, issued.api_key.key_hash):
        assert secret not in everything
    assert "key_hash" not in entries_of(issued.api_key).get().changes


def test_operator_actions_in_the_back_office_are_recorded_with_what_they_changed(client, tenant, settings):
    member = MemberFactory(tenant=tenant)
    points_adjust(tenant=tenant, member=member, points=1000, reason="setup", actor="test")
    partner = Partner.objects.create(tenant=tenant, code="acme", name="Acme")
    PartnerConfig.objects.create(
        tenant=tenant, partner=partner, base_url="https://api.partner.example/v1", enabled_kinds=["GIFT_CARD"]
    )
    item = catalog.item_create(
        tenant=tenant, name="Card", sku="GC", kind="GIFT_CARD", point_cost=300, cash_value=Decimal("10.00")
    )
    retried, cancelled = (
        redemptions.redemption_request(tenant=tenant, member=member, item_id=item.pk, quantity=1, actor="test")[0]
        for _ in range(2)
    )
    operator = login(client, tenant, Operator.Role.SUPPORT)
    who = f"operator:{operator.user.username}"

    client.post(
        url("rewards_member_adjust", member.pk),
        {"points": -50, "reason": "correction", "idempotency_key": str(uuid.uuid4())},
    )
    client.post(url("redemptions_redemption_retry", retried.pk))
    client.post(url("redemptions_redemption_cancel", cancelled.pk), {"reason": "member asked"})

    adjusted = entries_of(member).get(additional_data__action="Points adjusted")
    assert adjusted.changes == {"balance": ["400", "350"]}
    assert adjusted.additional_data["points"] == -50 and adjusted.additional_data["reason"] == "correction"
    assert adjusted.additional_data["actor"] == who and adjusted.additional_data["tenant"] == str(tenant.pk)
    retry = entries_of(retried).get()
    assert (retry.additional_data["action"], retry.additional_data["actor"]) == ("Retry queued", who)
    cancel = entries_of(cancelled).get()
    assert cancel.additional_data["action"] == "Cancel and refund"
    assert cancel.changes == {"status": ["PENDING", "CANCELLED"]}
    assert cancel.additional_data["reason"] == "member asked"


def test_changes_the_services_write_with_an_update_are_recorded_from_the_back_office(client, tenant):
    item = catalog.item_create(tenant=tenant, name="Mug", sku="MUG", kind="MERCHANDISE", point_cost=500)
    key = tenant.api_keys.get()
    operator = login(client, tenant, Operator.Role.OWNER)

    client.post(url("catalog_item_changelist"), {"action": "deactivate_selected", "_selected_action": [item.pk]})
    client.post(url("tenants_apikey_changelist"), {"action": "revoke_keys", "_selected_action": [key.pk]})

    (deactivated,) = entries_of(item).filter(action=UPDATE)
    assert deactivated.changes == {"is_active": ["True", "False"]}
    assert deactivated.additional_data["actor"] == f"operator:{operator.user.username}"
    (revoked,) = entries_of(key).filter(action=UPDATE)
    assert list(revoked.changes) == ["revoked_at"] and revoked.changes["revoked_at"][0] == "None"


def test_an_item_edited_in_the_back_office_is_recorded(client, tenant):
    item = catalog.item_create(
        tenant=tenant, name="Mug", sku="MUG", kind="MERCHANDISE", point_cost=500, cash_value=Decimal("5.00")
    )
    operator = login(client, tenant, Operator.Role.MANAGER)

    response = client.post(
        url("catalog_item_change", item.pk),
        {
            "sku": "MUG",
            "name": "Travel mug",
            "names": "{}",
            "description": "",
            "kind": "MERCHANDISE",
            "category": "",
            "partner": "",
            "point_cost": "450",
            "cash_value": "5.00",
            "is_active": "on",
            "min_tier": "",
            "image_url": "",
            "loaded_version": str(item.version),
        },
    )

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    (entry,) = entries_of(item).filter(action=UPDATE)  # exactly one
    assert entry.changes == {"name": ["Mug", "Travel mug"], "point_cost": ["500", "450"]}
    assert entry.additional_data["actor"] == f"operator:{operator.user.username}"


def test_an_item_edit_and_a_deactivation_through_the_api_are_recorded_once_with_the_api_key(api_client, tenant):
    item = catalog.item_create(
        tenant=tenant, name="Mug", sku="MUG", kind="MERCHANDISE", point_cost=500, cash_value=Decimal("5.00")
    )
    who = {"tenant": str(tenant.pk), "actor": f"api-key:{tenant.api_keys.get().prefix}"}

    edited = api_client.patch(
        f"/api/v1/catalog/items/{item.pk}", {"name": "Travel mug", "pointCost": 450, "version": 1}, format="json"
    )
    assert edited.status_code == 200, edited.content
    (entry,) = entries_of(item).filter(action=UPDATE)
    assert entry.changes == {"name": ["Mug", "Travel mug"], "point_cost": ["500", "450"]}
    assert entry.additional_data == who

    assert api_client.delete(f"/api/v1/catalog/items/{item.pk}").status_code == 204
    assert api_client.delete(f"/api/v1/catalog/items/{item.pk}").status_code == 204  # changes nothing more

    _, deactivated = entries_of(item).filter(action=UPDATE)
    assert deactivated.changes == {"is_active": ["True", "False"]}
    assert deactivated.additional_data == who


def test_a_stale_api_edit_records_nothing(api_client, tenant):
    item = catalog.item_create(tenant=tenant, name="Mug", sku="MUG", kind="MERCHANDISE", point_cost=500)

    response = api_client.patch(f"/api/v1/catalog/items/{item.pk}", {"pointCost": 1, "version": 7}, format="json")

    assert response.status_code == 409
    assert not entries_of(item).filter(action=UPDATE).exists()


def test_an_api_key_revoked_through_the_api_is_recorded_once_with_the_revoking_key(api_client, tenant):
    caller = tenant.api_keys.get()
    issued = api_key_create(tenant=tenant, name="ci")

    response = api_client.post(f"/api/v1/tenants/{tenant.pk}/api-keys/{issued.api_key.pk}:revoke")
    again = api_client.post(f"/api/v1/tenants/{tenant.pk}/api-keys/{issued.api_key.pk}:revoke")

    assert response.status_code == 200 and again.status_code == 200, response.content
    (entry,) = entries_of(issued.api_key).filter(action=UPDATE)
    assert list(entry.changes) == ["revoked_at"] and entry.changes["revoked_at"][0] == "None"
    assert entry.changes["revoked_at"][1] != "None"
    assert entry.additional_data == {"tenant": str(tenant.pk), "actor": f"api-key:{caller.prefix}"}


# Reading it in the back office -------------------------------------------------------------


def test_an_operator_reads_only_their_own_tenants_entries(client, tenant, other_tenant):
    mine = make_campaign(tenant, name="Mine")
    theirs = make_campaign(other_tenant, name="Theirs-secret")
    login(client, tenant, Operator.Role.VIEWER)
    their_entry = entries_of(theirs).get()

    response = client.get(url("auditlog_logentry_changelist"))
    searched = client.get(url("auditlog_logentry_changelist"), {"q": "Theirs-secret"})
    filtered = client.get(url("auditlog_logentry_changelist"), {"tenant": str(other_tenant.pk)})
    detail = client.get(url("auditlog_logentry_change", entries_of(mine).get().pk))

    entries = listed(response)
    assert entries and {e.additional_data["tenant"] for e in entries} == {str(tenant.pk)}
    assert mine.pk in {uuid.UUID(e.object_pk) for e in entries if e.content_type.model == "campaign"}
    page = response.content.decode()
    assert "Theirs-secret" not in page and other_tenant.name not in page
    assert listed(searched) == []
    # Operators have no tenant filter: the parameter is refused, not applied.
    assert filtered.status_code == 302 and "e=1" in filtered.url
    assert detail.status_code == 200 and "Mine" in detail.content.decode()
    assert client.get(url("auditlog_logentry_change", their_entry.pk)).status_code == 404


@pytest.mark.parametrize("role", [*ALL_ROLES, "platform"])
def test_nobody_changes_or_deletes_an_entry(client, tenant, platform_admin, role):
    campaign = make_campaign(tenant)
    entry = entries_of(campaign).get()
    if role == "platform":
        client.force_login(platform_admin)
    else:
        login(client, tenant, role)

    listing = client.get(url("auditlog_logentry_changelist"))
    detail = client.get(url("auditlog_logentry_change", entry.pk))
    changed = client.post(url("auditlog_logentry_change", entry.pk), {"object_repr": "forged"})
    deleted = client.post(url("auditlog_logentry_delete", entry.pk), {"post": "yes"})
    added = client.get(url("auditlog_logentry_add"))

    assert listing.status_code == 200 and detail.status_code == 200
    assert listing.context["action_form"] is None
    assert 'name="_save"' not in detail.content.decode()
    assert (changed.status_code, deleted.status_code, added.status_code) == (403, 403, 403)
    entry.refresh_from_db()
    assert entry.object_repr == "Welcome"


def test_platform_staff_read_every_tenant_and_filter_by_tenant(client, tenant, other_tenant, platform_admin):
    make_campaign(tenant, name="Mine")
    make_campaign(other_tenant, name="Theirs")
    client.force_login(platform_admin)

    everything = listed(client.get(url("auditlog_logentry_changelist")))
    response = client.get(url("auditlog_logentry_changelist"), {"tenant": str(other_tenant.pk)})

    assert {e.additional_data["tenant"] for e in everything} >= {str(tenant.pk), str(other_tenant.pk)}
    assert {e.additional_data["tenant"] for e in listed(response)} == {str(other_tenant.pk)}
    assert other_tenant.name in response.content.decode()


def test_the_list_shows_who_what_and_the_change_and_finds_an_actor(client, tenant, member, api_client):
    api_client.patch(f"/api/v1/members/{member.external_ref}", {"status": "SUSPENDED"}, format="json")
    prefix = tenant.api_keys.get().prefix
    login(client, tenant, Operator.Role.VIEWER)

    response = client.get(url("auditlog_logentry_changelist"), {"q": f"api-key:{prefix}"})

    (entry,) = listed(response)
    page = response.content.decode()
    assert f"api-key:{prefix}" in page
    assert "status: ACTIVE → SUSPENDED" in page
    assert url("rewards_member_change", member.pk) in page
    assert entry.object_pk == str(member.pk)


# Retention ---------------------------------------------------------------------------------


def _aged(tenant, days_old: int, name: str):
    partner = Partner.objects.create(tenant=tenant, code=name, name=name)
    entry = entries_of(partner).get()
    LogEntry.objects.filter(pk=entry.pk).update(timestamp=timezone.now() - timedelta(days=days_old))
    return entry


def test_entries_older_than_the_retention_are_deleted_in_batches_and_newer_ones_kept(tenant, settings):
    from django.conf import settings as django_settings

    from core.audit import tasks

    old = [_aged(tenant, 400, f"old-{n}") for n in range(5)]
    kept = [_aged(tenant, 364, "recent"), _aged(tenant, 0, "today")]
    settings.AUDIT_LOG_RETENTION_DAYS = 365

    assert tasks.audit_log_purge(retention_days=365, batch_size=2) == 5
    assert not LogEntry.objects.filter(pk__in=[e.pk for e in old]).exists()
    assert LogEntry.objects.filter(pk__in=[e.pk for e in kept]).count() == 2
    # The daily task reads the setting; a second run finds nothing left to delete.
    assert tasks.audit_log_retention_apply() == 0
    schedule = django_settings.CELERY_BEAT_SCHEDULE["audit-log-retention"]
    assert schedule == {"task": "core.audit.tasks.audit_log_retention_apply", "schedule": timedelta(days=1)}


def test_a_retention_of_zero_keeps_every_entry(tenant, settings):
    from core.audit import tasks

    ancient = _aged(tenant, 5000, "ancient")
    settings.AUDIT_LOG_RETENTION_DAYS = 0

    assert tasks.audit_log_retention_apply() == 0
    assert LogEntry.objects.filter(pk=ancient.pk).exists()
