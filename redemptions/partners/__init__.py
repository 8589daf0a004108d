"""Fulfilment partners: the interface the redemption workflow calls, the HTTP adapters (one
per item kind), the circuit breaker each tenant's partner is called through, and a sandbox
partner for development and tests. Nothing here imports Django at module level, so
`python -m redemptions.partners.sandbox` runs without settings."""

from redemptions.partners.base import (
    KINDS,
    CircuitOpen,
    FulfilmentRequest,
    FulfilmentResult,
    PartnerAdapter,
    PartnerError,
    PartnerRejected,
    PartnerSettings,
    PartnerTimeout,
    PartnerUnavailable,
    partner_adapter,
)
from redemptions.partners.breaker import circuit_call, circuit_health, circuit_reset, partner_breaker
from redemptions.partners.http import HttpPartnerAdapter

__all__ = [
    "KINDS",
    "CircuitOpen",
    "FulfilmentRequest",
    "FulfilmentResult",
    "HttpPartnerAdapter",
    "PartnerAdapter",
    "PartnerError",
    "PartnerRejected",
    "PartnerSettings",
    "PartnerTimeout",
    "PartnerUnavailable",
    "circuit_call",
    "circuit_health",
    "circuit_reset",
    "partner_adapter",
    "partner_breaker",
]
