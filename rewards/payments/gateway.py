"""The payment gateway interface. Credit purchases see only this: a real provider's adapter
slots in behind it (`PAYMENT_GATEWAY` names its class)."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

APPROVED = "APPROVED"
DECLINED = "DECLINED"


@dataclass(frozen=True)
class ChargeResult:
    """What the gateway decided about one charge."""

    status: str  # APPROVED or DECLINED
    gateway_reference: str = ""
    decline_code: str = ""
    decline_message: str = ""

    @property
    def approved(self) -> bool:
        return self.status == APPROVED


class GatewayError(Exception):
    """The gateway gave no usable answer."""


class GatewayTimeout(GatewayError):
    """No answer in time (or none that could be read) after the request was sent: the charge
    may or may not have happened. Only a later lookup can tell."""


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached or refused the request outright: nothing was charged."""


@runtime_checkable
class PaymentGateway(Protocol):
    def charge(
        self, *, reference: str, amount: Decimal, currency: str, payment_token: str, description: str
    ) -> ChargeResult:
        """Charge once per `reference` (the gateway's idempotency key): a repeat returns the
        first result and charges nothing. Raises GatewayTimeout or GatewayUnavailable."""
        ...

    def charge_lookup(self, *, reference: str) -> ChargeResult | None:
        """The result of the charge made under `reference`; None if the gateway never saw it."""
        ...


def payment_gateway() -> PaymentGateway:
    """The gateway `PAYMENT_GATEWAY` names: "http" (default), or a dotted path to a class
    taking the same keyword arguments (base_url, timeout)."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    from rewards.payments.http import HttpPaymentGateway

    name = settings.PAYMENT_GATEWAY
    cls = HttpPaymentGateway if name == "http" else import_string(name)
    return cls(base_url=settings.PAYMENT_GATEWAY_URL, timeout=settings.PAYMENT_GATEWAY_TIMEOUT_SECONDS)
