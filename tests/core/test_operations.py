import json
import logging
import uuid

import pytest
from django.test import override_settings

from config import health
from rewards.models import Member, Transfer


def test_health_is_a_liveness_check(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_ready_checks_database_and_cache(client):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "cache": "ok"}


@pytest.mark.django_db
def test_ready_names_what_failed(client, monkeypatch):
    def broken_cache():
        raise ConnectionError("cache is down")

    monkeypatch.setattr(health, "_check_cache", broken_cache)
    response = client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["cache"]
    assert body["checks"]["database"] == "ok"


@pytest.mark.django_db
@override_settings(CELERY_TASK_ALWAYS_EAGER=False)
def test_ready_checks_the_broker_when_one_is_configured(client, monkeypatch):
    from config.celery import app

    monkeypatch.setattr(app.conf, "broker_url", "amqp://guest:guest@127.0.0.1:1//")
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["failed"] == ["broker"]


@pytest.mark.django_db
def test_metrics_expose_request_latency_by_view_and_ledger_counters(
    client, api_client, member, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        api_client.post(
            f"/api/v1/members/{member.external_ref}/adjustments", {"points": 5, "reason": "r"}, format="json"
        )
    text = client.get("/metrics").content.decode()
    assert "django_http_requests_latency_seconds_by_view_method_bucket" in text
    assert 'view="member-adjustments"' in text
    assert 'loyalty_transfers_total{kind="ADJUSTMENT"}' in text


@pytest.mark.django_db
def test_request_id_is_echoed_and_generated(client):
    given = uuid.uuid4().hex
    assert client.get("/health", HTTP_X_REQUEST_ID=given)["X-Request-ID"] == given
    generated = client.get("/health")["X-Request-ID"]
    assert generated and generated != given


@pytest.mark.django_db
def test_errors_carry_the_request_id(api_client):
    given = uuid.uuid4().hex
    response = api_client.get("/api/v1/members/nobody", HTTP_X_REQUEST_ID=given)
    assert response.status_code == 404
    assert response.json()["requestId"] == given


@pytest.mark.django_db
def test_logs_are_json_lines_with_the_request_id(client, capsys):
    # given the configured console handler (JSON formatter with the request-id filter)
    handler = logging.getLogger().handlers[0]
    records = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(handler.format(record) if handler.filter(record) else None)

    capture = Capture()
    logging.getLogger("loyalty.access").addHandler(capture)
    try:
        given = uuid.uuid4().hex
        client.get("/health", HTTP_X_REQUEST_ID=given)
    finally:
        logging.getLogger("loyalty.access").removeHandler(capture)
    line = json.loads(records[-1])
    assert line["requestId"] == given
    assert line["route"] == "health"
    assert line["status"] == 200
    assert line["level"] == "INFO"


def test_unknown_api_url_is_a_json_404(client, settings):
    settings.DEBUG = False
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"


@pytest.mark.django_db
def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ["/api/v1/tenants", "/api/v1/tenants/{tenant_id}/limits", "/api/v1/members/{member_ref}/adjustments"]:
        assert path in paths
    adjust = paths["/api/v1/members/{member_ref}/adjustments"]["post"]
    assert {"201", "400", "401", "404", "409", "422"} <= set(adjust["responses"])
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_balanced(capsys):
    from django.core.management import call_command

    from rewards.selectors import ledger_verify
    from tenants.models import Tenant

    call_command("seed_demo", members=5)
    first = capsys.readouterr().out
    counts = (Member.objects.count(), Transfer.objects.count())
    call_command("seed_demo", members=5)
    second = capsys.readouterr().out
    assert (Member.objects.count(), Transfer.objects.count()) == counts
    assert counts[0] == 5 and counts[1] >= 10
    tenant = Tenant.objects.get(slug="demo")
    assert ledger_verify(tenant=tenant).ok
    # each run prints a working API key (the previous one is revoked)
    assert "demo / demo" in first and "admin / admin" in second
    assert tenant.api_keys.filter(revoked_at__isnull=True).count() == 1


@pytest.mark.django_db
def test_nul_characters_in_json_are_a_400_naming_the_field(api_client):
    response = api_client.post(
        "/api/v1/members",
        '{"memberRef": "m-nul", "attributes": {"nick": "a\\u0000b"}}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "attributes.nick"
    assert not Member.objects.filter(external_ref="m-nul").exists()
