"""The gateway over HTTP/JSON (the sandbox speaks it; a provider's adapter would replace it).

    POST {base}/charges          Idempotency-Key: <reference>
         {"amount": "9.99", "currency": "USD", "paymentToken": "...", "description": "..."}
      -> 200 {"reference", "status": "APPROVED" | "DECLINED", "gatewayReference",
              "declineCode", "declineMessage"}
    GET  {base}/charges/{reference}  -> 200 as above, or 404 when the gateway never saw it

stdlib urllib only: nothing else is a dependency. The timeout bounds the connection and each
read. A failure before the request was sent (refused, unreachable, a 4xx) means nothing was
charged; a timeout, a dropped connection or a 5xx after it was sent leaves the outcome unknown.
"""

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal
from http.client import HTTPException

from rewards.payments.gateway import APPROVED, DECLINED, ChargeResult, GatewayTimeout, GatewayUnavailable

logger = logging.getLogger(__name__)

# A 409 is the gateway refusing a key reused with another request: a charge under it may exist.
AMBIGUOUS_STATUSES = {409}


class HttpPaymentGateway:
    def __init__(self, *, base_url: str, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def charge(
        self, *, reference: str, amount: Decimal, currency: str, payment_token: str, description: str
    ) -> ChargeResult:
        body = {"amount": str(amount), "currency": currency, "paymentToken": payment_token, "description": description}
        request = urllib.request.Request(  # noqa: S310 - the URL is the configured gateway's, http(s) only
            f"{self.base_url}/charges",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json", "Idempotency-Key": reference},
        )
        status, payload = self._send(request, reference=reference)
        if status != 200:
            raise self._refusal(status, payload, reference)
        return self._result(payload, reference)

    def charge_lookup(self, *, reference: str) -> ChargeResult | None:
        request = urllib.request.Request(  # noqa: S310 - see charge
            f"{self.base_url}/charges/{urllib.parse.quote(reference, safe='')}",
            method="GET",
            headers={"Accept": "application/json"},
        )
        status, payload = self._send(request, reference=reference)
        if status == 404:
            return None
        if status != 200:
            raise GatewayTimeout(f"lookup of {reference}: HTTP {status}")
        return self._result(payload, reference)

    def _send(self, request: urllib.request.Request, *, reference: str) -> tuple[int, dict]:
        if urllib.parse.urlsplit(request.full_url).scheme not in ("http", "https"):
            raise GatewayUnavailable(f"unsupported gateway URL {self.base_url!r}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, _json(exc.read())
        except urllib.error.URLError as exc:
            # Raised while connecting or sending: the gateway did not get the request.
            raise GatewayUnavailable(f"{reference}: {exc.reason}") from exc
        except (TimeoutError, HTTPException, ConnectionError, OSError) as exc:
            # The request went out and no (readable) answer came back in time.
            raise GatewayTimeout(f"{reference}: {type(exc).__name__}: {exc}") from exc

    def _refusal(self, status: int, payload: dict, reference: str) -> Exception:
        message = f"{reference}: HTTP {status} {payload.get('error', '')}".strip()
        if status >= 500 or status in AMBIGUOUS_STATUSES:
            return GatewayTimeout(message)
        return GatewayUnavailable(message)

    def _result(self, payload: dict, reference: str) -> ChargeResult:
        status = payload.get("status")
        if status not in (APPROVED, DECLINED):
            raise GatewayTimeout(f"{reference}: unreadable answer {payload!r:.200}")
        return ChargeResult(
            status=status,
            gateway_reference=str(payload.get("gatewayReference") or ""),
            decline_code=str(payload.get("declineCode") or ""),
            decline_message=str(payload.get("declineMessage") or ""),
        )


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
