"""Replay inbound events from JSON Lines through the earning engine."""

import sys

from django.core.management.base import BaseCommand, CommandError

from rewards.replay import (
    DEFAULT_BATCH_SIZE,
    DEMO_SLUG,
    ReplayDisplay,
    events_replay,
    lines_count,
    replay_tenant_get,
    replay_workers_add_argument,
    replay_workers_check,
)


class Command(BaseCommand):
    help = (
        "Replay inbound events from a JSON Lines file: one `POST /api/v1/events` body a line, "
        "applied once per eventId (a second replay reports duplicates). `-` reads stdin."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="A JSON Lines file, or - for stdin.")
        parser.add_argument("--tenant", default=DEMO_SLUG, help=f"The tenant's slug (default {DEMO_SLUG}).")
        parser.add_argument(
            "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"Events a batch (default {DEFAULT_BATCH_SIZE})."
        )
        replay_workers_add_argument(parser)

    def handle(self, *args, file: str, tenant: str, batch_size: int, workers: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        replay_workers_check(workers)
        target = replay_tenant_get(slug=tenant)
        if file == "-":
            # The total is unknown until the end: progress shows the count alone.
            self._replay(target, getattr(sys.stdin, "buffer", sys.stdin), None, batch_size, workers)
            return
        try:
            total = lines_count(file)
            lines = open(file, "rb")  # noqa: SIM115 - closed below, once replayed
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}") from exc
        with lines:
            self._replay(target, lines, total, batch_size, workers)

    def _replay(self, tenant, lines, total: int | None, batch_size: int, workers: int) -> None:
        display = ReplayDisplay(stdout=self.stdout, stderr=self.stderr, total=total)
        summary = events_replay(
            tenant=tenant,
            lines=lines,
            batch_size=batch_size,
            workers=workers,
            on_progress=display.progress,
            on_problem=display.problem,
        )
        display.finish(summary)
