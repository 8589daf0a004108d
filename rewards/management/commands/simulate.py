"""Generate realistic inbound events for a tenant's members: ingest them, or write JSON Lines."""

import random
from datetime import date
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from rewards.replay import (
    DEFAULT_BATCH_SIZE,
    DEMO_SLUG,
    ReplayDisplay,
    events_jsonl,
    events_replay,
    events_simulate,
    replay_tenant_get,
    replay_workers_add_argument,
    replay_workers_check,
    simulation_action_codes,
    simulation_members,
)


class Command(BaseCommand):
    help = (
        "Generate realistic inbound events for a tenant's existing members (purchases, actions, refunds "
        "over the last 30 days) and ingest them as replay_events does, or write them with --out."
    )

    def add_arguments(self, parser):
        parser.add_argument("--events", type=int, required=True, help="How many events.")
        parser.add_argument("--tenant", default=DEMO_SLUG, help=f"The tenant's slug (default {DEMO_SLUG}).")
        parser.add_argument("--members", type=int, help="How many of the tenant's members take part (default all).")
        parser.add_argument(
            "--seed", type=int, help="Repeatable events (and eventIds) for the same seed; random when left out."
        )
        parser.add_argument("--out", help="Write JSON Lines here (- for stdout) instead of ingesting.")
        parser.add_argument(
            "--until",
            type=date.fromisoformat,
            help="Events occur in the 30 days before this date (YYYY-MM-DD; default today).",
        )
        parser.add_argument(
            "--action-code",
            action="append",
            default=None,
            dest="action_codes",
            help="An action code for action events (repeat it); default: the codes the tenant sent lately.",
        )
        parser.add_argument(
            "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"Events a batch (default {DEFAULT_BATCH_SIZE})."
        )
        replay_workers_add_argument(parser)

    def handle(self, *args, **options):
        count, wanted, out = options["events"], options["members"], options["out"]
        if count < 1:
            raise CommandError("--events must be at least 1.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        replay_workers_check(options["workers"])
        tenant = replay_tenant_get(slug=options["tenant"])
        seed = options["seed"]
        if seed is None:
            seed = random.SystemRandom().randrange(1_000_000)
        members = simulation_members(tenant=tenant)
        if not members:
            raise CommandError(f"Tenant '{tenant.slug}' has no active members to simulate events for.")
        if wanted is not None:
            if wanted < 1:
                raise CommandError("--members must be at least 1.")
            members = sorted(random.Random(seed).sample(members, min(wanted, len(members))))  # noqa: S311
        codes = options["action_codes"]
        if codes is None:
            codes = simulation_action_codes(tenant=tenant)
        until = options["until"] or timezone.localdate(timezone=ZoneInfo(tenant.timezone))
        events = events_simulate(
            tenant=tenant, count=count, members=members, seed=seed, until=until, action_codes=codes
        )
        # To stdout the events are the output: the notes go to stderr.
        notes = self.stderr if out == "-" else self.stdout
        notes.write(
            f"Simulating {len(events)} events for {len(members)} members of '{tenant.slug}' "
            f"(seed {seed}, {len(codes)} action codes, 30 days before {until.isoformat()})."
        )
        if out is not None:
            self._write(out, events)
            if out != "-":
                self.stdout.write(f"Wrote {len(events)} events to {out}.")
            return
        display = ReplayDisplay(stdout=self.stdout, stderr=self.stderr, total=len(events))
        summary = events_replay(
            tenant=tenant,
            lines=events_jsonl(events),
            batch_size=options["batch_size"],
            workers=options["workers"],
            on_progress=display.progress,
            on_problem=display.problem,
        )
        display.finish(summary)

    def _write(self, out: str, events: list[dict]) -> None:
        if out == "-":
            for line in events_jsonl(events):
                self.stdout.write(line, ending="")
            return
        try:
            with open(out, "w", encoding="utf-8") as file:
                file.writelines(events_jsonl(events))
        except OSError as exc:
            raise CommandError(f"Cannot write {out}: {exc.strerror or exc}") from exc
