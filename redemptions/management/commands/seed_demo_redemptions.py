"""Fulfilment partners for the demo tenant (run after seed_demo_catalog); safe to run again.

Each demo catalog partner gets a configuration pointing at the sandbox partner that
`make run` starts (REDEMPTION_PARTNER_URL, default http://127.0.0.1:8026), fulfilling the kinds
it deals in; what already exists is left alone.
"""

import os
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from catalog.models import Partner
from redemptions.models import PartnerConfig
from tenants.models import Tenant

DEFAULT_URL = "http://127.0.0.1:8026"

# partner code -> kinds it fulfils, priority among partners of a kind
CONFIGS = {
    "northwind-gifts": (["GIFT_CARD", "DIGITAL"], 0),
    "skyway-travel": (["TRAVEL", "STATEMENT_CREDIT"], 0),
    "parcelpro": (["MERCHANDISE"], 0),
}


class Command(BaseCommand):
    help = "Set up the demo tenant's fulfilment partners (against the sandbox partner)."

    def add_arguments(self, parser):
        parser.add_argument("--slug", default="demo")

    def handle(self, *args, slug: str, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant {slug!r}: run seed_demo first.")
        url = os.environ.get("REDEMPTION_PARTNER_URL") or DEFAULT_URL
        created = 0
        for code, (kinds, priority) in CONFIGS.items():
            partner = Partner.objects.filter(tenant=tenant, code=code).first()
            if partner is None:
                raise CommandError(f"No partner {code!r}: run seed_demo_catalog first.")
            _, was_created = PartnerConfig.objects.get_or_create(
                partner=partner,
                defaults={
                    "tenant": tenant,
                    "base_url": url,
                    "enabled_kinds": kinds,
                    "priority": priority,
                    "timeout_seconds": Decimal("5.00"),
                },
            )
            created += was_created
            self.stdout.write(f"  partner: {partner.name:<22} {', '.join(kinds)}")
        self.stdout.write(
            self.style.SUCCESS(f"Demo fulfilment partners ready: {len(CONFIGS)} ({created} new) at {url}.")
        )
