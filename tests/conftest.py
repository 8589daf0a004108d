import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from rewards.services import member_token_issue
from tests.factories import MemberFactory, TenantFactory, UserFactory

PASSWORD = "correct-horse-battery"


def pytest_configure(config):
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.exit(
            "The tests need PostgreSQL and Redis: run `make test`, or set DATABASE_URL and REDIS_URL.",
            returncode=2,
        )


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _relay_only_where_asked(request, settings):
    """Tests that commit outbound events do not publish them inline (with no broker, Celery
    runs the relay in the committing thread) unless marked `relay`: the relay has its own
    tests, and the others stay about what they test."""
    if request.node.get_closest_marker("relay") is None:
        settings.OUTBOX_RELAY_ON_COMMIT = False


@pytest.fixture(autouse=True)
def _fulfil_only_where_asked(request, settings):
    """Likewise a committed redemption is not fulfilled inline (no broker: the committing
    thread would call the partner) unless the test is marked `fulfil`."""
    if request.node.get_closest_marker("fulfil") is None:
        settings.REDEMPTION_FULFIL_ON_COMMIT = False
    # The sandbox partner listens on 127.0.0.1; the refusal of private targets has its own tests.
    settings.REDEMPTION_PARTNER_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture(autouse=True)
def _rollups_when_asked(settings):
    """Insights tests bring the spending rollups up to date themselves (the worker's beat
    does in production), so reading insights does not do it for them."""
    settings.INSIGHTS_ROLLUPS_ON_READ = False


@pytest.fixture
def tenant(db):
    return TenantFactory()


@pytest.fixture
def other_tenant(db):
    return TenantFactory()


def client_for_key(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


@pytest.fixture
def api_client(tenant) -> APIClient:
    """The tenant's backend, calling with its API key."""
    return client_for_key(tenant.raw_api_key)


@pytest.fixture
def other_client(other_tenant) -> APIClient:
    return client_for_key(other_tenant.raw_api_key)


@pytest.fixture
def member(tenant):
    return MemberFactory(tenant=tenant)


@pytest.fixture
def member_client(member) -> APIClient:
    token, _ = member_token_issue(member=member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def platform_admin(db):
    return UserFactory(username="platform-admin", is_superuser=True)


@pytest.fixture
def admin_api_client(platform_admin) -> APIClient:
    """A platform admin calling the API with HTTP Basic."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(platform_admin.username, PASSWORD))
    return client


def basic_auth(username: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"
