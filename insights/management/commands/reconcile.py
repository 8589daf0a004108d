"""`manage.py reconcile [--tenant SLUG]`: recompute every stored total from its source of truth
and report drift (insights.reconciliation). It corrects nothing; exit status 1 on drift."""

from django.core.management.base import BaseCommand, CommandError

from insights.reconciliation import reconcile_all
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Recompute balances and counters from the ledger and the database; report drift (fixes nothing)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant (its slug).")

    def handle(self, *args, tenant=None, **options):
        tenants = Tenant.objects.order_by("pk")
        if tenant:
            tenants = tenants.filter(slug=tenant)
            if not tenants.exists():
                raise CommandError(f"No tenant with slug {tenant!r}.")
        runs = reconcile_all(tenants=tenants, progress=lambda line: self.stdout.write(line))
        drifted = 0
        for run in runs:
            for drift in run.drifts.order_by("kind", "object_id"):
                self.stdout.write(
                    f"  DRIFT {run.tenant.slug} {drift.kind} {drift.object_type} {drift.object_id} "
                    f"({drift.object_repr}): stored {drift.stored}, computed {drift.computed}"
                )
            drifted += run.drift_count
        summary = f"{len(runs)} tenant(s), {sum(r.checked for r in runs)} totals checked, {drifted} drift"
        if drifted:
            self.stderr.write(self.style.ERROR(summary))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS(summary))
