"""Members, events and memberships written straight to the tables, for cohort tests that
need many of them or exact control over their times (no points accounts: cohorts never
read them)."""

import uuid
from datetime import datetime
from decimal import Decimal

from campaigns.models import Cohort, CohortMember
from rewards.models import InboundEvent, Member


def members_insert(tenant, specs: list[dict]) -> list[Member]:
    """Members from {"ref", "attributes", "locale", "created_at"} (created_at as given)."""
    members = Member.objects.bulk_create(
        [
            Member(
                tenant=tenant,
                external_ref=spec["ref"],
                locale=spec.get("locale", "en"),
                attributes=spec.get("attributes", {}),
            )
            for spec in specs
        ]
    )
    for member, spec in zip(members, specs, strict=True):
        if "created_at" in spec:
            member.created_at = spec["created_at"]
    Member.objects.bulk_update(members, ["created_at"])
    return members


def event_row(
    tenant,
    *,
    member_ref: str,
    type: str,
    occurred_at: datetime,
    amount: Decimal | None = None,
    points: int = 0,
    status: str = InboundEvent.Status.APPLIED,
) -> InboundEvent:
    """An unsaved applied inbound event (bulk_create a list of them)."""
    return InboundEvent(
        tenant=tenant,
        event_id=f"e-{uuid.uuid4()}",
        type=type,
        member_ref=member_ref,
        occurred_at=occurred_at,
        payload={},
        payload_hash="",
        status=status,
        amount=amount,
        points=points,
    )


def memberships_insert(cohort: Cohort, members) -> None:
    CohortMember.objects.bulk_create(
        [CohortMember(tenant_id=cohort.tenant_id, cohort=cohort, member=member) for member in members]
    )
