"""Privacy requests for one member: erasure (anonymization) and an export of their data.

Erasure keeps every row the ledger and the program's counters need (accounts, transfers,
lots, incentives, redemptions, tier history: ids and numbers, no personal data) and removes
what identifies the person: the memberRef becomes an opaque `erased-<random>` (so the old ref
can never be looked up again and a new member may take it), the attributes and locale are
cleared and the status is CLOSED, which refuses the member's tokens and closes their open
WebSockets. Copies of the old ref and of the attribute values are scrubbed from inbound event
payloads, outbound events and webhook deliveries, stored idempotent responses, per-member
limits and the audit log.

The balance is left as it is: no transfer is posted, so the ledger's invariants hold as
before. The points cannot be spent any more (a closed member neither redeems nor gets a
token) and lapse under the tenant's expiry policy like anyone's; a redemption still open at
erasure completes or is refunded as usual.

The export walks every model with a foreign key to Member, so the data of apps above
`rewards` (incentives, redemptions, tier history) is included without importing them.
"""

import secrets
from collections.abc import Iterator

from asgiref.sync import async_to_sync
from auditlog import get_logentry_model
from channels.layers import get_channel_layer
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.forms.models import model_to_dict

from core.audit.records import audit_action
from core.models import IdempotencyRecord
from rewards.models import Account, EarnedLot, InboundEvent, Member, OutboxEvent, Transfer
from rewards.notifications import member_group
from rewards.outbox import outbox_write
from tenants.models import Limit, Tenant, WebhookDelivery

ERASED_PREFIX = "erased-"
REDACTED = "[erased]"
# Keys of inbound payloads that carry what a tenant knows about the person, dropped whole.
PERSONAL_PAYLOAD_KEYS = frozenset({"attributes", "member", "customer", "profile"})
EXPORT_BATCH = 500


def member_is_erased(member: Member) -> bool:
    return member.status == Member.Status.CLOSED and member.external_ref.startswith(ERASED_PREFIX)


def _personal_values(member: Member) -> set[str]:
    """The strings that identify the member: the ref and every text leaf of the attributes
    (short ones, such as "DE" or "yes", say nothing about one person and are left alone)."""
    values = {member.external_ref}

    def walk(node) -> None:
        if isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str) and len(node) >= 4:
            values.add(node)

    walk(member.attributes)
    return values


class _Scrubber:
    def __init__(self, *, old_ref: str, new_ref: str, values: set[str]):
        self.old_ref, self.new_ref = old_ref, new_ref
        # Longest first, so a value that contains another is replaced whole.
        self.values = sorted(values - {old_ref}, key=len, reverse=True)

    def text(self, value: str) -> str:
        value = value.replace(self.old_ref, self.new_ref)
        for personal in self.values:
            value = value.replace(personal, REDACTED)
        return value

    def json(self, node, *, drop_personal_keys: bool = False):
        if isinstance(node, dict):
            return {
                key: ({} if drop_personal_keys and key in PERSONAL_PAYLOAD_KEYS else self.json(item))
                for key, item in node.items()
            }
        if isinstance(node, list):
            return [self.json(item) for item in node]
        if isinstance(node, str):
            return self.text(node)
        return node


def _close_sockets(*, tenant_id, member_ref: str) -> None:
    """Tell the member's open WebSockets to close (rewards.consumers `member.close`): the group
    is named after the ref, which a new member may take."""
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(
            member_group(tenant_id, member_ref), {"type": "member.close", "reason": "member_erased"}
        )


@transaction.atomic
def member_erase(*, tenant: Tenant, member: Member, actor: str) -> Member:
    """Anonymize a member (see the module doc) and announce `member.erased`. The caller has
    checked the member is the tenant's and not erased yet."""
    member = Member.objects.select_for_update().get(pk=member.pk, tenant=tenant)
    old_ref = member.external_ref
    new_ref = f"{ERASED_PREFIX}{secrets.token_hex(16)}"
    scrub = _Scrubber(old_ref=old_ref, new_ref=new_ref, values=_personal_values(member))

    for event in InboundEvent.objects.filter(tenant=tenant, member_ref=old_ref).iterator(chunk_size=EXPORT_BATCH):
        event.member_ref = new_ref
        event.payload = scrub.json(event.payload, drop_personal_keys=True)
        event.result = scrub.json(event.result)
        event.save(update_fields=["member_ref", "payload", "result"])
    for event in OutboxEvent.objects.filter(tenant=tenant, member_ref=old_ref).iterator(chunk_size=EXPORT_BATCH):
        event.member_ref = new_ref
        event.data = scrub.json(event.data)
        event.save(update_fields=["member_ref", "data"])
    for delivery in WebhookDelivery.objects.filter(tenant=tenant, payload__icontains=old_ref).iterator():
        delivery.payload = scrub.json(delivery.payload)
        delivery.save(update_fields=["payload"])
    for record in IdempotencyRecord.objects.filter(scope=f"tenant:{tenant.pk}", response_body__icontains=old_ref):
        record.response_body = scrub.json(record.response_body)
        record.save(update_fields=["response_body"])
    for limit in Limit.objects.filter(tenant=tenant, member_ref=old_ref):
        # Saved one by one so the tenant's cached limits are retired: a new member taking the
        # old ref must not inherit this override.
        limit.member_ref = new_ref
        limit.save(update_fields=["member_ref", "updated_at"])
    _audit_log_redact(tenant=tenant, member=member, scrub=scrub)

    member.external_ref = new_ref
    member.attributes = {}
    member.locale = ""
    member.status = Member.Status.CLOSED
    # update() rather than save(): a save would log the old attributes to the audit log again.
    Member.objects.filter(pk=member.pk).update(
        external_ref=new_ref, attributes={}, locale="", status=Member.Status.CLOSED
    )
    member.refresh_from_db()
    audit_action(obj=member, action="Member erased", actor=actor)
    outbox_write(tenant=tenant, type="member.erased", member_ref=new_ref, data={"memberRef": new_ref})
    transaction.on_commit(lambda: _close_sockets(tenant_id=tenant.pk, member_ref=old_ref))
    return member


