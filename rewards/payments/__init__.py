"""Payment gateways: the interface credit purchases charge through, its HTTP adapter and a
sandbox gateway for development and tests. Nothing here imports Django at module level, so
`python -m rewards.payments.sandbox` runs without settings."""

from rewards.payments.gateway import (
    ChargeResult,
    GatewayError,
    GatewayTimeout,
    GatewayUnavailable,
    PaymentGateway,
    payment_gateway,
)

__all__ = [
    "ChargeResult",
    "GatewayError",
    "GatewayTimeout",
    "GatewayUnavailable",
    "PaymentGateway",
    "payment_gateway",
]
