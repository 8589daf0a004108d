"""A fake LLM provider: a real HTTP server on 127.0.0.1 speaking the OpenAI-compatible
chat-completions protocol of `insights.ai.llm`, for development and tests (in-process:
`FakeProvider`).

    python -m insights.ai.fake_provider --port 8027 [--mode ok] [--key K]
    AI_PROVIDER_URL=http://127.0.0.1:8027/v1/chat/completions AI_PROVIDER_MODEL=fake

`POST .../chat/completions` answers by mode, process-wide, switched with
`POST /_fake/mode {"mode", "delay", "variant", "categoryId", "reason"}` (read with
`GET /_fake/mode`):

    ok         200, content {"categoryId", "reason"}: `categoryId` if set, else the first
               category of the request
    error      500 {"error": ...}
    timeout    sleep `delay` seconds (default 35, past the client's default 30), then as ok
    trickle    200 headers at once, then the body one byte every `delay` seconds (default 0.2)
    malformed  200 with an answer the client must refuse, by `variant`:
               text      content that is not JSON (prose, a code fence)
               keys      content with other keys ({"category", "why"})
               extra     content with a key beyond categoryId and reason
               category  a categoryId that was not offered
               envelope  a body that is not a chat completion

A GET of the endpoint (what readiness probes) answers 405, 500 in mode error, late in mode
timeout. `GET /_fake/requests` lists the completions requests received (path, authorization,
body); `POST /_fake/reset` forgets them and returns to ok. Started with a key, the fake answers
401 to completions requests without `Authorization: Bearer <key>`.
"""

import argparse
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from core.fakeserver import BackgroundServer, JsonHandler, QuietServer

OK, ERROR, TIMEOUT, TRICKLE, MALFORMED = "ok", "error", "timeout", "trickle", "malformed"
MODES = (OK, ERROR, TIMEOUT, TRICKLE, MALFORMED)
VARIANTS = ("text", "keys", "extra", "category", "envelope")
DEFAULT_DELAYS = {TIMEOUT: 35.0, TRICKLE: 0.2}
COMPLETIONS = "/chat/completions"


@dataclass
class FakeState:
    mode: str = OK
    delay: float = 0.0
    variant: str = "text"
    category_id: str = ""
    reason: str = "Chosen by the fake provider."
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_mode(
        self,
        mode: str,
        *,
        delay: float | None = None,
        variant: str | None = None,
        category_id: str | None = None,
        reason: str | None = None,
    ) -> dict:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if variant is not None and variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
        delay = DEFAULT_DELAYS.get(mode, 0.0) if delay is None else float(delay)
        if delay < 0:
            raise ValueError("delay must be >= 0")
        with self.lock:
            self.mode, self.delay = mode, delay
            self.variant = variant or "text"
            self.category_id = category_id or ""
            if reason is not None:
                self.reason = reason
        return self.mode_report()

    def mode_report(self) -> dict:
        with self.lock:
            return {"mode": self.mode, "delay": self.delay, "variant": self.variant, "categoryId": self.category_id}

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.reason = "Chosen by the fake provider."
        self.set_mode(OK)

    def record(self, request: dict) -> tuple[str, float, str, str, str]:
        with self.lock:
            self.requests.append(request)
            return self.mode, self.delay, self.variant, self.category_id, self.reason

    def report(self) -> list[dict]:
        with self.lock:
            return [dict(request) for request in self.requests]


def _offered(body: dict | None) -> list[str]:
    """The categoryIds of the request's user message (the prompt of insights.ai.llm)."""
    try:
        user = next(m for m in body["messages"] if m.get("role") == "user")
        return [c["categoryId"] for c in json.loads(user["content"])["categories"]]
    except (KeyError, TypeError, ValueError, StopIteration):
        return []


def _completion(content: str, model: str) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }


def _malformed(variant: str, offered: list[str], reason: str, model: str) -> dict | str:
    first = offered[0] if offered else "unknown"
    if variant == "envelope":
        return {"result": {"categoryId": first, "reason": reason}}
    content = {
        "text": f'```json\n{{"categoryId": "{first}", "reason": "{reason}"}}\n```',
        "keys": json.dumps({"category": first, "why": reason}),
        "extra": json.dumps({"categoryId": first, "reason": reason, "confidence": 0.9}),
        "category": json.dumps({"categoryId": "no-such-category", "reason": reason}),
    }[variant]
    return _completion(content, model)


