"""Fulfilment partners over HTTP/JSON (the sandbox speaks it; a partner's own adapter would
replace it per kind).

    POST {base}/gift-cards         -> 200 {"orderId", "code", ...}               giftCardCode
    POST {base}/shipments          -> 200 {"orderId", "shipmentReference", ...}  shipmentReference  (MERCHANDISE)
    POST {base}/bookings           -> 200 {"orderId", "bookingReference", ...}   bookingReference   (TRAVEL)
    POST {base}/statement-credits  -> 200 {"orderId", "creditReference", ...}    creditReference
    POST {base}/digital-codes      -> 200 {"orderId", "code", ...}               digitalCode        (DIGITAL)
         Idempotency-Key: <redemption id>
         {"sku", "itemName", "quantity", "memberRef", "cashValue": "12.50", "currency"}
      A repeat under the same key returns the same order (200) and places nothing; another
      request under a used key is 409, and so is any order under a voided key (409 "voided").
    GET  {base}/orders/{key}       -> 200 the order, with "status": "PLACED" | "VOID"; 404 never seen
    POST {base}/orders/{key}/void  -> 200 {"status": "VOID"}, also when nothing was placed (the key
                                      is then void, and a late order under it gets 409 "voided")

Authorization: Bearer <credentials> when the partner has credentials.

What an answer means: 2xx is done; a 5xx (the protocol's "not processed") or a 408/429 is
PartnerUnavailable, nothing placed, except 504, which a gateway in front of the partner gives
after waiting on it, so the order may exist: PartnerTimeout. Any other 4xx is PartnerRejected
(nothing placed, except a 409 other than "voided": an order already exists under the key). A
failure to connect or send is PartnerUnavailable; a timeout, a dropped connection or an
unreadable answer after the request went out is PartnerTimeout.

Each call makes up to `max_attempts` attempts (tenacity: exponential backoff with jitter),
retrying PartnerUnavailable and PartnerTimeout (safe: the key dedupes at the partner), not
PartnerRejected nor CircuitOpen. Every attempt goes through the partner's circuit breaker.
If an earlier attempt may have placed the order, the call's error says so (`maybe_placed`)
whatever the last attempt's was. stdlib urllib only; the timeout bounds the connection and
each read.
"""

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.client import HTTPException
from typing import TypeVar

from prometheus_client import Counter
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from redemptions.partners.base import (
    DIGITAL,
    GIFT_CARD,
    MERCHANDISE,
    STATEMENT_CREDIT,
    TRAVEL,
    CircuitOpen,
    FulfilmentRequest,
    FulfilmentResult,
    PartnerError,
    PartnerRejected,
    PartnerSettings,
    PartnerTimeout,
    PartnerUnavailable,
)
from redemptions.partners.breaker import circuit_call

logger = logging.getLogger(__name__)
T = TypeVar("T")

CALLS = Counter(
    "loyalty_partner_calls_total", "Calls (attempts) to fulfilment partners, by outcome", ["partner", "outcome"]
)

PLACED, VOID = "PLACED", "VOID"
UNAVAILABLE_STATUSES = {408, 429}  # and 5xx but 504
AMBIGUOUS_STATUSES = {504}  # a gateway gave up waiting on the partner
REFUSED_VOID_STATUSES = {409, 422}  # the partner will not void the order (shipped, redeemed...)


