"""Row-level security for Celery tasks and the member WebSocket (core.rls): a task declared
for one tenant (`tenant_of`) runs narrowed to that tenant as the application role, and the
session is the platform's again after it, whether it returned or raised; a platform task
(`platform=True`) sees every tenant, and the sweeps that work one tenant at a time narrow
each tenant's share; a worker resets the session between tasks; the WebSocket reads the
database narrowed to its member's tenant. The tasks run through Celery (`.apply()`, and one
test through a `celery worker` process); the worker's reset is driven by Celery's own signals."""

import os
import subprocess
import sys
import time
import uuid

import pytest
from celery import shared_task, signals
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from config.celery import app
from core import rls
from rewards import consumers
from rewards import tasks as reward_tasks
from rewards.models import Member
from tests.factories import MemberFactory, TenantFactory
from tests.integration.conftest import (  # noqa: F401 - celery_queue is a fixture
    ROOT,
    _database_url,
    _wait_ready,
    celery_queue,
    process_stop,
)
from tests.realtime.conftest import connected, frames, points_events, run

pytestmark = pytest.mark.django_db

PLATFORM_SESSION = (False, rls.PLATFORM)


def session() -> tuple[bool, str]:
    """(whether the session is the application role, the tenant it names)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user = %s, current_setting(%s, true)", [settings.DATABASE_APP_ROLE, rls.SETTING])
        return cursor.fetchone()


def members_seen() -> dict:
    """What a raw query with no WHERE finds in the members table: how many rows, of which tenants."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), array_agg(DISTINCT tenant_id::text) FROM rewards_member")
        count, tenants = cursor.fetchone()
    return {"members": count, "tenants": sorted(tenants or [])}


# Tasks of this module, declared like the project's ------------------------------------------


@shared_task(name="tests.rls.member_probe", tenant_of="rewards.Member")
def member_probe(member_id: str, *, other_member_id: str | None = None, fail: bool = False) -> dict:
    """What the task sees, and what it could do to another member (of another tenant)."""
    seen = {**members_seen(), "session": list(session())}
    if other_member_id:
        seen["updated"] = Member.objects.filter(pk=other_member_id).update(status=Member.Status.CLOSED)
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM rewards_member WHERE id = %s", [other_member_id])
            seen["deleted"] = cursor.rowcount
        other = Member.objects.filter(pk=other_member_id).values_list("tenant_id", flat=True).first()
        seen["found"] = other is not None
    if fail:
        raise RuntimeError("the task failed")
    return seen


@shared_task(name="tests.rls.member_smuggle", tenant_of="rewards.Member")
def member_smuggle(member_id: str, other_tenant_id: str) -> None:
    """Writes a member into another tenant (row-level security refuses it)."""
    with transaction.atomic():
        Member.objects.create(tenant_id=other_tenant_id, external_ref="smuggled")


@shared_task(name="tests.rls.tenant_probe", tenant_of="tenants.Tenant", tenant_arg="tenant_id")
def tenant_probe(label: str, tenant_id: str) -> dict:
    return {"label": label, **members_seen()}


@shared_task(name="tests.rls.platform_probe", platform=True)
def platform_probe() -> dict:
    return {**members_seen(), "session": list(session())}


@pytest.fixture
def two():
    """Members of two tenants, A (two members) and B (one)."""
    a, b = TenantFactory(), TenantFactory()
    return {
        "a": a,
        "b": b,
        "a_member": MemberFactory(tenant=a),
        "a_other": MemberFactory(tenant=a),
        "b_member": MemberFactory(tenant=b),
    }


@pytest.fixture
def narrowed():
    """A session narrowed as a tenant-bound request narrows it; the platform again after."""
    yield rls.tenant_scope_enter
    rls.tenant_scope_exit()


# Tasks for one tenant ----------------------------------------------------------------------------


def test_a_tenant_task_sees_and_changes_only_its_tenants_rows(two):
    a, b_member = two["a"], two["b_member"]
    assert members_seen()["members"] == 3  # the platform sees both tenants (not vacuous)

    seen = member_probe.apply(args=[str(two["a_member"].pk)], kwargs={"other_member_id": str(b_member.pk)}).get()

    assert seen == {
        "members": 2,
        "tenants": [str(a.pk)],
        "session": [True, str(a.pk)],
        "updated": 0,
        "deleted": 0,
        "found": False,
    }
    assert session() == PLATFORM_SESSION
    b_member.refresh_from_db()
    assert b_member.status == Member.Status.ACTIVE


