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
- A Celery task says which it is (`ScopedTask`, every task's base): `tenant_of="app.Model"`
  runs it narrowed to the tenant of the row its first argument names (`tenant_arg` names
  another argument), and widened again when it returns or raises; `platform=True` is a
  sweep over every tenant, which narrows each tenant's share of the work itself
  (`tenant_scope`) where it does it one tenant at a time. A worker also resets its
  connection to the platform before and after every task (`task_scope_reset`), so a task
  never starts inside what another left behind.
- The member WebSocket (rewards.consumers) reads the database narrowed to the member's tenant.
- Everything else is a platform path and says so: the connection opens with
  `app.tenant_id = '*'` (`DATABASES OPTIONS`), which platform tasks, management commands,
  platform staff in the back office and the authentication lookups themselves (finding the
  tenant of an API key) run under.

In production the platform connects as a role that owns nothing (the deployment guide has the
statements), so the wall holds for every path that narrows its session. Tests connect as the
owner, which RLS does not bind, and the tenant-bound requests still switch to the
application role, so the whole API test suite runs behind the wall.
"""

import inspect
import logging
import threading
from contextlib import contextmanager

from celery import Task
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import Error, connection

from core.ids import uuid_or_none

logger = logging.getLogger(__name__)

POLICY = "tenant_isolation"
PLATFORM = "*"
# A session naming no tenant: the application role sees no tenant's rows at all (a task whose
# row is gone runs so, rather than as the platform).
NOBODY = ""
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
        _reset_or_close()
    finally:
        _scope.connection = None


def _reset(cursor) -> None:
    cursor.execute("SELECT set_config('role', 'none', false), set_config(%s, %s, false)", [SETTING, PLATFORM])


def _reset_or_close() -> None:
    """Widen this connection to the platform again; one that cannot be reset (broken by what
    ran on it) is closed rather than reused narrowed."""
    try:
        with connection.cursor() as cursor:
            _reset(cursor)
    except Error:
        logger.warning("closing a connection whose tenant scope could not be reset")
        if not connection.in_atomic_block:
            connection.close()


@contextmanager
def tenant_scope(tenant_id):
    """This connection narrowed to one tenant's rows (None: to no tenant's) for the block,
    then back to what it was: the platform, or the tenant an enclosing scope named. Inside a
    scope already narrowed to that tenant it changes nothing."""
    if not enabled():
        yield
        return
    target = NOBODY if tenant_id is None else str(tenant_id)
    previous = tenant_scope_current()
    if previous == target:
        yield
        return
    tenant_scope_enter(target)
    try:
        yield
    finally:
        if previous is None:
            tenant_scope_exit()
        else:
            tenant_scope_enter(previous)


@contextmanager
def platform_scope():
    """Every tenant's rows for the block (an explicit platform path), then back to the tenant
    the connection was narrowed to, if it was (a platform task run eagerly inside a request)."""
    previous = tenant_scope_current()
    if previous is None or not enabled():
        yield
        return
    tenant_scope_exit()
    try:
        yield
    finally:
        tenant_scope_enter(previous)


def tenant_scope_reset() -> None:
    """Back to the platform, whatever this connection was left as, tracked or not (a worker,
    between tasks). A connection that cannot be reset is closed: the next one opens as the
    platform."""
    _scope.tenant_id = None
    _scope.connection = None
    if not enabled() or connection.connection is None:
        return
    _reset_or_close()


def task_scope_reset(task=None, **_signal_kwargs) -> None:
    """task_prerun and task_postrun (config.celery): a worker's task starts and ends as the
    platform. A task run eagerly (in a request, a test, another task) is left to its caller's
    scope and to `ScopedTask`."""
    request = getattr(task, "request", None)
    if getattr(request, "is_eager", False):
        return
    tenant_scope_reset()


class ScopedTask(Task):
    """The base of every task (config.celery): a task declares whose rows it works on.

    - `tenant_of = "app_label.Model"`: the task works for one tenant, that of the row whose id
      is its first argument (or the argument `tenant_arg`; `"tenants.Tenant"` takes the
      tenant's own id). It runs narrowed to that tenant, and widened again when it returns or
      raises; to no tenant at all when there is no such row. Run eagerly inside a session
      already narrowed (a request), it stays inside that session's wall.
    - `platform = True`: a sweep over every tenant (a relay, a reconciliation, a beat job); run
      eagerly inside a narrowed session it is widened for its run.

    A task declaring neither runs in whatever session it finds (Celery's own tasks); a test
    checks that each of the project's tasks declares one.
    """

    platform: bool = False
    tenant_of: str | None = None
    tenant_arg: str | None = None

    def __call__(self, *args, **kwargs):
        if self.platform:
            scope = platform_scope()
        elif self.tenant_of and enabled() and tenant_scope_current() is None:
            scope = tenant_scope(self.tenant_for(args, kwargs))
        else:
            return super().__call__(*args, **kwargs)
        with scope:
            return super().__call__(*args, **kwargs)

    def tenant_for(self, args, kwargs) -> str | None:
        """The tenant of the row the task's arguments name, looked up as the platform; None
        when there is none (arguments the task refuses, an id of nothing)."""
        signature = inspect.signature(self.run)
        name = self.tenant_arg or next(iter(signature.parameters))
        try:
            value = signature.bind_partial(*args, **kwargs).arguments.get(name)
        except TypeError:
            return None
        model = apps.get_model(self.tenant_of)
        if model._meta.label == "tenants.Tenant":
            tenant_id = uuid_or_none(value)
        else:
            try:
                tenant_id = model._base_manager.filter(pk=value).values_list("tenant_id", flat=True).first()
            except (ValidationError, ValueError, TypeError):
                return None
        return None if tenant_id is None else str(tenant_id)


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
