"""Settings, read from environment variables with embedded defaults.

With no environment at all the platform runs on SQLite, the local-memory cache, the
in-memory channel layer and eager Celery tasks. `DATABASE_URL`, `REDIS_URL` and
`CELERY_BROKER_URL` switch each part to PostgreSQL, Redis and real Celery workers.
"""

import os
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# DJANGO_ENV=production turns on the deployment settings (docs/deployment.md): DEBUG off, a real
# SECRET_KEY required, HTTPS only (redirect, HSTS, secure cookies). Anything else is a local
# checkout or the tests, which keep the embedded defaults so `make run` needs no environment.
DJANGO_ENV = (os.environ.get("DJANGO_ENV") or "development").strip().lower()
PRODUCTION = DJANGO_ENV == "production"
DEBUG = env_bool("DEBUG", default=not PRODUCTION and not os.environ.get("DATABASE_URL"))
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off when DJANGO_ENV=production")
# The embedded default is only for a local checkout; any real deployment sets SECRET_KEY.
DEVELOPMENT_SECRET_KEY = "local-development-only-not-a-secret"
SECRET_KEY = os.environ.get("SECRET_KEY") or DEVELOPMENT_SECRET_KEY
if not DEBUG and SECRET_KEY == DEVELOPMENT_SECRET_KEY and (PRODUCTION or env_bool("REQUIRE_SECRET_KEY", default=False)):
    raise ImproperlyConfigured("SECRET_KEY must be set (and not the development key) when DJANGO_ENV=production")
if PRODUCTION and len(SECRET_KEY) < 50:
    # Django's own deploy check (security.W009) asks for 50 characters; refuse at start, not later.
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters long when DJANGO_ENV=production")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",  # full-text and trigram search lookups (inert on SQLite)
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "drf_standardized_errors",
    "django_prometheus",
    "django_guid",
    "channels",
    "import_export",
    "auditlog",
    "corsheaders",
    "axes",
    "core",
    "core.audit",  # after auditlog: its admin replaces auditlog's
    "tenants",
    "rewards",
    "campaigns",
    "tiers",
    "catalog",
    "redemptions",
    "insights",
]

MIDDLEWARE = [
    "django_guid.middleware.guid_middleware",
    "core.rls.tenant_scope_middleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",  # before CommonMiddleware, as django-cors-headers asks
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.rls.operator_scope_middleware",
    "core.audit.context.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.access_log_middleware",
    "axes.middleware.AxesMiddleware",  # turns a locked-out admin login into the lockout page
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
# Row-level security (core.rls): the role tenant-bound requests run as, walled in to their
# tenant by the tables' policies; empty turns the wall off. Sessions open as the platform
# (`app.tenant_id = '*'`); a tenant-bound request narrows its own.
DATABASE_APP_ROLE = os.environ.get("DATABASE_APP_ROLE", "loyalty_app")
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = f"{_options.get('options', '')} -c app.tenant_id=*".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# One transaction model: services own their transactions (see STYLE.md).
ATOMIC_REQUESTS = False

# Cache and Redis -----------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "loyalty"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 2,
                "SOCKET_TIMEOUT": 2,
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # Sockets wait for frames in 5-second blocking reads (BZPOPMIN); the Redis
                # client's read timeout (5 s by default since redis-py 8) must outlast them, or a
                # quiet socket fails after 5 s.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_keepalive": True}],
                # Room for a burst of frames to a socket that reads slowly (channels-redis drops beyond it).
                "capacity": 1000,
                "expiry": 120,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery ------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE") or "celery"
# CELERY_SPLIT_QUEUES=1 (docker-compose.yml) routes tasks to a queue per kind of work, each with
# its own workers, so slow partner calls or a cohort recompute never delay a member's
# notification: "events" (outbox relay, webhook deliveries), "redemptions" (partner fulfilment
# and its reconciliation), everything else on the default queue. Off: one queue, and a worker
# started without -Q runs everything (make run, the tests).
CELERY_SPLIT_QUEUES = env_bool("CELERY_SPLIT_QUEUES", default=False)
CELERY_TASK_ROUTES = (
    {
        "rewards.tasks.outbox_relay": {"queue": "events"},
        "tenants.tasks.*": {"queue": "events"},
        "redemptions.tasks.*": {"queue": "redemptions"},
    }
    if CELERY_SPLIT_QUEUES
    else {}
)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "lots-due": {"task": "rewards.tasks.lots_due_process", "schedule": timedelta(minutes=5)},
    "outbox-relay": {"task": "rewards.tasks.outbox_relay", "schedule": timedelta(seconds=5)},
    "points-expiring": {"task": "rewards.tasks.points_expiring_notify", "schedule": timedelta(hours=1)},
    "idempotency-keys-purge": {
        "task": "core.tasks.idempotency_records_purge",
        "schedule": timedelta(hours=1),
    },
    "audit-log-retention": {"task": "core.audit.tasks.audit_log_retention_apply", "schedule": timedelta(days=1)},
    "tiers-reevaluate": {"task": "tiers.tasks.tiers_reevaluate", "schedule": timedelta(hours=1)},
    "campaigns-schedule": {"task": "campaigns.tasks.campaigns_schedule_run", "schedule": timedelta(minutes=1)},
    "cohorts-recompute-due": {"task": "campaigns.tasks.cohorts_recompute_due", "schedule": timedelta(hours=1)},
    "credit-purchases-reconcile": {
        "task": "rewards.tasks.credit_purchases_reconcile_task",
        "schedule": timedelta(minutes=1),
    },
    "webhooks-due-sweep": {"task": "tenants.tasks.webhooks_due_sweep", "schedule": timedelta(seconds=30)},
    "redemptions-reconcile": {"task": "redemptions.tasks.redemptions_reconcile", "schedule": timedelta(minutes=1)},
    "reconcile": {"task": "insights.tasks.reconcile", "schedule": timedelta(hours=1)},
    "insights-rollups-update": {
        "task": "insights.tasks.rollups_update",
        "schedule": timedelta(seconds=int(os.environ.get("INSIGHTS_ROLLUP_INTERVAL_SECONDS") or 15)),
    },
}