class HttpPartnerAdapter:
    """One item kind's orders with one partner; subclasses say which path and reference."""

    kind = ""
    path = ""
    reference_field = ""
    reference_kind = ""

    def __init__(self, settings: PartnerSettings):
        if urllib.parse.urlsplit(settings.base_url).scheme not in ("http", "https"):
            raise ValueError(f"partner {settings.code}: unsupported base URL {settings.base_url!r}")
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")

    def fulfil(self, request: FulfilmentRequest) -> FulfilmentResult:
        if request.kind != self.kind:
            raise ValueError(f"{type(self).__name__} fulfils {self.kind}, not {request.kind}")
        key = request.redemption_id
        body = {
            "sku": request.sku,
            "itemName": request.item_name,
            "quantity": request.quantity,
            "memberRef": request.member_ref,
            "cashValue": str(request.cash_value),
            "currency": request.currency,
        }

        def place() -> FulfilmentResult:
            status, payload = self._send("POST", self.path, key=key, body=body, idempotent=True)
            if not 200 <= status < 300:
                raise _failure(status, payload, key)
            if payload.get("status") == VOID:
                raise PartnerRejected(f"{key}: the order under this key is void")
            return self._result(payload, key)

        return self._call("fulfil", key, place)

    def void(self, *, redemption_id: str) -> bool:
        key = redemption_id

        def cancel() -> bool:
            status, payload = self._send("POST", f"/orders/{_quoted(key)}/void", key=key, body={})
            if 200 <= status < 300:
                return True
            if status in REFUSED_VOID_STATUSES:
                logger.warning(
                    "partner refused to void %s",
                    key,
                    extra={"partner": self.settings.code, "redemption": key, "error": payload.get("error", "")},
                )
                return False
            raise _failure(status, payload, key)

        return self._call("void", key, cancel)

    def lookup(self, *, redemption_id: str) -> FulfilmentResult | None:
        key = redemption_id

        def read() -> FulfilmentResult | None:
            status, payload = self._send("GET", f"/orders/{_quoted(key)}", key=key)
            if status == 404:
                return None
            if not 200 <= status < 300:
                raise _failure(status, payload, key)
            if payload.get("status") == VOID:
                return None
            return self._result(payload, key)

        return self._call("lookup", key, read)

    def _call(self, operation: str, key: str, send: Callable[[], T]) -> T:
        """`send()` through the breaker, retried; the error says `maybe_placed` if any attempt's did."""
        maybe_placed = False

        def attempt() -> T:
            nonlocal maybe_placed
            try:
                result = circuit_call(self.settings, send)
            except PartnerError as exc:
                maybe_placed = maybe_placed or exc.maybe_placed
                CALLS.labels(partner=self.settings.code, outcome=_outcome(exc)).inc()
                logger.warning(
                    "partner %s %s %s failed: %s",
                    self.settings.code,
                    operation,
                    key,
                    exc,
                    extra={
                        "partner": self.settings.code,
                        "tenant": self.settings.tenant_id,
                        "redemption": key,
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                )
                raise
            CALLS.labels(partner=self.settings.code, outcome="ok").inc()
            return result

        retrying = retry(
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=wait_exponential_jitter(multiplier=0.1, max=2),
            retry=retry_if_exception(_worth_retrying),
            reraise=True,
        )
        try:
            return retrying(attempt)()
        except PartnerError as exc:
            if not maybe_placed or exc.maybe_placed:
                raise
            message = f"{exc} (an earlier attempt may have been processed)"
            if isinstance(exc, PartnerRejected):
                raise PartnerRejected(message, maybe_placed=True) from exc
            raise PartnerTimeout(message) from exc

    def _send(
        self, method: str, path: str, *, key: str, body: dict | None = None, idempotent: bool = False
    ) -> tuple[int, dict]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if idempotent:
            headers["Idempotency-Key"] = key
        if self.settings.credentials:
            headers["Authorization"] = f"Bearer {self.settings.credentials}"
        request = urllib.request.Request(  # noqa: S310 - the configured partner's URL, http(s) only (see __init__)
            f"{self.base_url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_seconds) as response:  # noqa: S310
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    raw = exc.read()
                except (HTTPException, OSError):
                    raw = b""
                return exc.code, _json(raw)
        except urllib.error.URLError as exc:
            # Raised while connecting or sending: the partner did not get the request.
            raise PartnerUnavailable(f"{key}: {exc.reason}") from exc
        except (HTTPException, OSError) as exc:
            # The request went out and no (readable) answer came back in time.
            raise PartnerTimeout(f"{key}: {type(exc).__name__}: {exc}") from exc

    def _result(self, payload: dict, key: str) -> FulfilmentResult:
        order_id = payload.get("orderId")
        reference = payload.get(self.reference_field)
        if not (isinstance(order_id, str) and order_id and isinstance(reference, str) and reference):
            # Not the payload itself: it may hold a code the member redeems.
            raise PartnerTimeout(f"{key}: unreadable answer (fields: {sorted(payload)})")
        return FulfilmentResult(
            partner_order_id=order_id, reference=reference, reference_kind=self.reference_kind, details=payload
        )


class GiftCardPartnerAdapter(HttpPartnerAdapter):
    kind, path, reference_field, reference_kind = GIFT_CARD, "/gift-cards", "code", "giftCardCode"


class ShipmentPartnerAdapter(HttpPartnerAdapter):
    kind, path, reference_field, reference_kind = MERCHANDISE, "/shipments", "shipmentReference", "shipmentReference"


class BookingPartnerAdapter(HttpPartnerAdapter):
    kind, path, reference_field, reference_kind = TRAVEL, "/bookings", "bookingReference", "bookingReference"


class StatementCreditPartnerAdapter(HttpPartnerAdapter):
    kind, path, reference_field, reference_kind = (
        STATEMENT_CREDIT,
        "/statement-credits",
        "creditReference",
        "creditReference",
    )


class DigitalCodePartnerAdapter(HttpPartnerAdapter):
    kind, path, reference_field, reference_kind = DIGITAL, "/digital-codes", "code", "digitalCode"


HTTP_ADAPTERS: dict[str, type[HttpPartnerAdapter]] = {
    cls.kind: cls
    for cls in (
        GiftCardPartnerAdapter,
        ShipmentPartnerAdapter,
        BookingPartnerAdapter,
        StatementCreditPartnerAdapter,
        DigitalCodePartnerAdapter,
    )
}


def _failure(status: int, payload: dict, key: str) -> PartnerError:
    error = str(payload.get("error") or "")
    message = f"{key}: HTTP {status} {error}".strip()
    if status in AMBIGUOUS_STATUSES:
        return PartnerTimeout(message)
    if status >= 500 or status in UNAVAILABLE_STATUSES:
        return PartnerUnavailable(message)
    if status == 409 and error != "voided":
        return PartnerRejected(message, maybe_placed=True)
    return PartnerRejected(message)


def _worth_retrying(exc: BaseException) -> bool:
    return isinstance(exc, PartnerUnavailable | PartnerTimeout) and not isinstance(exc, CircuitOpen)


def _outcome(exc: PartnerError) -> str:
    if isinstance(exc, CircuitOpen):
        return "circuit_open"
    if isinstance(exc, PartnerRejected):
        return "rejected"
    if isinstance(exc, PartnerTimeout):
        return "timeout"
    return "unavailable"


def _quoted(key: str) -> str:
    return urllib.parse.quote(key, safe="")


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
