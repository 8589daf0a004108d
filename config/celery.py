"""The Celery app. Without CELERY_BROKER_URL, tasks run eagerly in-process.

Every task is a `core.rls.ScopedTask`: it declares whether it works for one tenant
(`tenant_of`, run narrowed to that tenant by row-level security) or sweeps them all
(`platform=True`), and a worker resets its database session to the platform before and after
each task."""

import os

from celery import Celery, signals

from core.rls import ScopedTask, task_scope_reset

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("loyalty", task_cls=ScopedTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The scope of the tasks declared outside the apps' decorators (tenants.tasks, rewards.relay).
app.conf.task_annotations = {
    "tenants.tasks.webhook_endpoint_drain_task": {"tenant_of": "tenants.WebhookEndpoint"},
    "tenants.tasks.webhooks_due_sweep": {"platform": True},
    "rewards.tasks.outbox_relay": {"platform": True},
}

signals.task_prerun.connect(task_scope_reset, weak=False, dispatch_uid="core.rls.task_scope_reset.prerun")
signals.task_postrun.connect(task_scope_reset, weak=False, dispatch_uid="core.rls.task_scope_reset.postrun")