# Auth, API, schema ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.ApiKeyAuthentication",
        "rewards.authentication.MemberTokenAuthentication",
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.api.permissions.IsTenantClient"],
    "DEFAULT_RENDERER_CLASSES": ["core.api.renderers.CamelCaseJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.CamelCaseJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "core.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "drf_standardized_errors.handler.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.PagePagination",
    # Counts only writes to views that name a `rate_limit_scope` (RATE_LIMITS below).
    "DEFAULT_THROTTLE_CLASSES": ["core.api.ratelimit.ScopedRateThrottle"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

# Hostile input (core.api.parsers): a JSON body larger than this is a 413 before it is parsed,
# and one nested deeper a 400 (Python's recursion limit would otherwise turn it into a 500).
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1024 * 1024)
API_MAX_JSON_DEPTH = env_int("API_MAX_JSON_DEPTH", 64)

DRF_STANDARDIZED_ERRORS = {
    "EXCEPTION_HANDLER_CLASS": "core.api.errors.ExceptionHandler",
    "EXCEPTION_FORMATTER_CLASS": "core.api.errors.ExceptionFormatter",
    "ENABLE_IN_DEBUG_FOR_UNHANDLED_EXCEPTIONS": True,
    "NESTED_FIELD_SEPARATOR": ".",
    # 409 and 422 are documented per endpoint, where a domain rule can raise them.
    "ALLOWED_ERROR_STATUS_CODES": ["400", "401", "403", "404", "405", "415", "500"],
}

# Nested free-form JSON (member attributes, explanations) keeps the client's own keys.
JSON_CAMEL_CASE = {
    "JSON_UNDERSCOREIZE": {
        "no_underscore_before_number": True,
        "ignore_fields": (
            "attributes",
            "explanation",
            "metadata",
            "payload",
            "data",
            "rule_json",
            "ruleJson",
            "names",  # VIP tier names by locale: keys are language tags (pt-BR), not field names
        ),
        "ignore_keys": None,
    }
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Loyalty platform API",
    "DESCRIPTION": (
        "Multi-tenant loyalty, rewards and incentives. Server-to-server calls send "
        "`X-API-Key`; member apps send `Authorization: Bearer <member token>`; platform "
        "admins use HTTP Basic. JSON is camelCase. Errors share one shape: "
        '`{"type": ..., "errors": [{"code", "detail", "attr"}], "requestId"}` where `attr` '
        "names the offending field. POSTs that move points accept an `Idempotency-Key`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "TenantStatusEnum": "tenants.models.Tenant.Status",
        "MemberStatusEnum": "rewards.models.Member.Status",
        "CreditPurchaseStatusEnum": "rewards.models.CreditPurchase.Status",
        "CohortKindEnum": "campaigns.models.Cohort.Kind",
        "CohortRunStatusEnum": "campaigns.models.CohortRun.Status",
        "CatalogItemKindEnum": "catalog.models.Item.Kind",
        "StockMovementKindEnum": "catalog.models.StockMovement.Kind",
        "RedemptionStatusEnum": "redemptions.models.Redemption.Status",
        "StockMovementRecordKindEnum": [("RESTOCK", "Restocked"), ("ADJUST", "Adjusted (count, damage, loss)")],
        "ValidationErrorEnum": "drf_standardized_errors.openapi_serializers.ValidationErrorEnum.choices",
        "ClientErrorEnum": "drf_standardized_errors.openapi_serializers.ClientErrorEnum.choices",
        "ServerErrorEnum": "drf_standardized_errors.openapi_serializers.ServerErrorEnum.choices",
        "ErrorCode401Enum": "drf_standardized_errors.openapi_serializers.ErrorCode401Enum.choices",
        "ErrorCode403Enum": "drf_standardized_errors.openapi_serializers.ErrorCode403Enum.choices",
        "ErrorCode404Enum": "drf_standardized_errors.openapi_serializers.ErrorCode404Enum.choices",
        "ErrorCode405Enum": "drf_standardized_errors.openapi_serializers.ErrorCode405Enum.choices",
        "ErrorCode406Enum": "drf_standardized_errors.openapi_serializers.ErrorCode406Enum.choices",
        "ErrorCode415Enum": "drf_standardized_errors.openapi_serializers.ErrorCode415Enum.choices",
        "ErrorCode429Enum": "drf_standardized_errors.openapi_serializers.ErrorCode429Enum.choices",
        "ErrorCode500Enum": "drf_standardized_errors.openapi_serializers.ErrorCode500Enum.choices",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_standardized_errors.openapi_hooks.postprocess_schema_enums",
        "drf_spectacular.contrib.djangorestframework_camel_case.camelize_serializer_fields",
        "core.api.schema.camelize_error_attrs",
        "core.api.schema.open_error_codes",
        "core.api.schema.add_request_id_to_errors",
    ],
}

# Member tokens (JWT) and API keys -------------------------------------------------------
MEMBER_TOKEN_SIGNING_KEY = os.environ.get("MEMBER_TOKEN_SIGNING_KEY") or SECRET_KEY
MEMBER_TOKEN_TTL = timedelta(seconds=env_int("MEMBER_TOKEN_TTL_SECONDS", 900))
MEMBER_TOKEN_ISSUER = os.environ.get("MEMBER_TOKEN_ISSUER", "loyalty-platform")
MEMBER_TOKEN_AUDIENCE = "loyalty-member"

# The member WebSocket (/ws): browser origins allowed to open it (patterns as ALLOWED_HOSTS, or
# scheme://host[:port]; apps sending no Origin are allowed), and how long a socket opened
# without a token may wait for its `auth` frame.
WEBSOCKET_ALLOWED_ORIGINS = env_list("WEBSOCKET_ALLOWED_ORIGINS", ALLOWED_HOSTS)
WEBSOCKET_AUTH_TIMEOUT = timedelta(seconds=env_int("WEBSOCKET_AUTH_TIMEOUT_SECONDS", 10))

# Members are told (points.expiring) this many days before points expire.
POINTS_EXPIRING_NOTICE_DAYS = env_int("POINTS_EXPIRING_NOTICE_DAYS", 7)

# The outbox relay is queued after every commit that writes outbound events (beat also sweeps).
OUTBOX_RELAY_ON_COMMIT = env_bool("OUTBOX_RELAY_ON_COMMIT", default=True)

# Idempotency-Key records are kept at least this long (the API promises 24 h).
IDEMPOTENCY_KEY_TTL = timedelta(hours=env_int("IDEMPOTENCY_KEY_TTL_HOURS", 48))
# A request that died mid-flight frees its key after this long.
IDEMPOTENCY_LOCK_TIMEOUT = timedelta(seconds=env_int("IDEMPOTENCY_LOCK_TIMEOUT_SECONDS", 60))

# The VIP tier endpoints answer at most this many requests a second per tenant (seed 004); 0: no limit.
TIER_RATE_LIMIT_PER_SECOND = env_int("TIER_RATE_LIMIT_PER_SECOND", 100)

# Rate limits of the endpoints that move points or stock (core/api/ratelimit.py), per scope and
# bucket: per API key and per member (the member token's, or the memberRef an API-key call acts
# for), fixed windows ("N/s", "N/min", "N/hour", "N/day"; None or 0: no limit). A batch of events
# counts as its number of events against the API key. Each can be set from the environment, e.g.
# RATE_LIMIT_EVENTS_MEMBER=600/min; RATE_LIMITS_ENABLED=0 turns them all off (the load benchmark).
RATE_LIMITS_ENABLED = env_bool("RATE_LIMITS_ENABLED", default=True)
RATE_LIMITS = {
    scope: {bucket: os.environ.get(f"RATE_LIMIT_{scope}_{bucket}".upper(), rate) for bucket, rate in rates.items()}
    for scope, rates in {
        "events": {"api_key": "30000/min", "member": "1200/min"},  # POST /events, /events:batch
        "points": {"api_key": "6000/min", "member": "600/min"},  # POST /members/{memberRef}/adjustments
        "redemptions": {"api_key": "6000/min", "member": "120/min"},  # POST /redemptions, :cancel
        "purchases": {"api_key": "1200/min", "member": "60/min"},  # POST /credit-purchases
        "stock": {"api_key": "3000/min", "member": None},  # POST /catalog/items/{itemId}/stock-movements
    }.items()
}

# Credit purchases: the payment gateway adapter ("http", or the dotted path of a class with the
# same interface), where the HTTP gateway listens (the sandbox in development and tests) and how
# long a charge may take before its outcome counts as unknown and is left to reconciliation.
PAYMENT_GATEWAY = os.environ.get("PAYMENT_GATEWAY", "http")
PAYMENT_GATEWAY_URL = os.environ.get("PAYMENT_GATEWAY_URL", "http://127.0.0.1:8025")
PAYMENT_GATEWAY_TIMEOUT_SECONDS = float(os.environ.get("PAYMENT_GATEWAY_TIMEOUT_SECONDS") or 5)
# A purchase still PENDING this long is looked up at the gateway (celery beat, every minute) ...
CREDIT_PURCHASE_RECONCILE_AFTER = timedelta(seconds=env_int("CREDIT_PURCHASE_RECONCILE_AFTER_SECONDS", 60))
# ... and one the gateway has no record of this long after it started is FAILED (never charged).
CREDIT_PURCHASE_FAIL_AFTER = timedelta(seconds=env_int("CREDIT_PURCHASE_FAIL_AFTER_SECONDS", 15 * 60))

# Redemptions: how the fulfilment workflow paces itself. A fulfilment attempt that fails
# transiently is tried again after REDEMPTION_RETRY_BASE_SECONDS * 2^(attempt-1) (with jitter),
# up to REDEMPTION_MAX_ATTEMPTS attempts; then the redemption fails and is refunded. A worker
# holds a FULFILLING redemption for the partner's worst-case call time plus the margin; past
# that another worker may take it over (the partner's idempotency key makes that safe).
# Reconciliation (beat, every minute) resumes what sat still longer than STUCK_AFTER.
REDEMPTION_FULFIL_ON_COMMIT = env_bool("REDEMPTION_FULFIL_ON_COMMIT", default=True)
REDEMPTION_MAX_ATTEMPTS = env_int("REDEMPTION_MAX_ATTEMPTS", 5)
REDEMPTION_RETRY_BASE_SECONDS = float(os.environ.get("REDEMPTION_RETRY_BASE_SECONDS") or 5)
REDEMPTION_LEASE_MARGIN_SECONDS = float(os.environ.get("REDEMPTION_LEASE_MARGIN_SECONDS") or 30)
REDEMPTION_STUCK_AFTER = timedelta(seconds=env_int("REDEMPTION_STUCK_AFTER_SECONDS", 120))
# Development only (the default with DEBUG): let partner URLs point at private and loopback
# addresses, where the sandbox partner listens.
REDEMPTION_PARTNER_ALLOW_PRIVATE_TARGETS = env_bool("REDEMPTION_PARTNER_ALLOW_PRIVATE_TARGETS", default=DEBUG)
# A real partner's adapter per item kind (dotted class paths), instead of the HTTP one.
REDEMPTION_PARTNER_ADAPTERS: dict[str, str] = {}
# The most units of one item a single redemption may ask for.
REDEMPTION_MAX_QUANTITY = env_int("REDEMPTION_MAX_QUANTITY", 100)

# Insights (insights/). Spending rollups are brought up to date from processed events by a
# beat task every INSIGHTS_ROLLUP_INTERVAL_SECONDS (above); answers are cached for
# INSIGHTS_CACHE_SECONDS and retired when the member's rollups change.
INSIGHTS_CACHE_SECONDS = env_int("INSIGHTS_CACHE_SECONDS", 300)
# Without a broker there is no beat: reading insights first brings the rollups up to date.
INSIGHTS_ROLLUPS_ON_READ = env_bool("INSIGHTS_ROLLUPS_ON_READ", default=CELERY_TASK_ALWAYS_EAGER)
# Value optimization: per-kind value-per-point rates are cached this long (seed 000's "rates").
INSIGHTS_RATES_CACHE_SECONDS = env_int("INSIGHTS_RATES_CACHE_SECONDS", 600)
# Points expiring within this many days are surfaced by recommendations.
INSIGHTS_EXPIRING_SOON_DAYS = env_int("INSIGHTS_EXPIRING_SOON_DAYS", 30)
# The optional LLM provider for POST /api/v1/ai/recommendation (an OpenAI-compatible chat
# completions endpoint). Unset: the rule-based engine answers. Any error, a timeout or an
# answer that is not the expected JSON falls back to the rules.
AI_PROVIDER_URL = os.environ.get("AI_PROVIDER_URL", "")
AI_PROVIDER_MODEL = os.environ.get("AI_PROVIDER_MODEL", "")
AI_PROVIDER_API_KEY = os.environ.get("AI_PROVIDER_API_KEY", "")
AI_PROVIDER_TIMEOUT_SECONDS = float(os.environ.get("AI_PROVIDER_TIMEOUT_SECONDS") or 30)
# Analytics export pages (GET /api/v1/exports/...): rows per page at most.
EXPORT_PAGE_MAX = env_int("EXPORT_PAGE_MAX", 10_000)

# The load benchmark's baseline endpoint (/_bench/baseline, core.api.baseline): a 404 unless on.
BENCH_BASELINE_ENDPOINT = env_bool("BENCH_BASELINE_ENDPOINT", default=False)

# The member demo app (/demo/, config.demo): signs in as a member of the tenant with this slug
# and hands that tenant's member tokens to whoever opens it, so it is for development only (a
# 404 unless on).
DEMO_APP_ENABLED = env_bool("DEMO_APP_ENABLED", default=DEBUG)
DEMO_APP_TENANT = os.environ.get("DEMO_APP_TENANT") or "demo"

# Limits a new tenant starts with (points issued); None means unlimited.
DEFAULT_TENANT_LIMITS = {
    "GLOBAL": {"max_per_day": None, "max_total": None, "window_days": None},
    "USER": {"max_per_day": 100_000, "max_total": None, "window_days": None},
}

# Request ids --------------------------------------------------------------------------
DJANGO_GUID = {
    "GUID_HEADER_NAME": "X-Request-ID",
    "VALIDATE_GUID": True,
    "RETURN_HEADER": True,
    "EXPOSE_HEADER": True,
    "INTEGRATIONS": [],
}


def _celery_integration():
    from django_guid.integrations import CeleryIntegration

    return CeleryIntegration(use_django_logging=True, log_parent=True)


DJANGO_GUID["INTEGRATIONS"] = [_celery_integration()]

# Audit log (django-auditlog; the audited models are in core/audit/tracking.py) ------------
# An entry's correlation id is the request id of the request or task that made it.
AUDITLOG_CID_GETTER = "django_guid.get_guid"
# Entries older than this many days are deleted once a day (core/audit/tasks.py); 0 keeps them all.
AUDIT_LOG_RETENTION_DAYS = env_int("AUDIT_LOG_RETENTION_DAYS", 365)

# Logging: one JSON object per line, each carrying the request id ------------------------
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOG_FORMAT = os.environ.get("LOG_FORMAT", "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "django_guid.log_filters.CorrelationId"},
        "celery_tracing": {"()": "django_guid.integrations.celery.log_filters.CeleryTracing"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
            "rename_fields": {
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "correlation_id": "requestId",
            },
        },
        "text": {"format": "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["request_id", "celery_tracing"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        "django_guid": {"level": "WARNING"},
    },
}

# I18n, static ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]  # the demo app's script and styles (static/demo/)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
# Uploaded files (catalog images). Served by the app under MEDIA_URL unless SERVE_MEDIA is off,
# for deployments that put them behind object storage or a CDN instead.
MEDIA_URL = os.environ.get("MEDIA_URL", "/media/")
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or BASE_DIR / "media")
SERVE_MEDIA = env_bool("SERVE_MEDIA", default=True)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Catalog images larger than this are refused (bytes).
CATALOG_IMAGE_MAX_BYTES = env_int("CATALOG_IMAGE_MAX_BYTES", 5 * 1024 * 1024)
# Catalog search results are cached this long (seed 003: five minutes); any item change
# of the tenant retires them at once.
CATALOG_SEARCH_CACHE_SECONDS = env_int("CATALOG_SEARCH_CACHE_SECONDS", 300)
# Without collectstatic, WhiteNoise serves from the app finders; the empty STATIC_ROOT is expected.
warnings.filterwarnings("ignore", message="No directory at", module="whitenoise.base")