def _audit_log_redact(*, tenant: Tenant, member: Member, scrub: _Scrubber) -> None:
    """The member's own entries keep what happened and when, with every value redacted;
    other entries of the tenant that quote the ref or an attribute value are scrubbed."""
    entries = get_logentry_model().objects
    own = entries.filter(content_type=ContentType.objects.get_for_model(Member), object_pk=str(member.pk))
    for entry in own:
        changes = entry.changes if isinstance(entry.changes, dict) else {}
        entry.changes = {field: [REDACTED, REDACTED] for field in changes}
        entry.changes_text = ""
        entry.serialized_data = None
        entry.object_repr = scrub.text(entry.object_repr)
        entry.additional_data = scrub.json(entry.additional_data)
        entry.save(update_fields=["changes", "changes_text", "serialized_data", "object_repr", "additional_data"])
    quoting = models.Q()
    for value in [scrub.old_ref, *scrub.values]:
        quoting |= models.Q(changes__icontains=value) | models.Q(object_repr__icontains=value)
    for entry in entries.filter(quoting, additional_data__tenant=str(tenant.pk)).exclude(pk__in=own.values("pk")):
        entry.changes = scrub.json(entry.changes)
        entry.object_repr = scrub.text(entry.object_repr)
        entry.save(update_fields=["changes", "object_repr"])


# Export --------------------------------------------------------------------------------------


def _row(obj: models.Model) -> dict:
    data = model_to_dict(obj, fields=[f.name for f in obj._meta.concrete_fields])
    data["id"] = obj.pk
    return data


def _member_models() -> list[tuple[str, type[models.Model], str]]:
    """(label, model, field) for every model with a foreign key to Member, except those the
    export lists in sections of their own."""
    own = {Account, EarnedLot}
    found = []
    for model in apps.get_models():
        if model in own:
            continue
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is Member:
                found.append((model._meta.label, model, field.name))
    return sorted(found, key=lambda item: item[0])


def member_export_sections(*, tenant: Tenant, member: Member) -> Iterator[tuple[str, Iterator[dict]]]:
    """The member's data as named sections of rows, each read in batches (a member with a long
    history is never loaded whole): profile, accounts, lots, transfers, then one section per
    model that refers to the member (incentives, redemptions, tier history, ...)."""
    yield "profile", iter([_row(member)])
    accounts = Account.objects.filter(tenant=tenant, member=member).order_by("pk")
    yield "accounts", (_row(a) for a in accounts)
    lots = EarnedLot.objects.filter(tenant=tenant, member=member).order_by("created_at", "pk")
    yield "lots", (_row(lot) for lot in lots.iterator(chunk_size=EXPORT_BATCH))
    transfers = Transfer.objects.filter(
        models.Q(debit_account__in=accounts) | models.Q(credit_account__in=accounts), tenant=tenant
    ).order_by("created_at", "pk")
    yield "transfers", (_row(t) for t in transfers.iterator(chunk_size=EXPORT_BATCH))
    for label, model, field in _member_models():
        rows = model._default_manager.filter(**{field: member}).order_by("pk")
        yield label, (_row(obj) for obj in rows.iterator(chunk_size=EXPORT_BATCH))


def member_export_json(*, tenant: Tenant, member: Member) -> Iterator[str]:
    """The export as chunks of one JSON object `{"memberRef": ..., "sections": {name: [rows]}}`."""
    encoder = DjangoJSONEncoder()
    yield '{"memberRef": ' + encoder.encode(member.external_ref) + ', "sections": {'
    for index, (name, rows) in enumerate(member_export_sections(tenant=tenant, member=member)):
        yield ("" if index == 0 else ", ") + encoder.encode(name) + ": ["
        for row_index, row in enumerate(rows):
            yield ("" if row_index == 0 else ", ") + encoder.encode(row)
        yield "]"
    yield "}}"
