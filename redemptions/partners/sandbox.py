"""A sandbox fulfilment partner: a real HTTP server on 127.0.0.1 that speaks the protocol of
`redemptions.partners.http`, for development and tests (in-process: `PartnerSandbox`).

    python -m redemptions.partners.sandbox --port 8026 [--token T] [--mode ok]

Behaviour modes, process-wide, switched with `POST /_sandbox/mode {"mode", "delay", "every"}`
(read with `GET /_sandbox/mode`). "Writes" are orders and voids, "reads" are lookups:

    ok       place (once per key) and answer 200
    fail     503 to every write and read, doing nothing (the partner is down)
    reject   422 {"error": "rejected"} to every write, doing nothing; reads as usual
    timeout  do the write at once, then answer `delay` seconds late (default 7, past the
             client's timeout); reads as usual
    slow     wait `delay` seconds (default 0.5), then do the write or read and answer
    flaky    503 (doing nothing) to every `every`-th write or read (default 2), counted from
             when the mode was set; the others as ok
    lost     hang `delay` seconds (default 7) on a write and drop the connection, doing
             nothing; reads as usual

Orders are idempotent per Idempotency-Key: a repeat of the same request (same path, same
body) returns the same order and places nothing; anything else under a used key is 409
"idempotency_key_reused", and any order under a voided key 409 "voided". A void of a key never
placed answers 200 and makes the key void. A lookup of such a key answers 200 {"status":
"VOID"} with no order; of a key never seen, 404.

`GET /_sandbox/orders` -> {key: {"placed", "void", "requests", "kind"}}: how many orders were
placed under the key (never more than 1), whether it is void, how many protocol requests
(orders, voids, lookups) named it, and the order path it was first ordered on.
`POST /_sandbox/reset` forgets everything and returns to ok. Started with a token, the
sandbox answers 401 to protocol requests without `Authorization: Bearer <token>`. Bad JSON
or missing fields are 400.
"""

import argparse
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote

from core.fakeserver import BackgroundServer, JsonHandler, QuietServer

OK, FAIL, REJECT, TIMEOUT, SLOW, FLAKY, LOST = "ok", "fail", "reject", "timeout", "slow", "flaky", "lost"
MODES = (OK, FAIL, REJECT, TIMEOUT, SLOW, FLAKY, LOST)
DEFAULT_DELAYS = {TIMEOUT: 7.0, SLOW: 0.5, LOST: 7.0}  # timeout and lost: past the client's default 5 s
DEFAULT_EVERY = 2

# Order path -> (reference field, reference prefix).
PATHS = {
    "/gift-cards": ("code", "GC"),
    "/shipments": ("shipmentReference", "SHP"),
    "/bookings": ("bookingReference", "BK"),
    "/statement-credits": ("creditReference", "CR"),
    "/digital-codes": ("code", "DG"),
}
ORDER_PATH = re.compile(r"^/orders/([^/]+)$")
VOID_PATH = re.compile(r"^/orders/([^/]+)/void$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
MONEY = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,4})?$")


