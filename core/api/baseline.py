"""The load benchmark's baseline (`bench/load`): the cheapest write the platform's stack can
serve, one UPDATE and one INSERT in one transaction through the same middleware, DRF and
database as every endpoint. The benchmark compares each endpoint's throughput with it.

Mounted at `/_bench/baseline`, outside the API and its schema, and a 404 unless
`BENCH_BASELINE_ENDPOINT` is on. Its tables exist only in the benchmark's database
(`baseline_tables_create`).
"""

import random

from django.conf import settings
from django.db import connection, transaction
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

COUNTERS = 1_000  # the UPDATEs spread over this many rows, so none of them is a hot row

TABLES = (
    "CREATE TABLE IF NOT EXISTS bench_baseline_counter (id integer PRIMARY KEY, n bigint NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS bench_baseline_log "
    "(id bigserial PRIMARY KEY, counter_id integer NOT NULL, n bigint NOT NULL, "
    "at timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO bench_baseline_counter (id) SELECT generate_series(1, %s) ON CONFLICT DO NOTHING",
)


def baseline_tables_create() -> None:
    """Create the baseline's tables and counter rows in the current database (idempotent)."""
    with connection.cursor() as cursor:
        for statement in TABLES:
            cursor.execute(statement, [COUNTERS] if "%s" in statement else None)


class BaselineApi(APIView):
    authentication_classes = []
    permission_classes = []
    throttle_classes = []

    @extend_schema(exclude=True)
    def post(self, request):
        if not settings.BENCH_BASELINE_ENDPOINT:
            raise Http404
        counter_id = random.randint(1, COUNTERS)  # noqa: S311 - spreading load, not a secret
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE bench_baseline_counter SET n = n + 1 WHERE id = %s RETURNING n", [counter_id])
            n = cursor.fetchone()[0]
            cursor.execute("INSERT INTO bench_baseline_log (counter_id, n) VALUES (%s, %s)", [counter_id, n])
        return Response({"counter": counter_id, "n": n})