def test_a_tenant_task_cannot_write_a_row_of_another_tenant(two):
    with pytest.raises(DatabaseError, match="row-level security"):
        member_smuggle.apply(args=[str(two["a_member"].pk), str(two["b"].pk)])
    assert session() == PLATFORM_SESSION
    assert not Member.objects.filter(external_ref="smuggled").exists()


def test_the_session_is_the_platforms_after_a_task_that_raised(two):
    with pytest.raises(RuntimeError, match="the task failed"):
        member_probe.apply(args=[str(two["a_member"].pk)], kwargs={"fail": True})
    assert session() == PLATFORM_SESSION
    assert rls.tenant_scope_current() is None
    assert members_seen()["members"] == 3


def test_a_task_whose_row_is_gone_sees_no_tenants_rows(two):
    for missing in (str(uuid.uuid4()), "not-an-id"):
        seen = member_probe.apply(args=[missing]).get()
        assert (seen["members"], seen["session"]) == (0, [True, rls.NOBODY])
    assert session() == PLATFORM_SESSION


def test_a_task_can_name_its_tenant_by_another_argument(two):
    seen = tenant_probe.apply(args=["b"], kwargs={"tenant_id": str(two["b"].pk)}).get()
    assert seen == {"label": "b", "members": 1, "tenants": [str(two["b"].pk)]}
    # an id that is not one sees nothing
    assert tenant_probe.apply(args=["x"], kwargs={"tenant_id": "x"}).get() == {
        "label": "x",
        "members": 0,
        "tenants": [],
    }


def test_a_project_task_for_one_member_runs_narrowed_to_the_members_tenant(two, monkeypatch):
    seen = []
    monkeypatch.setattr(reward_tasks, "member_points_expire", lambda *, member, now: seen.append(members_seen()) or 0)

    assert reward_tasks.member_points_expire_task.apply(args=[str(two["b_member"].pk)]).get() == 0

    assert seen == [{"members": 1, "tenants": [str(two["b"].pk)]}]
    assert session() == PLATFORM_SESSION


def test_a_tenant_task_run_eagerly_inside_a_narrowed_session_stays_inside_its_wall(two, narrowed):
    a = two["a"]
    narrowed(a.pk)
    # a task about B's member, run inline by a request of A, still sees A's rows only
    seen = member_probe.apply(args=[str(two["b_member"].pk)]).get()
    assert (seen["members"], seen["tenants"]) == (2, [str(a.pk)])
    assert session() == (True, str(a.pk))


# Platform tasks -----------------------------------------------------------------------------------


def test_a_platform_task_sees_every_tenant(two):
    seen = platform_probe.apply().get()
    assert seen == {
        "members": 3,
        "tenants": sorted([str(two["a"].pk), str(two["b"].pk)]),
        "session": list(PLATFORM_SESSION),
    }


def test_a_platform_task_run_inside_a_narrowed_session_is_widened_for_its_run_only(two, narrowed):
    narrowed(two["a"].pk)
    assert platform_probe.apply().get()["members"] == 3
    assert session() == (True, str(two["a"].pk))


def test_the_project_sweeps_are_platform_tasks_and_see_every_tenant(two, monkeypatch):
    seen = []
    monkeypatch.setattr(
        reward_tasks, "members_with_due_lots", lambda *, now: seen.append(members_seen()["members"]) or ([], [])
    )
    assert reward_tasks.lots_due_process.apply().get() == {"release": 0, "expire": 0}
    assert seen == [3]


def test_the_tier_sweep_narrows_each_tenants_share_to_that_tenant(two, monkeypatch):
    from tiers import qualification
    from tiers.tasks import tiers_reevaluate

    seen = {}

    def spy(*, now, tenant=None):
        seen[str(tenant.pk)] = members_seen()["tenants"]
        return 1

    monkeypatch.setattr(qualification, "tiers_reevaluate", spy)
    from tenants.models import Tenant

    every = Tenant.objects.count()
    assert tiers_reevaluate.apply().get() == every
    assert seen[str(two["a"].pk)] == [str(two["a"].pk)]
    assert seen[str(two["b"].pk)] == [str(two["b"].pk)]
    assert all(tenants in ([], [tenant]) for tenant, tenants in seen.items())
    assert session() == PLATFORM_SESSION


def test_the_reconciliation_sweep_runs_each_tenant_narrowed_to_it(two, monkeypatch):
    from insights import reconciliation
    from insights.tasks import reconcile_task

    seen = {}

    def spy(*, tenants):
        (tenant,) = tenants
        seen[str(tenant.pk)] = members_seen()["tenants"]
        return []

    monkeypatch.setattr(reconciliation, "reconcile_all", spy)

    assert reconcile_task.apply().get() == 0
    assert seen[str(two["a"].pk)] == [str(two["a"].pk)]
    assert seen[str(two["b"].pk)] == [str(two["b"].pk)]
    assert session() == PLATFORM_SESSION