@dataclass
class SandboxState:
    """What the sandbox has placed and voided, and how it behaves now."""

    mode: str = OK
    delay: float = 0.0
    every: int = DEFAULT_EVERY
    seen: int = 0  # protocol requests since the mode was set (flaky counts them)
    orders: dict[str, dict] = field(default_factory=dict)  # key -> the order
    bodies: dict[str, tuple[str, dict]] = field(default_factory=dict)  # key -> (path, request) it was placed for
    placed: Counter = field(default_factory=Counter)  # key -> orders placed
    received: Counter = field(default_factory=Counter)  # key -> protocol requests naming it
    kinds: dict[str, str] = field(default_factory=dict)  # key -> path first ordered on
    voided: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_mode(self, mode: str, *, delay: float | None = None, every: int | None = None) -> dict:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        delay = DEFAULT_DELAYS.get(mode, 0.0) if delay is None else float(delay)
        every = DEFAULT_EVERY if every is None else int(every)
        if delay < 0 or every < 1:
            raise ValueError("delay must be >= 0 and every >= 1")
        with self.lock:
            self.mode, self.delay, self.every, self.seen = mode, delay, every, 0
        return self.mode_report()

    def mode_report(self) -> dict:
        with self.lock:
            return {"mode": self.mode, "delay": self.delay, "every": self.every}

    def reset(self) -> None:
        with self.lock:
            self.orders.clear()
            self.bodies.clear()
            self.placed.clear()
            self.received.clear()
            self.kinds.clear()
            self.voided.clear()
        self.set_mode(OK)

    def receive(self, key: str, *, order_path: str = "") -> tuple[str, float]:
        """Count a protocol request naming `key`; what to do with it: (behaviour, delay), where
        flaky has become fail or ok."""
        with self.lock:
            self.received[key] += 1
            if order_path:
                self.kinds.setdefault(key, order_path)
            self.seen += 1
            mode = self.mode
            if mode == FLAKY:
                mode = FAIL if self.seen % self.every == 0 else OK
            return mode, self.delay

    def place(self, key: str, path: str, request: dict) -> tuple[int, dict]:
        with self.lock:
            if key in self.voided:
                return 409, {"error": "voided", "idempotencyKey": key}
            if key in self.orders:
                if self.bodies[key] != (path, request):
                    return 409, {"error": "idempotency_key_reused", "idempotencyKey": key}
                return 200, self.orders[key]
            field_name, prefix = PATHS[path]
            order = {
                "orderId": f"ord_{uuid.uuid4().hex[:20]}",
                "idempotencyKey": key,
                "status": "PLACED",
                "kind": path,
                **request,
                field_name: f"{prefix}-{secrets.token_hex(6).upper()}",
            }
            self.orders[key] = order
            self.bodies[key] = (path, request)
            self.placed[key] += 1
            return 200, order

    def void(self, key: str) -> dict:
        with self.lock:
            self.voided.add(key)
            order = self.orders.get(key)
            if order is None:
                return {"idempotencyKey": key, "status": "VOID"}
            order["status"] = "VOID"
            return order

    def lookup(self, key: str) -> tuple[int, dict]:
        with self.lock:
            if key in self.orders:
                return 200, self.orders[key]
            if key in self.voided:
                return 200, {"idempotencyKey": key, "status": "VOID"}
            return 404, {"error": "not_found", "idempotencyKey": key}

    def report(self) -> dict:
        with self.lock:
            return {
                key: {
                    "placed": self.placed[key],
                    "void": key in self.voided,
                    "requests": self.received[key],
                    "kind": self.kinds.get(key),
                }
                for key in sorted(set(self.received) | set(self.orders) | self.voided)
            }


class SandboxHandler(JsonHandler):
    server: "SandboxServer"

    def _authorized(self) -> bool:
        token = self.server.token
        return not token or self.headers.get("Authorization") == f"Bearer {token}"

    def _drop(self, delay: float) -> None:
        time.sleep(delay)
        self.close_connection = True

    def do_GET(self):
        state = self.server.state
        if self.path == "/health":
            return self._send(200, {"status": "ok"})
        if self.path == "/_sandbox/orders":
            return self._send(200, state.report())
        if self.path == "/_sandbox/mode":
            return self._send(200, state.mode_report())
        match = ORDER_PATH.match(self.path)
        if match is None:
            return self._send(404, {"error": "not_found"})
        key = unquote(match.group(1))
        behaviour, delay = state.receive(key)
        if not self._authorized():
            return self._send(401, {"error": "unauthorized"})
        if behaviour == FAIL:
            return self._send(503, {"error": "unavailable"})
        if behaviour == SLOW:
            time.sleep(delay)
        return self._send(*state.lookup(key))

    def do_POST(self):
        state = self.server.state
        body = self._body()
        if self.path == "/_sandbox/reset":
            state.reset()
            return self._send(200, {"status": "reset"})
        if self.path == "/_sandbox/mode":
            if body is None:
                return self._send(400, {"error": "invalid_json"})
            try:
                return self._send(
                    200, state.set_mode(str(body.get("mode")), delay=body.get("delay"), every=body.get("every"))
                )
            except (TypeError, ValueError) as exc:
                return self._send(400, {"error": "invalid_mode", "detail": str(exc)})
        if match := VOID_PATH.match(self.path):
            return self._void(unquote(match.group(1)))
        if self.path in PATHS:
            return self._order(body)
        return self._send(404, {"error": "not_found"})

    def _void(self, key: str) -> None:
        state = self.server.state
        behaviour, delay = state.receive(key)
        if not self._authorized():
            return self._send(401, {"error": "unauthorized"})
        if behaviour == FAIL:
            return self._send(503, {"error": "unavailable"})
        if behaviour == REJECT:
            return self._send(422, {"error": "rejected"})
        if behaviour == LOST:
            return self._drop(delay)
        if behaviour == SLOW:
            time.sleep(delay)
        result = state.void(key)
        if behaviour == TIMEOUT:
            time.sleep(delay)
        return self._send(200, result)

    def _order(self, body: dict | None) -> None:
        state = self.server.state
        key = (self.headers.get("Idempotency-Key") or "").strip()
        if not key or len(key) > 255:
            return self._send(400, {"error": "idempotency_key_required"})
        behaviour, delay = state.receive(key, order_path=self.path)
        if not self._authorized():
            return self._send(401, {"error": "unauthorized"})
        if behaviour == FAIL:
            return self._send(503, {"error": "unavailable"})
        if body is None:
            return self._send(400, {"error": "invalid_json"})
        request, error = _order_request(body)
        if error:
            return self._send(400, {"error": error})
        if behaviour == REJECT:
            return self._send(422, {"error": "rejected"})
        if behaviour == LOST:
            return self._drop(delay)
        if behaviour == SLOW:
            time.sleep(delay)
        status, result = state.place(key, self.path, request)
        if behaviour == TIMEOUT:
            # Placed already; the answer is what arrives too late.
            time.sleep(delay)
        return self._send(status, result)


