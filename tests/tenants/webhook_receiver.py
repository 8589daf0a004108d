"""A real webhook receiver on 127.0.0.1 for the tests: it verifies each signature with
`webhook_signature_verify`, records what it got, and can be made to fail."""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tenants.webhooks import webhook_signature_verify


@dataclass
class Received:
    event_id: str
    signature: str
    timestamp: str
    body: bytes
    verified: bool
    path: str

    @property
    def envelope(self) -> dict:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_POST(self):
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        signature = self.headers.get("X-Webhook-Signature", "")
        verified = webhook_signature_verify(secret=receiver.secret, header=signature, body=body)
        record = Received(
            event_id=self.headers.get("X-Webhook-Id", ""),
            signature=signature,
            timestamp=self.headers.get("X-Webhook-Timestamp", ""),
            body=body,
            verified=verified,
            path=self.path,
        )
        with receiver.lock:
            receiver.requests.append(record)
        mode = receiver.mode
        if mode == "hang":
            # Processed, but the answer comes too late: the sender will try again.
            with receiver.lock:
                if verified:
                    receiver.accepted.append(record)
            time.sleep(receiver.hang_seconds)
            self._answer(200, b"late")
            return
        if mode == "redirect" and self.path != receiver.redirect_final_path:
            self.send_response(307)
            self.send_header("Location", receiver.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if isinstance(mode, int):
            self._answer(mode, b"receiver is having a bad day " * 100)
            return
        if not verified:
            self._answer(401, b"bad signature")
            return
        with receiver.lock:
            receiver.accepted.append(record)
        self._answer(200, b'{"ok": true}')

    def _answer(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the sender gave up (timeout)

    def log_message(self, format, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: "Receiver"


class Receiver:
    """`mode`: "ok", an HTTP status (500, 503) to answer, "hang" (accept, then answer after
    `hang_seconds`) or "redirect" (307 to `redirect_to`); `stop()` refuses connections."""

    def __init__(self):
        self.secret = ""
        self.mode: str | int = "ok"
        self.hang_seconds = 2.0
        self.redirect_to = ""
        self.redirect_final_path = "/final"
        self.requests: list[Received] = []
        self.accepted: list[Received] = []
        self.lock = threading.Lock()
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> "Receiver":
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.receiver = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered_once(self) -> list[str]:
        """Event ids accepted, in arrival order, after de-duplication by X-Webhook-Id."""
        return list(dict.fromkeys(record.event_id for record in self.accepted))
