"""Rebuild spending rollups from the event store: python manage.py insights_rebuild [--tenant SLUG]."""

import time

from django.core.management.base import BaseCommand, CommandError

from insights.rollups import rollups_rebuild, rollups_update
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Brings spending rollups up to date, then recomputes them from the stored events (all tenants, or one)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="The tenant's slug (default: every tenant).")

    def handle(self, *args, tenant=None, **options):
        tenants = Tenant.objects.order_by("pk")
        if tenant:
            tenants = tenants.filter(slug=tenant)
            if not tenants.exists():
                raise CommandError(f"No tenant {tenant!r}.")
        started = time.monotonic()
        caught_up = rollups_update()
        self.stdout.write(f"{caught_up} new events applied")
        total = 0
        for each in tenants:

            def progress(done, count, slug=each.slug):
                self.stdout.write(f"\r  {slug}: events {done}/{count}", ending="")
                self.stdout.flush()

            done = rollups_rebuild(tenant=each, on_progress=progress)
            self.stdout.write(f"\r  {each.slug}: {done} events rebuilt")
            total += done
        seconds = time.monotonic() - started
        self.stdout.write(f"{total} events in {seconds:.1f} s ({total / seconds if seconds else 0:,.0f} events/s)")