def test_every_task_of_the_project_declares_whose_rows_it_works_on():
    app.loader.import_default_modules()
    undeclared, both = [], []
    for name, task in app.tasks.items():
        if name.startswith("celery."):
            continue
        if not task.platform and not task.tenant_of:
            undeclared.append(name)
        if task.platform and task.tenant_of:
            both.append(name)
    assert (undeclared, both) == ([], [])
    for name in ("rewards.tasks.member_points_expire_task", "redemptions.tasks.redemption_fulfil"):
        assert app.tasks[name].tenant_of
    for name in ("rewards.tasks.outbox_relay", "insights.tasks.reconcile", "tenants.tasks.webhooks_due_sweep"):
        assert app.tasks[name].platform


# The worker's reset between tasks -----------------------------------------------------------------


def test_a_worker_task_starts_and_ends_as_the_platform_whatever_the_last_one_left(two):
    task = platform_probe
    for signal in (signals.task_prerun, signals.task_postrun):
        # a session left narrowed, tracked (a scope never exited) or not (a raw statement)
        rls.tenant_scope_enter(two["a"].pk)
        signal.send(sender=task, task_id="t", task=task, args=(), kwargs={})
        assert (session(), rls.tenant_scope_current()) == (PLATFORM_SESSION, None)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('role', %s, false), set_config(%s, %s, false)",
                [settings.DATABASE_APP_ROLE, rls.SETTING, str(two["b"].pk)],
            )
        signal.send(sender=task, task_id="t", task=task, args=(), kwargs={})
        assert session() == PLATFORM_SESSION


def test_a_task_run_eagerly_leaves_its_callers_session_alone_between_tasks(two, narrowed):
    narrowed(two["a"].pk)
    # nested eagerly in a request narrowed to A: the signals of the inner task change nothing
    assert member_probe.apply(args=[str(two["a_member"].pk)]).get()["members"] == 2
    assert session() == (True, str(two["a"].pk))


@shared_task(name="tests.rls.members_close", tenant_of="rewards.Member")
def members_close(member_id: str) -> int:
    """Closes every member it can see (a query that forgot its tenant)."""
    return Member.objects.update(status=Member.Status.CLOSED)


@shared_task(name="tests.rls.members_mark", platform=True)
def members_mark(mark: str) -> int:
    return Member.objects.update(attributes={"mark": mark})


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_tenant_task_narrowed_and_the_next_platform_task_wide(celery_queue):  # noqa: F811
    """Through `celery worker` (a process of its own, its connection kept between tasks): a
    tenant task of A closes every member it can see, then a platform task on the same worker
    connection marks B's member too."""
    mine, theirs = MemberFactory(tenant=TenantFactory()), MemberFactory(tenant=TenantFactory())
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "CELERY_TASK_DEFAULT_QUEUE": celery_queue,
        "LOG_LEVEL": "INFO",
    }
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "-Q", celery_queue),
            *("--include", __name__, "--without-heartbeat", "--without-gossip", "--without-mingle"),
            "--loglevel=INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_ready(worker)
        members_close.delay(str(mine.pk))
        members_mark.delay("platform")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and Member.objects.filter(attributes__mark="platform").count() < 2:
            time.sleep(0.2)
    finally:
        process_stop(worker, grace=20)
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, theirs.status) == (Member.Status.CLOSED, Member.Status.ACTIVE)
    assert (mine.attributes, theirs.attributes) == ({"mark": "platform"}, {"mark": "platform"})


# The member WebSocket -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_websockets_reads_are_narrowed_to_the_members_tenant(settings, monkeypatch):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.OUTBOX_RELAY_ON_COMMIT = False
    member = MemberFactory()
    MemberFactory(tenant=TenantFactory())  # another tenant's member
    events = points_events(member, 3)
    seen = []
    page = consumers.member_notification_page

    def spy(**kwargs):
        seen.append({**members_seen(), "session": list(session())})
        return page(**kwargs)

    monkeypatch.setattr(consumers, "member_notification_page", spy)

    async def scenario():
        ws = await connected(member)
        await ws.send_json_to({"type": "resume", "after": str(events[0].event_id)})
        replayed = [f["eventId"] for f in await frames(ws, expect=2)]
        await ws.disconnect()
        return replayed

    assert run(scenario) == [str(e.event_id) for e in events[1:]]
    tenant = str(member.tenant_id)
    assert seen == [{"members": 1, "tenants": [tenant], "session": [True, tenant]}]
