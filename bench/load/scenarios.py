"""What the load benchmark sends: the scenarios (how hard and how long) and the words the
catalog is made of and searched with. No Django here: the load generator imports this
module in its own process.

Durations, rates and concurrency come from the environment (defaults keep `make bench
BENCH=load` under ~8 minutes on 2 cores):

    BENCH_LOAD_SECONDS       seconds of each closed-loop scenario (15)
    BENCH_LOAD_CONCURRENCY   connections of the closed-loop scenarios (2 a core)
    BENCH_EVENTS_RATE        open-loop target rate of single events, events/s (300)
    BENCH_OPEN_SECONDS       seconds of the open-loop scenario (20)
    BENCH_BATCH_SIZE         events per batch (500)
    BENCH_BATCHES            batches posted, one after another (2)
    BENCH_REDEMPTIONS        requests in the redemption burst (3000) ...
    BENCH_REDEMPTIONS_SECONDS  ... or as many as this many seconds allow (40)
    BENCH_BURST_CONCURRENCY  connections of the redemption burst (16)
    BENCH_SOAK_SECONDS       mixed load at the end while memory is watched (30; `make soak`: 600)
    BENCH_SOAK_STRICT        fail (exit 1) on any soak error, memory growth past 10 % or a broken invariant
    BENCH_LOAD_SCENARIOS     only these scenarios (names, comma-separated; all by default), and
                             only their requests in the warm-up. /me alone, quickly:
                             BENCH_LOAD_SCENARIOS=me BENCH_SOAK_SECONDS=0 BENCH_LOAD_ITEMS=1000
"""

import os
import random
from dataclasses import asdict, dataclass


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class Scenario:
    """One measured run of one kind of request.

    mode "closed": `concurrency` connections, each sending its next request when the last
    one answered, for `duration` seconds (the most the platform serves).
    mode "open": requests started at `rate` a second whatever the answers (a fixed arrival
    rate, as real clients send); latency counts from each request's scheduled start, so
    queueing behind slow answers is measured, not hidden.
    mode "count": `total` requests over `concurrency` connections, as fast as they go (a burst),
    stopping early at `duration` seconds if that is set.
    """

    name: str
    label: str
    kind: str  # the request: see bench.load.generator.REQUESTS
    mode: str
    duration: float = 0.0
    rate: float = 0.0
    concurrency: int = 1
    total: int = 0
    unit: str = "req"  # what the throughput counts
    per_request: int = 1  # units a request carries (events in a batch)
    baseline_ratio: bool = True  # shown as a ratio to the baseline's throughput

    def as_dict(self) -> dict:
        return asdict(self)


def scenarios() -> list[Scenario]:
    """The measured scenarios, in the order they run (searches before the redemptions, whose
    stock changes may retire cached searches)."""
    seconds = _env_int("BENCH_LOAD_SECONDS", 15)
    # Two connections a core keep every core busy; more only queue (and, with the GIL, thrash),
    # which inflates latency and lowers throughput on a small machine.
    concurrency = _env_int("BENCH_LOAD_CONCURRENCY", 2 * (os.cpu_count() or 1))
    batch = _env_int("BENCH_BATCH_SIZE", 500)
    every = [
        Scenario("baseline", "baseline: UPDATE + INSERT", "baseline", "closed", seconds, concurrency=concurrency),
        Scenario(
            "events-open",
            f"POST /events @ {_env_int('BENCH_EVENTS_RATE', 300)}/s (open loop)",
            "event",
            "open",
            _env_int("BENCH_OPEN_SECONDS", 20),
            rate=_env_int("BENCH_EVENTS_RATE", 300),
            concurrency=64,  # unanswered at most; beyond, arrivals are shed (and counted)
            unit="events",
        ),
        Scenario(
            "events-closed", "POST /events (max)", "event", "closed", seconds, concurrency=concurrency, unit="events"
        ),
        Scenario(
            "batch",
            f"POST /events:batch of {batch}",
            "batch",
            "count",
            total=_env_int("BENCH_BATCHES", 2),  # one after another: a batch is minutes at a slow rate
            concurrency=1,
            unit="events",
            per_request=batch,
        ),
        Scenario("me", "GET /me", "me", "closed", seconds, concurrency=concurrency),
        Scenario(
            "search-uncached",
            "GET /catalog/search (uncached)",
            "search-uncached",
            "closed",
            seconds,
            concurrency=concurrency,
        ),
        Scenario(
            "search-cached", "GET /catalog/search (cached)", "search-cached", "closed", seconds, concurrency=concurrency
        ),
        Scenario(
            "redemptions",
            "POST /redemptions (burst)",
            "redemption",
            "count",
            _env_int("BENCH_REDEMPTIONS_SECONDS", 40),  # a cap: the burst stops there if not done
            total=_env_int("BENCH_REDEMPTIONS", 3000),
            concurrency=_env_int("BENCH_BURST_CONCURRENCY", 16),  # many members at once
        ),
    ]
    wanted = [name.strip() for name in os.environ.get("BENCH_LOAD_SCENARIOS", "").split(",") if name.strip()]
    return [scenario for scenario in every if not wanted or scenario.name in wanted]


