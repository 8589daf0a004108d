"""Which models the audit log follows, and what each entry carries besides the change.

The configuration operators change, not the records the platform writes by the thousand (the
ledger, lots, inbound and outbound events, webhook deliveries, usage counters, redemptions):
those are records of what happened already, each with its own history.
"""

from auditlog.registry import auditlog
from django.apps import apps

from core.audit.context import current_actor

# Kept on every row of their own; a version number says nothing an entry's changes do not.
NOT_AUDITED = ["created_at", "updated_at", "version"]
HIDDEN = "(hidden)"

# "app_label.Model": auditlog's registration options (fields to leave out, or to follow only).
AUDITED = {
    "tenants.Tenant": {},
    "tenants.ApiKey": {"exclude_fields": ["key_hash", "last_used_at"]},
    "tenants.Operator": {},
    "tenants.Limit": {},
    # A rotation shows as a change of the secret, never the secret itself.
    "tenants.WebhookEndpoint": {"mask_fields": ["secret"], "mask_callable": "core.audit.tracking.hide"},
    "rewards.Member": {"include_fields": ["status", "locale", "attributes"]},
    "rewards.SpendCategory": {},
    "rewards.Multiplier": {},
    "rewards.CreditPackage": {},
    "campaigns.Campaign": {},
    # The member count is recomputed, not changed by anyone.
    "campaigns.Cohort": {"exclude_fields": ["member_count", "computed_at"]},
    "campaigns.Action": {},
    "campaigns.CouponPool": {},
    "tiers.Tier": {},
    "tiers.TierPolicy": {},
    "catalog.Category": {},
    # The search vector is kept by a trigger.
    "catalog.Item": {"exclude_fields": ["search_vector"]},
    "catalog.Partner": {},
    "redemptions.PartnerConfig": {},
}


def hide(value: str) -> str:
    return HIDDEN


def tenant_key(obj) -> str | None:
    """The id of the tenant `obj` belongs to, as entries store it (text)."""
    if obj._meta.label == "tenants.Tenant":
        return str(obj.pk)
    tenant_id = getattr(obj, "tenant_id", None)
    return None if tenant_id is None else str(tenant_id)


def additional_data(obj) -> dict:
    """What an entry about `obj` carries besides the change: its tenant (the back office
    shows each operator their own tenant's entries) and who acted."""
    return {"tenant": tenant_key(obj), "actor": current_actor()}


def audited_models_register() -> None:
    for label, options in AUDITED.items():
        model = apps.get_model(label)
        options = {**options}
        if "include_fields" not in options:
            # A creation's entry would list the other side of every relation too ("accounts:
            # rewards.Account.None"): only the model's own fields are its configuration.
            reverse = [field.name for field in model._meta.get_fields() if field.auto_created and not field.concrete]
            options["exclude_fields"] = [*NOT_AUDITED, *reverse, *options.get("exclude_fields", [])]
        # auditlog asks the instance for the entry's additional data (its documented hook);
        # the apps' models leave that to the audit log.
        model.get_additional_data = additional_data
        auditlog.register(model, **options)
