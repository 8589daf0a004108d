"""An erased member's open WebSockets are closed: the group is named after the memberRef, which
a new member may take once the old one is erased."""

import pytest
from channels.db import database_sync_to_async

from rewards.privacy import member_erase
from tests.realtime.conftest import closed_with, connected, run

pytestmark = pytest.mark.django_db(transaction=True)


def test_erasing_a_member_closes_their_open_socket(member):
    async def scenario():
        ws = await connected(member)
        await database_sync_to_async(member_erase)(tenant=member.tenant, member=member, actor="operator:test")
        assert await closed_with(ws) == 4401
        await ws.disconnect()

    run(scenario)
