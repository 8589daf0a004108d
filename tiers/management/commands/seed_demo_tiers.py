"""Demo tiers for the demo tenant (run after seed_demo); safe to run again."""

from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from rewards.models import Member
from tenants.models import Tenant
from tiers import qualification, services
from tiers.models import Tier

TIERS = [
    ("bronze", {"en": "Bronze", "ar": "برونزي", "he": "ארד"}, 0, {}),
    ("silver", {"en": "Silver", "ar": "فضي", "he": "כסף"}, 500, {"bonus_points": 5}),
    ("gold", {"en": "Gold", "ar": "ذهبي", "he": "זהב"}, 2000, {"bonus_points": 20, "custom_perks": ["Free refills"]}),
]


class Command(BaseCommand):
    help = "Create the demo tenant's VIP tiers and place its members in them."

    def add_arguments(self, parser):
        parser.add_argument("--slug", default="demo")

    def handle(self, *args, slug: str, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant {slug!r}: run seed_demo first.")
        for rank, (tier_id, names, min_points, benefits) in enumerate(TIERS):
            if not Tier.objects.filter(tenant=tenant, tier_id=tier_id).exists():
                multiplier = Decimal({"bronze": "1", "silver": "1.25", "gold": "1.5"}[tier_id])
                services.tier_create(
                    tenant=tenant,
                    tier_id=tier_id,
                    names=names,
                    min_points=min_points,
                    benefits=benefits,
                    earn_multiplier=multiplier,
                    rank=rank,
                )
        members = list(Member.objects.filter(tenant=tenant).select_related("tenant"))
        now = timezone.now()
        for n, member in enumerate(members, start=1):
            with transaction.atomic():  # the placement locks the member's tier row
                qualification.member_created(member)
                qualification.member_tier_reevaluate(member=member, now=now)
            if n % 10 == 0 or n == len(members):
                self.stdout.write(f"  tiers: members placed {n}/{len(members)}", ending="\r")
                self.stdout.flush()
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Demo tiers ready: {', '.join(t[0] for t in TIERS)}."))
