import uuid

import pytest

from redemptions.partners import PartnerSettings
from redemptions.partners.sandbox import PartnerSandbox


@pytest.fixture
def partner_sandbox():
    """The sandbox fulfilment partner on a free port, in mode ok."""
    sandbox = PartnerSandbox().start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def partner_settings(partner_sandbox) -> PartnerSettings:
    """A partner on the sandbox for a tenant of its own, so no circuit state leaks between tests."""
    return PartnerSettings(
        tenant_id=str(uuid.uuid4()),
        code="acme",
        base_url=partner_sandbox.url,
        timeout_seconds=1.0,
        max_attempts=3,
        failure_threshold=3,
        reset_timeout_seconds=30,  # tests that wait for a reset set their own, shorter
    )