# Webhooks ------------------------------------------------------------------------------
# A failing delivery is retried with exponential backoff (base * 2^n, capped, with jitter) for
# this long after its first attempt, then dead-lettered. The issue promises at least 24 hours.
WEBHOOK_RETRY_BUDGET_SECONDS = env_int("WEBHOOK_RETRY_BUDGET_SECONDS", 25 * 60 * 60)
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 10)
WEBHOOK_RETRY_MAX_DELAY_SECONDS = env_int("WEBHOOK_RETRY_MAX_DELAY_SECONDS", 60 * 60)
# Connect and read timeout of one delivery attempt.
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS") or 10)
# Development only: let endpoints point at private, loopback and link-local addresses.
WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)
if WEBHOOK_RETRY_BUDGET_SECONDS < 24 * 60 * 60 and not DEBUG:
    raise ImproperlyConfigured("WEBHOOK_RETRY_BUDGET_SECONDS must be at least 86400 (24 hours) outside DEBUG")
# End of webhooks -----------------------------------------------------------------------

# Transport security -------------------------------------------------------------------
# Behind a TLS-terminating proxy: the header (and value) the proxy sets on HTTPS requests,
# "X-Forwarded-Proto: https" unless SECURE_PROXY_SSL_HEADER says otherwise; "off" when the
# server is reached directly, since a client could then claim HTTPS by sending the header.
_proxy_ssl_header = os.environ.get("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto: https").strip()
if _proxy_ssl_header.lower() in {"", "off", "none", "0"}:
    SECURE_PROXY_SSL_HEADER = None
