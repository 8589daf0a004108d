"""What the local stand-ins for external partners share (the payment gateway sandbox, the
fulfilment partner sandbox, the AI provider fake): real HTTP servers on 127.0.0.1 with a JSON
request handler, quiet about clients that hang up on purpose, and a way to run one from a
background thread in tests."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict | None:
        """The request's JSON object, or None when it is not one."""
        length = int(self.headers.get("Content-Length") or 0)
        try:
            value = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    verbose = False

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def serve_until_interrupted(self) -> None:
        """Serve in the foreground (`python -m ...`) until Ctrl-C."""
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.server_close()

    def handle_error(self, request, client_address):
        # A client that gave up (a timeout the test asked for) closes the connection under us.
        if self.verbose:
            super().handle_error(request, client_address)


class BackgroundServer:
    """A server served from a background thread, for tests: `start()` (port 0: a free one),
    `stop()`; subclasses say how to make the server."""

    name = "the local server"

    def __init__(self):
        self._server: QuietServer | None = None
        self._thread: threading.Thread | None = None

    def make_server(self) -> QuietServer:
        raise NotImplementedError

    def start(self):
        self._server = self.make_server()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def _running(self):
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._server
