"""`manage.py replay_events` and `simulate` at scale (`bench/run.py replay`): simulated events
(purchases, refunds) for the load benchmark's configuration (spend categories and
multipliers, four tiers, three active campaigns, one under a budget, limits) replayed through
the set-based batch path by one worker process, then by several, each member's events on one
worker. Prints events/s for each and its ratio to one worker.

REPLAY_EVENTS (20,000) events a run, over REPLAY_MEMBERS (20,000) members; REPLAY_WORKERS
the worker counts to compare (default "1,2,4").
"""

import os
import sys
from datetime import date

from bench.common import progress

EVENTS = int(os.environ.get("REPLAY_EVENTS") or 20_000)
MEMBERS = int(os.environ.get("REPLAY_MEMBERS") or 20_000)
WORKERS = tuple(int(n) for n in (os.environ.get("REPLAY_WORKERS") or "1,2,4").split(","))


def replay_bench() -> None:
    from bench.load.loader import engine_tenant
    from bench.load.scenarios import MEMBER_REF
    from rewards.replay import events_jsonl, events_replay, events_simulate
    from rewards.selectors import ledger_verify

    print(f"replay: {EVENTS} simulated events a run through replay_events' batches, {MEMBERS} members")
    tenant, _ = engine_tenant("bench-replay", MEMBERS)
    refs = [MEMBER_REF.format(i) for i in range(MEMBERS)]

    rates: dict[int, float] = {}
    for run, workers in enumerate(WORKERS):
        # A new seed a run: new eventIds, so every run applies all its events.
        events = events_simulate(tenant=tenant, count=EVENTS, members=refs, seed=run, until=date.today())
        label = f"{workers} worker{'s' if workers > 1 else ''}"

        def shown(summary, label=label) -> None:
            progress(label, summary.done, EVENTS)

        summary = events_replay(tenant=tenant, lines=events_jsonl(events), workers=workers, on_progress=shown)
        if summary.applied != EVENTS:
            sys.exit(f"  {label}: {summary.applied} of {EVENTS} applied ({summary.problems[:3]})")
        rates[workers] = summary.rate
        print(f"  {label}: {summary.rate:,.0f} events/s ({summary.seconds:.1f} s)")
    first = rates[WORKERS[0]]
    for workers, rate in rates.items():
        print(f"  {workers} worker(s): {rate:,.0f} events/s, {rate / first:.2f}x")
    print(f"  ledger adds up after {EVENTS * len(WORKERS)} events: {ledger_verify(tenant=tenant).ok}")
