"""Demo campaigns for the demo tenant (run after seed_demo); safe to run again."""

from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from campaigns import cohorts, services
from campaigns.models import Campaign, Cohort
from rewards.models import Member
from tenants.models import Tenant

ACTIONS = {
    "app.login": "Opened the app",
    "profile.complete": "Completed their profile",
    "app.share": "Shared the app with a friend",
}


def _campaigns(regulars: Cohort) -> list[dict]:
    return [
        {
            "name": "Double points on orders of 10 or more",
            "type": "SIMPLE",
            "priority": 10,
            "rule_json": {
                "trigger": {"eventTypes": ["transaction.created"]},
                "conditions": {">=": [{"var": "event.amount"}, 10]},
                "reward": {"type": "POINTS", "multiplier": "2", "maxPoints": 500},
            },
            "budget_amount": Decimal(100_000),
        },
        {
            "name": "Get started: log in, complete your profile, share the app",
            "type": "QUEST",
            "rule_json": {
                "quest": {
                    "steps": [
                        {"actionCode": "app.login", "count": 1},
                        {"actionCode": "profile.complete", "count": 1},
                        {"actionCode": "app.share", "count": 1, "withinDays": 7},
                    ]
                },
                "reward": {"type": "POINTS", "points": 300},
            },
        },
        {
            "name": "5% cashback for regulars",
            "type": "SIMPLE",
            "cohort": regulars,
            "rule_json": {
                "trigger": {"eventTypes": ["transaction.created"]},
                "reward": {"type": "CASHBACK", "percent": "5", "maxAmount": "10.00"},
            },
            "member_cap_rewards": 3,
            "member_cap_period": "WEEK",
        },
    ]


class Command(BaseCommand):
    help = "Create the demo tenant's actions, a cohort and three running campaigns."

    def add_arguments(self, parser):
        parser.add_argument("--slug", default="demo")

    def handle(self, *args, slug: str, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant {slug!r}: run seed_demo first.")
        for code, description in ACTIONS.items():
            services.action_upsert(tenant=tenant, code=code, description=description)
        regulars = Cohort.objects.filter(tenant=tenant, code="regulars").first()
        if regulars is None:
            refs = list(
                Member.objects.filter(tenant=tenant).order_by("created_at").values_list("external_ref", flat=True)
            )
            regulars = cohorts.cohort_create(
                tenant=tenant, name="Regulars", code="regulars", kind="STATIC", member_refs=refs[: len(refs) // 2]
            )
        start = timezone.now() - timedelta(minutes=1)
        specs = _campaigns(regulars)
        for n, spec in enumerate(specs, start=1):
            if not Campaign.objects.filter(tenant=tenant, name=spec["name"]).exists():
                campaign = services.campaign_create(tenant=tenant, start_at=start, **spec)
                services.campaign_activate(tenant=tenant, campaign=campaign)
            self.stdout.write(f"  campaigns {n}/{len(specs)}", ending="\r")
            self.stdout.flush()
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Demo campaigns running: {len(specs)}, cohort 'regulars'."))
