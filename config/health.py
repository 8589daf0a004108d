"""Liveness and readiness for load balancers and orchestrators."""

import logging
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)

# The AI provider's probe waits at most this long: readiness probes time out in a second or
# two, and a slow optional provider must not turn "degraded" into "not ready".
AI_PROVIDER_PROBE_SECONDS = 1.0


def health(request):
    """Liveness: the process answers. Checks nothing else."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key, value = f"ready:{uuid.uuid4().hex}", "1"
    cache.set(key, value, timeout=5)
    if cache.get(key) != value:
        raise RuntimeError("cache did not return the value it was given")
    cache.delete(key)


def _check_broker() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _check_ai_provider() -> None:
    from insights.ai.llm import provider_probe

    provider_probe(
        url=settings.AI_PROVIDER_URL, timeout=min(settings.AI_PROVIDER_TIMEOUT_SECONDS, AI_PROVIDER_PROBE_SECONDS)
    )


def ready(request):
    """Readiness: the database, the cache and (when configured) the broker answer. 503 names
    what failed. The AI provider (when configured) is optional, since recommendations fall
    back to rules without it: when it does not answer it is reported as degraded, still 200."""
    checks = {"database": _check_database, "cache": _check_cache}
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        checks["broker"] = _check_broker
    optional = {"aiProvider": _check_ai_provider} if settings.AI_PROVIDER_URL else {}
    results, failed, degraded = {}, [], []
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            logger.warning("readiness check failed", extra={"check": name, "error": str(exc)})
            results[name] = f"error: {exc.__class__.__name__}"
            failed.append(name)
    for name, check in optional.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "degraded"
            logger.warning("readiness check degraded", extra={"check": name, "error": str(exc)})
            results[name] = "degraded"
            degraded.append(name)
    body = {"status": "unavailable" if failed else "degraded" if degraded else "ok", "checks": results}
    if failed:
        body["failed"] = failed
    if degraded:
        body["degraded"] = degraded
    return JsonResponse(body, status=503 if failed else 200)
