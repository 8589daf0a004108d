"""`GET /api/v1/me/notifications?after={eventId}&limit=`: the member's missed frames."""

import pytest
from rest_framework.test import APIClient

from rewards.notifications import frame
from rewards.outbox import outbox_write
from rewards.services import member_token_issue
from tests.core.shapes import assert_error
from tests.factories import MemberFactory
from tests.realtime.conftest import points_events

URL = "/api/v1/me/notifications"

pytestmark = pytest.mark.django_db


def client_of(member) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_token_issue(member=member)[0]}")
    return client


def test_frames_after_an_event_oldest_first(member, member_client):
    seen, *missed = points_events(member, 6)
    body = member_client.get(URL, {"after": str(seen.event_id)}).json()
    assert body == {"results": [frame(e) for e in missed], "lastEventId": str(missed[-1].event_id)}


def test_without_after_from_the_first_and_paged_by_limit(member, member_client):
    events = points_events(member, 5)
    first = member_client.get(URL, {"limit": 2}).json()
    assert [f["eventId"] for f in first["results"]] == [str(e.event_id) for e in events[:2]]
    rest = member_client.get(URL, {"after": first["lastEventId"], "limit": 10}).json()
    assert [f["eventId"] for f in rest["results"]] == [str(e.event_id) for e in events[2:]]
    done = member_client.get(URL, {"after": rest["lastEventId"]}).json()
    assert done == {"results": [], "lastEventId": rest["lastEventId"]}


def test_nothing_yet(member_client):
    assert member_client.get(URL).json() == {"results": [], "lastEventId": None}


def test_limit_defaults_to_100_and_is_at_most_500(member, member_client):
    points_events(member, 101)
    assert len(member_client.get(URL).json()["results"]) == 100
    assert_error(member_client.get(URL, {"limit": 501}), 400, attr="limit")
    assert_error(member_client.get(URL, {"limit": 0}), 400, attr="limit")


def test_frames_keep_the_keys_the_websocket_sends(member, member_client):
    outbox_write(
        tenant=member.tenant,
        type="redemption.completed",
        member_ref=member.external_ref,
        data={"memberRef": member.external_ref, "redemptionId": "r-1", "partner_code": "p_1"},
    )
    (result,) = member_client.get(URL).json()["results"]
    assert result["partner_code"] == "p_1"
    assert (result["type"], result["status"]) == ("REDEMPTION_STATUS", "COMPLETED")


def test_an_unknown_after_is_404_naming_after(member_client):
    assert_error(member_client.get(URL, {"after": "3f2c1b0a-9e8d-4c7b-a6f5-e4d3c2b1a090"}), 404, attr="after")
    assert_error(member_client.get(URL, {"after": "nope"}), 404, code="notification_not_found", attr="after")


def test_only_the_members_own_frames(member, tenant, other_tenant):
    (mine,) = points_events(member, 1)
    neighbour = MemberFactory(tenant=tenant)
    same_ref_elsewhere = MemberFactory(tenant=other_tenant, external_ref=member.external_ref)
    points_events(neighbour, 2)
    for other in (neighbour, same_ref_elsewhere):
        assert_error(client_of(other).get(URL, {"after": str(mine.event_id)}), 404, attr="after")
    assert client_of(same_ref_elsewhere).get(URL).json()["results"] == []
    assert [f["eventId"] for f in client_of(member).get(URL).json()["results"]] == [str(mine.event_id)]


def test_api_keys_are_refused(api_client):
    assert_error(api_client.get(URL), 403)


def test_anonymous_is_refused():
    assert_error(APIClient().get(URL), 401)
