"""Production settings (DJANGO_ENV=production): Django's deployment checklist passes with no
warning, the process refuses to start without a real SECRET_KEY, and every response carries the
security headers. CORS answers only for the origins configured, and only under /api/."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """manage.py in a fresh process with exactly these environment variables on top of PATH:
    settings are read once at import, so production must be a process of its own."""
    environ = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "loyalty.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://loyalty.example.com",
}


def test_production_settings_pass_the_deploy_check_with_no_warning():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in output, output
    assert "WARNING" not in output and "?: (" not in output, output


def test_the_development_settings_do_fail_the_deploy_check():
    """The check above is not passing by accident: without DJANGO_ENV it does find problems."""
    result = _manage("check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=PRODUCTION["SECRET_KEY"])

    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # no HSTS


@pytest.mark.parametrize(
    ("secret_key", "message"),
    [
        (None, "SECRET_KEY must be set"),
        ("local-development-only-not-a-secret", "SECRET_KEY must be set"),
        ("short-but-set", "at least 50 characters"),
    ],
)
def test_production_refuses_to_start_without_a_real_secret_key(secret_key, message):
    env = {**PRODUCTION}
    env.pop("SECRET_KEY")
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key

    result = _manage("check", **env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr, result.stderr


def test_production_refuses_debug():
    result = _manage("check", DEBUG="1", **PRODUCTION)

    assert result.returncode != 0
    assert "DEBUG must be off" in result.stderr, result.stderr


@pytest.mark.django_db
def test_every_response_carries_the_security_headers():
    for response in (APIClient().get("/health"), APIClient().get("/admin/login/"), APIClient().get("/api/v1/me")):
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.django_db
def test_production_redirects_http_and_sends_hsts_over_https(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True

    plain = APIClient().get("/api/v1/me")
    assert plain.status_code == 301
    assert plain["Location"].startswith("https://")

    behind_proxy = APIClient().get("/api/v1/me", HTTP_X_FORWARDED_PROTO="https")
    assert behind_proxy.status_code == 401  # reached the API: the proxy said HTTPS
    assert behind_proxy["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"

    # A load balancer's plain-HTTP probe is not redirected.
    assert APIClient().get("/health").status_code == 200


def test_session_and_csrf_cookies_are_secure_in_production():
    result = _manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SESSION_COOKIE_HTTPONLY, s.SECURE_SSL_REDIRECT, s.CORS_ALLOWED_ORIGINS, s.DEBUG)",
        **PRODUCTION,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == ["True", "True", "True", "True", "[]", "False"]


@pytest.mark.django_db
def test_cors_allows_only_configured_origins_and_only_the_api(settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    client = APIClient()
    preflight = {
        "HTTP_ORIGIN": "https://app.example.com",
        "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST",
        "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "authorization, content-type, idempotency-key",
    }

    allowed = client.options("/api/v1/me", **preflight)
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "idempotency-key" in allowed["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in allowed

    other_origin = client.options("/api/v1/me", **{**preflight, "HTTP_ORIGIN": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in other_origin

    not_the_api = client.options("/admin/login/", **preflight)
    assert "Access-Control-Allow-Origin" not in not_the_api


@pytest.mark.django_db
def test_no_origin_is_allowed_by_default():
    response = APIClient().get("/api/v1/me", HTTP_ORIGIN="https://app.example.com")

    assert "Access-Control-Allow-Origin" not in response
