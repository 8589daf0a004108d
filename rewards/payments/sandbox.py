"""A sandbox payment gateway: a real HTTP server on 127.0.0.1 that speaks the protocol of
`rewards.payments.http`, for development (`make run` starts it) and tests (in-process).

    python -m rewards.payments.sandbox --port 8025

Deterministic payment tokens:

    tok_approve             approved
    tok_decline             declined, card_declined
    tok_insufficient_funds  declined, insufficient_funds
    tok_timeout             approved and recorded at once, but the answer comes `delay` seconds
                            late (past the client's timeout)
    tok_lost                the request hangs `delay` seconds and is dropped: nothing recorded
    anything else           declined, invalid_token

Charges are idempotent per `Idempotency-Key`: a repeat returns the first result and charges
nothing. `GET /charges/{reference}` looks one up (404: never seen); `GET /_sandbox/charges`
says how many times each reference was charged and requested; `POST /_sandbox/reset` forgets
everything.
"""

import argparse
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import unquote

from core.fakeserver import JsonHandler, QuietServer

APPROVE, DECLINE, INSUFFICIENT, TIMEOUT, LOST = (
    "tok_approve",
    "tok_decline",
    "tok_insufficient_funds",
    "tok_timeout",
    "tok_lost",
)
DECLINES = {
    DECLINE: ("card_declined", "The card was declined."),
    INSUFFICIENT: ("insufficient_funds", "The card has insufficient funds."),
}
AMOUNT = re.compile(r"^[0-9]{1,10}(\.[0-9]{1,2})?$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
DEFAULT_DELAY = 7.0  # past the client's default timeout of 5 s


@dataclass
class SandboxState:
    """What the sandbox has charged. `delay` is how late tok_timeout answers and how long
    tok_lost hangs; tests set it."""

    delay: float = DEFAULT_DELAY
    results: dict[str, dict] = field(default_factory=dict)  # reference -> first result
    requests: dict[str, dict] = field(default_factory=dict)  # reference -> the request it was charged for
    charged: Counter = field(default_factory=Counter)  # reference -> charges made (approved or declined)
    received: Counter = field(default_factory=Counter)  # reference -> charge requests received
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.results.clear()
            self.requests.clear()
            self.charged.clear()
            self.received.clear()

    def charge(self, reference: str, request: dict) -> tuple[int, dict, bool]:
        """Charge once per reference: (HTTP status, body, whether this request charged).
        Status 0: drop the request unanswered."""
        token = request["paymentToken"]
        with self.lock:
            self.received[reference] += 1
            if reference in self.results:
                if self.requests[reference] != request:
                    return 409, {"error": "idempotency_key_reused", "reference": reference}, False
                return 200, self.results[reference], False
            if token == LOST:
                return 0, {}, False
            if token in (APPROVE, TIMEOUT):
                result = {"status": "APPROVED", "declineCode": "", "declineMessage": ""}
            else:
                code, message = DECLINES.get(token, ("invalid_token", "The payment token is not valid."))
                result = {"status": "DECLINED", "declineCode": code, "declineMessage": message}
            result = {
                "reference": reference,
                "gatewayReference": f"ch_{uuid.uuid4().hex[:24]}",
                "amount": request["amount"],
                "currency": request["currency"],
                **result,
            }
            self.results[reference] = result
            self.requests[reference] = request
            self.charged[reference] += 1
            return 200, result, True

    def report(self) -> dict:
        with self.lock:
            return {
                "charges": {
                    reference: {
                        "charged": self.charged[reference],
                        "requests": self.received[reference],
                        "status": self.results.get(reference, {}).get("status"),
                        "amount": self.results.get(reference, {}).get("amount"),
                    }
                    for reference in sorted(set(self.received) | set(self.results))
                },
                "totalCharged": sum(self.charged.values()),
            }


class SandboxHandler(JsonHandler):
    server: "SandboxServer"

    def do_GET(self):
        state = self.server.state
        if self.path == "/health":
            return self._send(200, {"status": "ok"})
        if self.path == "/_sandbox/charges":
            return self._send(200, state.report())
        if self.path.startswith("/charges/"):
            reference = unquote(self.path.removeprefix("/charges/"))
            with state.lock:
                result = state.results.get(reference)
            if result is None:
                return self._send(404, {"error": "not_found", "reference": reference})
            return self._send(200, result)
        return self._send(404, {"error": "not_found"})

    def do_POST(self):
        state = self.server.state
        if self.path == "/_sandbox/reset":
            self._body()
            state.reset()
            return self._send(200, {"status": "reset"})
        if self.path != "/charges":
            return self._send(404, {"error": "not_found"})
        body = self._body()
        reference = (self.headers.get("Idempotency-Key") or "").strip()
        if not reference or len(reference) > 255:
            return self._send(400, {"error": "idempotency_key_required"})
        if body is None:
            return self._send(400, {"error": "invalid_json"})
        request = {
            "amount": body.get("amount"),
            "currency": body.get("currency"),
            "paymentToken": body.get("paymentToken"),
        }
        if not isinstance(request["amount"], str) or not AMOUNT.match(request["amount"]):
            return self._send(400, {"error": "invalid_amount"})
        if Decimal(request["amount"]) <= 0:
            return self._send(400, {"error": "invalid_amount"})
        if not isinstance(request["currency"], str) or not CURRENCY.match(request["currency"]):
            return self._send(400, {"error": "invalid_currency"})
        if not isinstance(request["paymentToken"], str) or not request["paymentToken"]:
            return self._send(400, {"error": "payment_token_required"})
        status, result, charged = state.charge(reference, request)
        if status == 0:
            # tok_lost: hang past the client's timeout, then drop the connection unanswered.
            time.sleep(state.delay)
            self.close_connection = True
            return None
        if charged and request["paymentToken"] == TIMEOUT:
            # Charged already; the answer is what arrives too late.
            time.sleep(state.delay)
        return self._send(status, result)


class SandboxServer(QuietServer):
    def __init__(self, address, *, delay: float = DEFAULT_DELAY, verbose: bool = False):
        super().__init__(address, SandboxHandler)
        self.state = SandboxState(delay=delay)
        self.verbose = verbose
        self._thread: threading.Thread | None = None

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def sandbox_start(*, host: str = "127.0.0.1", port: int = 0, delay: float = DEFAULT_DELAY) -> tuple[SandboxServer, str]:
    """Serve the sandbox from a background thread (port 0: a free one); returns the server
    (`.state`, `.stop()`) and its base URL."""
    server = SandboxServer((host, port), delay=delay)
    server._thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="payment-sandbox", daemon=True
    )
    server._thread.start()
    return server, server.base_url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Sandbox payment gateway (development and tests).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY, help="tok_timeout / tok_lost delay, seconds")
    parser.add_argument("--quiet", action="store_true", help="Do not log each request.")
    args = parser.parse_args(argv)
    server = SandboxServer((args.host, args.port), delay=args.delay, verbose=not args.quiet)
    print(f"==> sandbox payment gateway on {server.base_url} (tokens: tok_approve, tok_decline, ...)", flush=True)
    server.serve_until_interrupted()


if __name__ == "__main__":
    main()
