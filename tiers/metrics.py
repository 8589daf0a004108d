"""Prometheus metrics of VIP tiers, with the seed 004 names.

prometheus_client exposes a Counter with `_total` appended, so `vip_tier_lookup_errors_by_type`
is scraped as `vip_tier_lookup_errors_by_type_total`; the two assignment counters are named
so that they are scraped exactly as the seed spells them.

`vip_tiers_total` is a Gauge per tenant: the number of tiers the tenant has, set whenever this
process counts them (after a create commits, and whenever the list is read from the
database). Each process exports what it last counted; take the max over instances.
"""

from prometheus_client import Counter, Gauge, Histogram

TIERS_TOTAL = Gauge("vip_tiers_total", "VIP tiers defined, by tenant (as last counted)", ["tenant"])
LOOKUP_LATENCY = Histogram(
    "vip_tier_lookup_latency_seconds",
    "Time to answer a tier lookup (GET /tiers and GET /tiers/{tierId})",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5),
)
LOOKUP_ERRORS = Counter(
    "vip_tier_lookup_errors_by_type",
    "Tier endpoint requests answered with an error, by type (not_found, rate_limited, invalid, ...)",
    ["type"],
)
# Incremented by tiers.qualification (vip_tier.assigned) and whoever else emits tier events.
ASSIGNMENT_EVENTS = Counter("vip_tier_assignment_events", "Tier assignment events emitted", ["event_type"])
ASSIGNMENT_FAILURES = Counter(
    "vip_tier_assignment_failures", "Tier assignments or their events that failed", ["event_type"]
)
RATE_LIMIT_FALLBACKS = Counter(
    "vip_tier_rate_limit_local_checks", "Tier rate-limit checks counted in-process because Redis failed"
)
