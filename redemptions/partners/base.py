"""The fulfilment partner interface. The redemption workflow sees only this: a real partner's
adapter slots in behind it per item kind (`REDEMPTION_PARTNER_ADAPTERS` names its class).

How a caller reads a failure: `retryable` says whether trying again later can help, and
`maybe_placed` whether the partner may have acted on the request (placed the order, voided
it). When it may have, only `lookup()` (or a `void()`) settles it; when it may not, nothing
happened at the partner.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

# Item kinds (catalog.models.Item.Kind values; not imported, so no Django here).
MERCHANDISE = "MERCHANDISE"
GIFT_CARD = "GIFT_CARD"
TRAVEL = "TRAVEL"
STATEMENT_CREDIT = "STATEMENT_CREDIT"
DIGITAL = "DIGITAL"
KINDS = (MERCHANDISE, GIFT_CARD, TRAVEL, STATEMENT_CREDIT, DIGITAL)


@dataclass(frozen=True)
class PartnerSettings:
    """How one tenant's partner is called; the caller builds it from the tenant's config row."""

    tenant_id: str
    code: str  # partner code, unique per tenant
    base_url: str
    credentials: str = ""  # a resolved bearer token; sent as Authorization: Bearer <x> when non-empty
    timeout_seconds: float = 5.0  # bounds the connection and each read
    max_attempts: int = 3  # attempts within one call, with exponential backoff and jitter between them
    failure_threshold: int = 5  # consecutive failures that open the circuit
    reset_timeout_seconds: int = 30  # how long an open circuit waits before letting a trial call through


@dataclass(frozen=True)
class FulfilmentRequest:
    redemption_id: str  # the partner's idempotency key (sent as Idempotency-Key)
    kind: str  # an Item.Kind value
    item_id: str
    sku: str
    item_name: str
    quantity: int
    member_ref: str
    cash_value: Decimal  # the whole order's money value
    currency: str


@dataclass(frozen=True)
class FulfilmentResult:
    partner_order_id: str
    reference: str  # what the member is shown: a gift card or digital code, a shipment, booking or credit reference
    reference_kind: str  # giftCardCode | shipmentReference | bookingReference | creditReference | digitalCode
    details: dict  # the partner's whole answer


class PartnerError(Exception):
    """The partner did not fulfil the request."""

    retryable = False
    maybe_placed = False

    def __init__(self, message: str = "", *, maybe_placed: bool | None = None):
        super().__init__(message)
        if maybe_placed is not None:
            self.maybe_placed = maybe_placed


class PartnerRejected(PartnerError):
    """The partner refused the request (a 4xx): trying again will not help. Nothing was placed,
    unless `maybe_placed` says otherwise (the key was already used for another order)."""


class PartnerUnavailable(PartnerError):
    """The partner could not be reached or said it did not process the request (a 5xx, 429):
    nothing was placed; try again later."""

    retryable = True


class PartnerTimeout(PartnerError):
    """The request went out and no (readable) answer came back: the order may have been placed.
    Retrying is safe (the idempotency key dedupes at the partner); `lookup()` tells."""

    retryable = True
    maybe_placed = True


class CircuitOpen(PartnerUnavailable):
    """The partner's circuit is open: nothing was sent, so nothing was placed."""


@runtime_checkable
class PartnerAdapter(Protocol):
    def fulfil(self, request: FulfilmentRequest) -> FulfilmentResult:
        """Place the order once per `request.redemption_id`: a repeat returns the same order.
        Raises PartnerRejected, PartnerUnavailable, PartnerTimeout or CircuitOpen."""
        ...

    def void(self, *, redemption_id: str) -> bool:
        """Cancel the order placed under the key, and refuse any placed under it later. True when
        it is now void (or was never placed), False when the partner refuses to void it.
        Raises PartnerUnavailable, PartnerTimeout, CircuitOpen (PartnerRejected on a bad
        request, e.g. wrong credentials)."""
        ...

    def lookup(self, *, redemption_id: str) -> FulfilmentResult | None:
        """The order placed under the key; None when the partner never placed it or voided it."""
        ...


def partner_adapter(settings: PartnerSettings, kind: str) -> PartnerAdapter:
    """The adapter for items of `kind`: the class `REDEMPTION_PARTNER_ADAPTERS[kind]` names (a
    dotted path; called with the PartnerSettings), else the HTTP adapter for the kind."""
    from django.conf import settings as django_settings
    from django.utils.module_loading import import_string

    from redemptions.partners.http import HTTP_ADAPTERS

    overrides = getattr(django_settings, "REDEMPTION_PARTNER_ADAPTERS", {}) or {}
    if kind in overrides:
        return import_string(overrides[kind])(settings)
    try:
        cls = HTTP_ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"no fulfilment partner adapter for item kind {kind!r}") from None
    return cls(settings)
