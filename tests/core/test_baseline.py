"""The load benchmark's baseline endpoint: off unless asked for; one UPDATE and one INSERT."""

import pytest
from django.db import connection
from rest_framework.test import APIClient

from core.api.baseline import COUNTERS, baseline_tables_create

pytestmark = pytest.mark.django_db


def _state() -> tuple[int, int, int]:
    """(sum of the counters, counters above zero, log rows)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(n), 0), count(*) FILTER (WHERE n > 0) FROM bench_baseline_counter")
        total, touched = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM bench_baseline_log")
        return total, touched, cursor.fetchone()[0]


def test_it_is_not_found_unless_switched_on(settings):
    settings.BENCH_BASELINE_ENDPOINT = False

    response = APIClient().post("/_bench/baseline")

    assert response.status_code == 404


def test_one_call_updates_one_counter_and_logs_one_row(settings):
    # given the benchmark's tables, and the endpoint switched on
    settings.BENCH_BASELINE_ENDPOINT = True
    baseline_tables_create()
    assert _state() == (0, 0, 0)

    # when it is called once, with no credentials
    response = APIClient().post("/_bench/baseline")

    # then one counter moved by one and one row was logged, naming that counter
    assert response.status_code == 200, response.content
    assert _state() == (1, 1, 1)
    body = response.json()
    assert 1 <= body["counter"] <= COUNTERS and body["n"] == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT counter_id, n FROM bench_baseline_log")
        assert cursor.fetchall() == [(body["counter"], 1)]


def test_creating_the_tables_again_keeps_what_they_hold(settings):
    settings.BENCH_BASELINE_ENDPOINT = True
    baseline_tables_create()
    APIClient().post("/_bench/baseline")

    baseline_tables_create()

    assert _state() == (1, 1, 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM bench_baseline_counter")
        assert cursor.fetchone()[0] == COUNTERS
