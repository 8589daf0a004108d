"""Six months of purchases for the demo tenant's members (run after seed_demo); safe to run again.

Spend categories with multipliers are added if the tenant has none of these codes; each
member then gets a few purchases a month across them, some refunded, posted through the
earning engine with their past dates (a second run finds them and changes nothing),
and the spending rollups are brought up to date.
"""

import random
import time
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from insights.rollups import rollups_update
from rewards.api.events import event_validate
from rewards.categories import category_create, multiplier_create
from rewards.earning import event_ingest
from rewards.models import InboundEvent, Member, SpendCategory
from tenants.models import Tenant

# code -> name, multiplier, typical purchase
CATEGORIES = {
    "dining": ("Dining", Decimal("3"), (12, 90)),
    "grocery": ("Groceries", Decimal("2"), (20, 160)),
    "travel": ("Travel", Decimal("2"), (80, 900)),
    "fuel": ("Fuel", None, (25, 80)),
    "online": ("Online shopping", None, (10, 250)),
}
MONTHS = 6


class Command(BaseCommand):
    help = "Post six months of demo purchases (with refunds) for the demo tenant's members."

    def add_arguments(self, parser):
        parser.add_argument("--slug", default="demo")
        parser.add_argument("--members", type=int, default=20, help="How many members get a history.")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, slug: str, members: int, seed: int, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant {slug!r}: run seed_demo first.")
        self._categories(tenant)
        if InboundEvent.objects.filter(tenant=tenant, event_id__startswith="demo-insights:").exists():
            self.stdout.write(self.style.SUCCESS("Demo spending history: already there."))
            return
        rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
        refs = list(
            Member.objects.filter(tenant=tenant, status=Member.Status.ACTIVE)
            .order_by("external_ref")
            .values_list("external_ref", flat=True)[:members]
        )
        now = timezone.now()
        started, posted = time.monotonic(), 0
        for number, ref in enumerate(refs, start=1):
            purchases = []
            for month in range(MONTHS):
                for n in range(rng.randint(2, 6)):
                    code = rng.choice(list(CATEGORIES))
                    low, high = CATEGORIES[code][2]
                    amount = Decimal(rng.randint(low * 100, high * 100)) / 100
                    when = now - timedelta(days=30 * month + rng.randint(0, 29), hours=rng.randint(0, 12))
                    event_id = f"demo-insights:{ref}:{month}:{n}"
                    purchases.append((event_id, amount, code, when))
            for event_id, amount, code, when in sorted(purchases, key=lambda p: p[3]):
                self._post(tenant, purchase(event_id, ref, amount, code, when, tenant.currency))
                posted += 1
                if rng.random() < 0.08:
                    part = (amount * Decimal(rng.choice(["0.25", "0.5", "1"]))).quantize(Decimal("0.01"))
                    self._post(tenant, refund(f"{event_id}:refund", event_id, part, min(now, when + timedelta(days=3))))
                    posted += 1
            self.stdout.write(f"\r  members {number}/{len(refs)}  events {posted}", ending="")
            self.stdout.flush()
        self.stdout.write("")
        applied = rollups_update()
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo spending history: {posted} events for {len(refs)} members in "
                f"{time.monotonic() - started:.1f} s; {applied} applied to the rollups."
            )
        )

    def _categories(self, tenant: Tenant) -> None:
        existing = set(SpendCategory.objects.filter(tenant=tenant).values_list("code", flat=True))
        for code, (name, factor, _) in CATEGORIES.items():
            if code in existing:
                continue
            category = category_create(tenant=tenant, code=code, name=name)
            if factor is not None:
                multiplier_create(tenant=tenant, category=category, factor=factor)

    def _post(self, tenant: Tenant, event: dict) -> None:
        event_ingest(tenant=tenant, event=event_validate(event))


def purchase(event_id, ref, amount, code, when, currency) -> dict:
    return {
        "type": "transaction.created",
        "event_id": event_id,
        "member_ref": ref,
        "amount": str(amount),
        "currency": currency,
        "category": code,
        "occurred_at": when.isoformat(),
    }


def refund(event_id, original, amount, when) -> dict:
    return {
        "type": "transaction.refunded",
        "event_id": event_id,
        "original_event_id": original,
        "amount": str(amount),
        "occurred_at": when.isoformat(),
    }
