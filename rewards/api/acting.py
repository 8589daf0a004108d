"""Who a member's write is for (a purchase, a redemption): a member token acts for its own
member only; the tenant's backend names the member with `memberRef`."""

from rest_framework import serializers

from rewards.models import Member
from rewards.selectors import member_get


def acting_member(view, member_ref: str | None, *, verb: str) -> Member:
    """`view` is a TenantOrMemberAPIView; `verb` says what the member does ("buys")."""
    if view.member is not None:
        if (member_ref or view.member.external_ref) != view.member.external_ref:
            raise serializers.ValidationError(
                {"member_ref": [f"A member token {verb} for its own member only."]}, code="not_allowed"
            )
        return view.member
    if not member_ref:
        raise serializers.ValidationError({"member_ref": ["This field is required."]}, code="required")
    return member_get(tenant=view.tenant, external_ref=member_ref)