def _order_request(body: dict) -> tuple[dict, str]:
    """The order's fields, or an error code."""
    request = {name: body.get(name) for name in ("sku", "itemName", "quantity", "memberRef", "cashValue", "currency")}
    for name in ("sku", "itemName", "memberRef"):
        if not isinstance(request[name], str) or not request[name].strip():
            return request, f"invalid_{name}"
    quantity = request["quantity"]
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        return request, "invalid_quantity"
    cash_value = request["cashValue"]
    try:
        if not isinstance(cash_value, str) or not MONEY.match(cash_value) or Decimal(cash_value) < 0:
            return request, "invalid_cashValue"
    except InvalidOperation:
        return request, "invalid_cashValue"
    if not isinstance(request["currency"], str) or not CURRENCY.match(request["currency"]):
        return request, "invalid_currency"
    return request, ""


class SandboxServer(QuietServer):
    def __init__(self, address, *, token: str = "", verbose: bool = False):
        super().__init__(address, SandboxHandler)
        self.state = SandboxState()
        self.token = token
        self.verbose = verbose


class PartnerSandbox(BackgroundServer):
    """The sandbox served from a background thread, for tests: `start()` (port 0: a free one),
    `.url`, `set_mode()`, `orders()`, `reset()`, `stop()`."""

    name = "the partner sandbox"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token: str = ""):
        super().__init__()
        self._address = (host, port)
        self._token = token

    def make_server(self) -> SandboxServer:
        return SandboxServer(self._address, token=self._token)

    @property
    def url(self) -> str:
        return self._running.base_url

    def set_mode(self, mode: str, *, delay: float | None = None, every: int | None = None) -> dict:
        return self._running.state.set_mode(mode, delay=delay, every=every)

    def orders(self) -> dict:
        return self._running.state.report()

    def reset(self) -> None:
        self._running.state.reset()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Sandbox fulfilment partner (development and tests).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8026)
    parser.add_argument("--token", default="", help="Require Authorization: Bearer <token> on protocol requests.")
    parser.add_argument("--mode", choices=MODES, default=OK)
    parser.add_argument("--delay", type=float, default=None, help="Seconds for timeout / slow / lost.")
    parser.add_argument("--every", type=int, default=None, help="flaky: fail every n-th request.")
    parser.add_argument("--quiet", action="store_true", help="Do not log each request.")
    args = parser.parse_args(argv)
    server = SandboxServer((args.host, args.port), token=args.token, verbose=not args.quiet)
    mode = server.state.set_mode(args.mode, delay=args.delay, every=args.every)
    print(f"==> sandbox fulfilment partner on {server.base_url} (mode {mode['mode']})", flush=True)
    server.serve_until_interrupted()


if __name__ == "__main__":
    main()
