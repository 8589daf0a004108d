"""Row-level security: PostgreSQL's own wall between tenants, behind the query scoping.

Every table with a `tenant_id` column has the policy `tenant_isolation`: a row is visible and
writable only while the session's `app.tenant_id` names its tenant, or is `*` (the platform).
Policies bind a role that neither owns the tables nor is a superuser: the application role,
`DATABASE_APP_ROLE` (default `loyalty_app`). Its grants and the policies are made by
`rls_sync`, which `migrate` runs after every migration (post_migrate), so a table added by a
later migration is covered by the same `migrate` that creates it; a test checks that every
tenant table has its policy.

Who is walled in:

- A request authenticated as a tenant (an API key or a member token; called by the
  authentication classes) or made by an operator signed in to the back office
  (`operator_scope_middleware`) switches its session to the application role and that tenant
  (`tenant_scope_enter`), and back when the response is done (`tenant_scope_middleware`).
  From then on, whatever the view's queries say, the database returns and accepts that
  tenant's rows only.
- Everything else is a platform path and says so: the connection opens with
  `app.tenant_id = '*'` (`DATABASES OPTIONS`), which tasks, management commands, platform
  staff in the back office and the authentication lookups themselves (finding the tenant of
  an API key) run under.

In production the platform connects as a role that owns nothing (the deployment guide has the
statements), so the wall holds for every path that narrows its session. Tests connect as the
owner, which RLS does not bind, and the tenant-bound requests still switch to the
application role, so the whole API test suite runs behind the wall.
"""

import logging
import threading

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)

POLICY = "tenant_isolation"
PLATFORM = "*"
SETTING = "app.tenant_id"

# What the wall costs a tenant-bound request: one statement narrowing its session, one
# widening it again at the end (query counts pinned in tests add it).
WALL_QUERIES = 2

_scope = threading.local()


def enabled() -> bool:
    return connection.vendor == "postgresql" and bool(settings.DATABASE_APP_ROLE)


def tenant_tables() -> list[str]:
    """Tables of installed models whose rows belong to one tenant (a `tenant` foreign key)."""
    tables = set()
    for model in apps.get_models(include_auto_created=True):
        if model._meta.proxy or not model._meta.managed:
            continue
        field = next((f for f in model._meta.concrete_fields if f.name == "tenant"), None)
        related = getattr(field, "related_model", None)
        if related is not None and related._meta.label == "tenants.Tenant":
            tables.add(model._meta.db_table)
    return sorted(tables)


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def rls_sync(**_signal_kwargs) -> None:
    """Create the application role if missing, grant it the tables and sequences, and give
    every tenant table row-level security with the one policy. Idempotent."""
    if not enabled():
        return
    role = _quote(settings.DATABASE_APP_ROLE)
    literal_role = settings.DATABASE_APP_ROLE.replace("'", "''")
    visible = (
        f"current_setting('{SETTING}', true) = '{PLATFORM}' OR tenant_id = "
        f"NULLIF(NULLIF(current_setting('{SETTING}', true), '{PLATFORM}'), '')::uuid"
    )
    with connection.cursor() as cursor:
        # Roles are the cluster's; two databases migrating at once may both try to create it.
        cursor.execute(
            f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{literal_role}') THEN
                    CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS;
                END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$
            """
        )
        # The connecting role switches to it; granted only when it is not already a member (a
        # deployment's DBA grants it once: docs/deployment.md).
        cursor.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", [settings.DATABASE_APP_ROLE])
        if not cursor.fetchone()[0]:
            cursor.execute(f"GRANT {role} TO CURRENT_USER")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        # Tables made later by the same owner (outside migrations) are the role's too.
        defaults = "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT"
        cursor.execute(f"{defaults} SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}")
        cursor.execute(f"{defaults} USAGE, SELECT, UPDATE ON SEQUENCES TO {role}")
        for table in tenant_tables():
            cursor.execute(f"ALTER TABLE {_quote(table)} ENABLE ROW LEVEL SECURITY")
            cursor.execute(f"DROP POLICY IF EXISTS {POLICY} ON {_quote(table)}")
            cursor.execute(f"CREATE POLICY {POLICY} ON {_quote(table)} USING ({visible}) WITH CHECK ({visible})")


def tenant_scope_enter(tenant_id) -> None:
    """Narrow this connection to one tenant's rows, as the application role, until
    `tenant_scope_exit` (the end of the request)."""
    if not enabled():
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('role', %s, false), set_config(%s, %s, false)",
            [settings.DATABASE_APP_ROLE, SETTING, str(tenant_id)],
        )
    _scope.connection = connection.connection
    _scope.tenant_id = str(tenant_id)


def tenant_scope_current() -> str | None:
    """The tenant this thread's connection is narrowed to, or None (a platform path)."""
    return getattr(_scope, "tenant_id", None)


def tenant_scope_exit() -> None:
    """Back to the platform: the connection's own role and `app.tenant_id = '*'`. A connection
    that cannot be reset (broken by the request) is closed rather than reused narrowed."""
    if getattr(_scope, "tenant_id", None) is None:
        return
    _scope.tenant_id = None
    if connection.connection is None or connection.connection is not _scope.connection:
        return  # closed or replaced since: a new connection opens as the platform
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('role', 'none', false), set_config(%s, %s, false)", [SETTING, PLATFORM])
    except DatabaseError:
        logger.warning("closing a connection whose tenant scope could not be reset")
        if not connection.in_atomic_block:
            connection.close()
    finally:
        _scope.connection = None


def operator_scope_middleware(get_response):
    """An operator signed in to the back office (or the API, by session) is walled in to the
    tenant they operate; platform staff (no operator) stay the platform."""

    def middleware(request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            operator = getattr(user, "operator", None)
            if operator is not None:
                tenant_scope_enter(operator.tenant_id)
        return get_response(request)

    return middleware


def tenant_scope_middleware(get_response):
    """Whatever a request narrowed its connection to ends with the response."""

    def middleware(request):
        try:
            return get_response(request)
        finally:
            tenant_scope_exit()

    return middleware
