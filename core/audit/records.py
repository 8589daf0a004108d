"""Entries the save signals cannot make: changes written with `QuerySet.update()` (an
optimistic-locking edit, a conditional revoke), and operator actions that are not a change of
an audited model's fields (a points adjustment, a retry, a replay)."""

from auditlog import get_logentry_model
from auditlog.diff import model_instance_diff
from django.db import models

from core.audit.tracking import additional_data


def audit_change(*, before: models.Model, after: models.Model):
    """Record what changed from `before` to `after` (two loads of one row of an audited
    model), as a save would have been recorded; nothing when nothing changed."""
    changes = model_instance_diff(before, after)
    if not changes:
        return None
    entries = get_logentry_model().objects
    return entries.log_create(
        after, action=entries.model.Action.UPDATE, changes=changes, additional_data=additional_data(after)
    )


def audit_action(*, obj: models.Model, action: str, changes: dict | None = None, **detail):
    """Record an action on `obj` named `action` ("Points adjusted"), with what it changed
    (`{"balance": [before, after]}`) and any detail worth keeping (JSON values)."""
    entries = get_logentry_model().objects
    return entries.log_create(
        obj,
        force_log=True,
        action=entries.model.Action.UPDATE,
        changes={name: [str(old), str(new)] for name, (old, new) in (changes or {}).items()},
        additional_data={**additional_data(obj), "action": action, **detail},
    )
