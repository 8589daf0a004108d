"""Brute-force protection on the back office login (django-axes): AXES_FAILURE_LIMIT wrong
passwords for one username from one address lock that pair out, even for the right password;
other usernames from that address and the same username from elsewhere are unaffected; an
operator is unlocked from the admin."""

import pytest
from axes.models import AccessAttempt
from django.test import Client

from tests.conftest import PASSWORD, basic_auth
from tests.factories import OperatorFactory, UserFactory

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture(autouse=True)
def _policy(settings):
    settings.AXES_FAILURE_LIMIT = 3


def _login(username: str, password: str, *, ip: str = "203.0.113.7"):
    return Client(REMOTE_ADDR=ip).post(LOGIN, {"username": username, "password": password})


def _locked_out(response) -> bool:
    return response.status_code == 429 and b"This account is locked" in response.content


def _logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


@pytest.mark.django_db
def test_the_right_password_is_refused_once_the_limit_of_wrong_ones_is_reached():
    UserFactory(username="ops")
    for _ in range(2):
        wrong = _login("ops", "guess")
        assert wrong.status_code == 200 and not _locked_out(wrong)  # the form again, with its error

    assert _locked_out(_login("ops", "guess"))  # the third failure locks
    response = _login("ops", PASSWORD)

    assert _locked_out(response)
    assert b"3 failed sign-ins" in response.content


@pytest.mark.django_db
def test_fewer_failures_than_the_limit_then_success_resets_the_count():
    UserFactory(username="ops")
    _login("ops", "guess")
    _login("ops", "guess")

    assert _logged_in(_login("ops", PASSWORD))
    assert _login("ops", "guess").status_code == 200  # counting starts again


@pytest.mark.django_db
def test_another_username_from_the_same_address_is_not_locked_out():
    UserFactory(username="ops")
    UserFactory(username="colleague")
    for _ in range(3):
        _login("ops", "guess")

    assert _logged_in(_login("colleague", PASSWORD))


@pytest.mark.django_db
def test_the_same_username_from_another_address_is_not_locked_out():
    UserFactory(username="ops")
    for _ in range(3):
        _login("ops", "guess")

    assert _logged_in(_login("ops", PASSWORD, ip="198.51.100.20"))


@pytest.mark.django_db
def test_an_operator_with_access_unlocks_a_locked_account_from_the_admin():
    UserFactory(username="ops")
    for _ in range(3):
        _login("ops", "guess")
    assert _locked_out(_login("ops", PASSWORD))
    attempt = AccessAttempt.objects.get(username="ops")

    admin = Client()
    admin.force_login(UserFactory(username="root", is_superuser=True))
    listed = admin.get("/admin/axes/accessattempt/")
    assert listed.status_code == 200 and b"ops" in listed.content
    deleted = admin.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302

    assert _logged_in(_login("ops", PASSWORD))


@pytest.mark.django_db
def test_http_basic_on_the_api_is_counted_too_and_answers_in_the_error_shape():
    UserFactory(username="platform", is_superuser=True)
    client = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(3):
        client.get("/api/v1/tenants", HTTP_AUTHORIZATION=basic_auth("platform", "guess"))

    response = client.get("/api/v1/tenants", HTTP_AUTHORIZATION=basic_auth("platform", PASSWORD))

    assert response.status_code == 429
    body = response.json()
    assert body["errors"][0]["code"] == "login_locked_out" and body["requestId"]


@pytest.mark.django_db
def test_behind_the_proxy_the_address_is_the_one_the_proxy_appended(settings):
    UserFactory(username="ops")
    proxy = "10.0.0.2"
    for _ in range(3):
        Client(REMOTE_ADDR=proxy).post(
            LOGIN, {"username": "ops", "password": "guess"}, HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.7"
        )

    # A client inventing another first hop is still the same address to the lockout.
    again = Client(REMOTE_ADDR=proxy).post(
        LOGIN, {"username": "ops", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="8.8.8.8, 203.0.113.7"
    )
    assert _locked_out(again)
    # Another real client behind the same proxy is not.
    other = Client(REMOTE_ADDR=proxy).post(
        LOGIN, {"username": "ops", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="198.51.100.20"
    )
    assert _logged_in(other)


@pytest.mark.django_db
def test_a_tenant_operator_cannot_see_login_attempts(tenant):
    """They name other tenants' users and addresses: platform staff only."""
    UserFactory(username="ops")
    _login("ops", "guess")
    operator = Client()
    operator.force_login(OperatorFactory(tenant=tenant).user)

    assert operator.get("/admin/axes/accessattempt/").status_code == 403
    assert b"Access attempts" not in operator.get("/admin/").content