else:
    _name, _, _value = _proxy_ssl_header.partition(":")
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _name.strip().upper().replace("-", "_"), _value.strip() or "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
# Load balancers probe over plain HTTP inside the network; a redirect would read as "down".
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$", r"^metrics$"]
# HSTS: a year once in production (browsers then refuse plain HTTP to the host); 0 elsewhere so a
# local checkout served over http://localhost is never pinned to HTTPS.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 60 * 60 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
# Headers on every response, in every environment (the tests check them).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"  # nothing here is meant to be framed: no clickjacking of the back office

# CORS (django-cors-headers): browser origins allowed to call the API, only under /api/. None by
# default: server-to-server calls and native apps need no CORS; a web app's origin is added
# explicitly, e.g. CORS_ALLOWED_ORIGINS=https://app.example.com. No cookies cross origins (the
# API authenticates with headers).
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
    "x-api-key",
    "x-request-id",
)
CORS_EXPOSE_HEADERS = ("etag", "retry-after", "x-request-id", "x-search-match")

# Admin login brute-force protection (django-axes) ---------------------------------------
# AXES_FAILURE_LIMIT wrong passwords for one username from one IP address lock that pair out
# for AXES_COOLOFF_MINUTES; the same username from another address, and other usernames from
# the same address, still get through (a stolen list of usernames cannot lock everyone out from
# one place, and one operator's typos do not lock their colleagues out). Platform staff unlock an
# operator early by deleting their rows under Axes > Access attempts in the admin (operators never
# see that page), or `manage.py axes_reset_username <username>`.
AUTHENTICATION_BACKENDS = [
    "core.auth_backends.LoginAttemptsBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "axes/lockout.html"
# Behind the proxy the client's address is the last one the proxy appended to X-Forwarded-For.
AXES_CLIENT_IP_CALLABLE = "core.auth_backends.client_ip"
AXES_LOCKOUT_CALLABLE = "core.auth_backends.lockout_response"
AXES_VERBOSE = False