class FakeHandler(JsonHandler):
    server: "FakeServer"

    def do_GET(self):
        state = self.server.state
        if self.path == "/health":
            return self._send(200, {"status": "ok"})
        if self.path == "/_fake/mode":
            return self._send(200, state.mode_report())
        if self.path == "/_fake/requests":
            return self._send(200, state.report())
        if not self.path.endswith(COMPLETIONS):
            return self._send(404, {"error": "not_found"})
        current = state.mode_report()
        mode, delay = current["mode"], current["delay"]
        if mode == ERROR:
            return self._send(500, {"error": "internal_error"})
        if mode == TIMEOUT:
            time.sleep(delay)
        return self._send(405, {"error": "method_not_allowed"})

    def do_POST(self):
        state = self.server.state
        body = self._body()
        if self.path == "/_fake/reset":
            state.reset()
            return self._send(200, {"status": "reset"})
        if self.path == "/_fake/mode":
            if body is None:
                return self._send(400, {"error": "invalid_json"})
            try:
                report = state.set_mode(
                    str(body.get("mode")),
                    delay=body.get("delay"),
                    variant=body.get("variant"),
                    category_id=body.get("categoryId"),
                    reason=body.get("reason"),
                )
            except (TypeError, ValueError) as exc:
                return self._send(400, {"error": "invalid_mode", "detail": str(exc)})
            return self._send(200, report)
        if not self.path.endswith(COMPLETIONS):
            return self._send(404, {"error": "not_found"})
        mode, delay, variant, category_id, reason = state.record(
            {"path": self.path, "authorization": self.headers.get("Authorization"), "body": body}
        )
        key = self.server.key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            return self._send(401, {"error": {"message": "invalid api key"}})
        if body is None or not isinstance(body.get("messages"), list):
            return self._send(400, {"error": {"message": "messages required"}})
        model, offered = str(body.get("model") or ""), _offered(body)
        if mode == ERROR:
            return self._send(500, {"error": {"message": "the fake provider failed"}})
        if mode == MALFORMED:
            answer = _malformed(variant, offered, reason, model)
            return self._send(200, answer)
        if mode == TIMEOUT:
            time.sleep(delay)
        chosen = category_id or (offered[0] if offered else "")
        answer = _completion(json.dumps({"categoryId": chosen, "reason": reason}), model)
        if mode == TRICKLE:
            return self._trickle(answer, delay)
        return self._send(200, answer)

    def _trickle(self, body: dict, interval: float) -> None:
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.flush()
        try:
            for i in range(len(raw)):
                self.wfile.write(raw[i : i + 1])
                self.wfile.flush()
                time.sleep(interval)
        except OSError:
            self.close_connection = True  # the client gave up


class FakeServer(QuietServer):
    def __init__(self, address, *, key: str = "", verbose: bool = False):
        super().__init__(address, FakeHandler)
        self.state = FakeState()
        self.key = key
        self.verbose = verbose


class FakeProvider(BackgroundServer):
    """The fake served from a background thread, for tests: `start()` (port 0: a free one),
    `.url` (the completions endpoint), `set_mode()`, `requests()`, `reset()`, `stop()`."""

    name = "the fake AI provider"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, key: str = ""):
        super().__init__()
        self._address = (host, port)
        self._key = key

    def make_server(self) -> FakeServer:
        return FakeServer(self._address, key=self._key)

    @property
    def url(self) -> str:
        return f"{self._running.base_url}/v1{COMPLETIONS}"

    def set_mode(self, mode: str, **options) -> dict:
        return self._running.state.set_mode(mode, **options)

    def requests(self) -> list[dict]:
        return self._running.state.report()

    def reset(self) -> None:
        self._running.state.reset()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible LLM provider (development and tests).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8027)
    parser.add_argument("--key", default="", help="Require Authorization: Bearer <key> on completions requests.")
    parser.add_argument("--mode", choices=MODES, default=OK)
    parser.add_argument("--delay", type=float, default=None, help="Seconds for timeout / trickle.")
    parser.add_argument("--variant", choices=VARIANTS, default=None, help="malformed: what is wrong.")
    parser.add_argument("--category-id", default=None, help="ok: the categoryId to answer (default: the first).")
    parser.add_argument("--quiet", action="store_true", help="Do not log each request.")
    args = parser.parse_args(argv)
    server = FakeServer((args.host, args.port), key=args.key, verbose=not args.quiet)
    mode = server.state.set_mode(args.mode, delay=args.delay, variant=args.variant, category_id=args.category_id)
    print(f"==> fake AI provider on {server.base_url}/v1{COMPLETIONS} (mode {mode['mode']})", flush=True)
    server.serve_until_interrupted()


if __name__ == "__main__":
    main()