# The soak's day: 4 events, 3 balance reads and 3 searches in every 10 requests.
MIXED = ("event",) * 4 + ("me",) * 3 + ("search-cached",) * 3


def warmup() -> list[Scenario]:
    """A few seconds of every request on every server worker before anything is measured:
    imports, connections, caches and the limit counters are made here, not in the figures."""
    kinds = ("baseline", "event", "me", "search-cached", "search-uncached", "redemption")
    if os.environ.get("BENCH_LOAD_SCENARIOS"):
        # Only what the chosen scenarios send (a run of `me` alone warms no event path).
        chosen = {scenario.kind for scenario in [*scenarios(), soak()] if scenario is not None}
        if "mixed" in chosen:  # the soak's requests
            chosen |= set(MIXED)
        kinds = tuple(kind for kind in kinds if kind in chosen)
        batch = "batch" in chosen
    else:
        batch = True
    return [
        *(Scenario(f"warmup-{kind}", f"warm-up {kind}", kind, "closed", 2, concurrency=8) for kind in kinds),
        *(
            [Scenario("warmup-batch", "warm-up batch", "batch", "count", total=8, concurrency=8, per_request=5)]
            if batch
            else []
        ),
    ]


def soak() -> Scenario | None:
    seconds = _env_int("BENCH_SOAK_SECONDS", 30)
    if seconds <= 0:
        return None
    rate = _env_int("BENCH_SOAK_RATE", 150)
    return Scenario(
        "soak", f"soak: POST /events + GET /me + search @ {rate}/s", "mixed", "open", seconds, rate=rate, concurrency=64
    )


# The catalog's words (the loader names items with them; searches look for them) --------

BRANDS = ["Aurora", "Nimbus", "Vertex", "Solace", "Kestrel", "Lumen", "Orbit", "Cascade", "Ember", "Quill",
          "Harbor", "Summit", "Zephyr", "Juniper", "Atlas", "Meridian", "Sable", "Tidal", "Willow", "Onyx"]  # fmt: skip
ADJECTIVES = ["Wireless", "Portable", "Compact", "Premium", "Classic", "Smart", "Ultra", "Travel", "Deluxe", "Eco",
              "Vintage", "Rugged", "Slim", "Family", "Pro"]  # fmt: skip
NOUNS = [
    "Headphones", "Speaker", "Backpack", "Watch", "Camera", "Blender", "Lantern", "Kettle", "Jacket", "Sunglasses",
    "Keyboard", "Monitor", "Suitcase", "Tent", "Bicycle", "Drone", "Notebook", "Espresso Machine", "Yoga Mat",
    "Gift Card", "Lounge Pass", "Hotel Night", "Flight Voucher", "Cinema Ticket", "Streaming Plan", "Toaster",
    "Umbrella", "Wallet", "Thermos", "Scooter",
]  # fmt: skip
DETAILS = ["with carrying case", "in midnight blue", "limited edition", "two-year warranty", "rechargeable",
           "water resistant", "for everyday use", "gift boxed", "with free delivery", "award winning"]  # fmt: skip

# The spend categories events name (code, MCCs); the loader creates them with multipliers.
SPEND_CATEGORIES = {
    "dining": ["5812", "5814"],
    "travel": ["4511", "7011"],
    "groceries": ["5411"],
    "fuel": ["5541"],
    "electronics": ["5732"],
}
CURRENCY = "USD"
MEMBER_REF = "m{:06d}"


def cached_queries() -> list[str]:
    """The searches the cached scenario repeats (answered once in the warm-up)."""
    return [noun.lower() for noun in NOUNS[:20]]


def uncached_queries(seed: int) -> list[str]:
    """Thousands of distinct searches, none of them a cached one: brand, adjective and noun
    combinations and model numbers, about one in seven with a typo (the trigram path)."""
    rng = random.Random(seed)
    nouns = [noun.lower() for noun in NOUNS]
    queries = {f"{b.lower()} {n}" for b in BRANDS for n in nouns}
    queries |= {f"{a.lower()} {n}" for a in ADJECTIVES for n in nouns}
    queries |= {f"{b.lower()} {a.lower()} {n}" for b in BRANDS for a in ADJECTIVES[:5] for n in nouns}
    queries |= {f"{n} {number}" for n in nouns[:10] for number in range(100, 1000, 7)}
    ordered = sorted(queries)
    rng.shuffle(ordered)
    out = []
    for query in ordered:
        if rng.random() < 0.15:
            word = rng.choice(query.split())
            if len(word) > 4:
                cut = rng.randrange(1, len(word) - 1)
                query = query.replace(word, word[:cut] + word[cut + 1 :], 1)  # a dropped letter
        out.append(query)
    cached = set(cached_queries())
    return [query for query in dict.fromkeys(out) if query not in cached]
