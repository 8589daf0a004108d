"""Campaign fixtures for tests: rows made directly, so these tests do not depend on the
management API (which has tests of its own)."""

import json
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone
from djangorestframework_camel_case.settings import api_settings as camel_settings
from djangorestframework_camel_case.util import underscoreize

from campaigns.models import Campaign, CampaignStats
from campaigns.rules import rule_check
from rewards.api.events import event_validate
from rewards.earning import event_ingest


def campaign_make(tenant, *, rule: dict, type: str = "SIMPLE", status: str = "ACTIVE", **fields) -> Campaign:
    rule_check(rule, campaign_type=type)
    fields.setdefault("start_at", timezone.now() - timedelta(days=30))
    campaign = Campaign.objects.create(
        tenant=tenant, name=fields.pop("name", "Promo"), type=type, status=status, rule_json=rule, **fields
    )
    CampaignStats.objects.create(campaign=campaign)
    return campaign


def action_rule(code: str = "app.login", points: int = 50, **extra) -> dict:
    return {
        "trigger": {"eventTypes": ["action"], "actionCodes": [code]},
        "reward": {"type": "POINTS", "points": points},
        **extra,
    }


def quest_rule(*codes: str, points: int = 500, within_days: int | None = None) -> dict:
    steps = []
    for code in codes:
        step = {"actionCode": code, "count": 1}
        if within_days:
            step["withinDays"] = within_days
        steps.append(step)
    return {"quest": {"steps": steps}, "reward": {"type": "POINTS", "points": points}}


def ingest(tenant, body: dict):
    """One event through validation and the engine, as the API would apply it."""
    snake = underscoreize(body, **camel_settings.JSON_UNDERSCOREIZE)
    return event_ingest(tenant=tenant, event=event_validate(snake))


def action(event_id: str, member_ref: str = "m-1", code: str = "app.login", **extra) -> dict:
    return {"type": "action", "eventId": event_id, "memberRef": member_ref, "actionCode": code, **extra}


def purchase(event_id: str, member_ref: str = "m-1", amount: str = "100.00", currency: str = "USD", **extra) -> dict:
    return {
        "type": "transaction.created",
        "eventId": event_id,
        "memberRef": member_ref,
        "amount": amount,
        "currency": currency,
        **extra,
    }


def refund(event_id: str, original: str, amount: str | None = None) -> dict:
    body = {"type": "transaction.refunded", "eventId": event_id, "originalEventId": original}
    if amount is not None:
        body["amount"] = amount
    return body


def campaign_admin_form(rule, **overrides) -> dict:
    """The admin's campaign form as a browser posts it (dates split by the admin's widget)."""
    data = {
        "name": "Promo",
        "description": "",
        "type": "SIMPLE",
        "start_at_0": "2026-01-01",
        "start_at_1": "00:00:00",
        "end_at_0": "",
        "end_at_1": "",
        "cohort": "",
        "priority": "0",
        "stacking": "STACKABLE",
        "budget_rewards": "",
        "budget_amount": "",
        "member_cap_rewards": "",
        "member_cap_amount": "",
        "member_cap_period": "CAMPAIGN",
        "rule_json": rule if isinstance(rule, str) else json.dumps(rule),
    }
    return {**data, **overrides}


def money(value) -> Decimal:
    return Decimal(str(value))
