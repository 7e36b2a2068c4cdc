"""The HTTP surface of `serve`: routes to the Service, one thread per connection.

Read endpoints answer with what the last cycle rendered; only an environment's page
reads the registry. The webhook refuses a body over GitHub's cap before reading it."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from reconciler.serve import dashboard
from reconciler.serve.metrics import CONTENT_TYPE as METRICS_TYPE
from reconciler.serve.service import Service
from reconciler.serve.webhook import EVENT_HEADER, MAX_BODY, SIGNATURE_HEADER

HTML = "text/html; charset=utf-8"
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
READ_TIMEOUT = 30.0  # seconds a client may take to send its request


class ListenError(ValueError):
    pass


def parse_listen(value: str) -> tuple[str, int]:
    """`127.0.0.1:8080`, `[::1]:8080`, `localhost:0` (any free port)."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ListenError(f"listen {value!r}: expected HOST:PORT (e.g. 127.0.0.1:8080)")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT
    # Headers and body go out in two writes: with Nagle's algorithm the second waits for
    # the client's delayed ACK of the first (40 ms on Linux) on a kept-alive connection.
    disable_nagle_algorithm = True

    def _send(self, code: int, body: bytes, content_type: str, close: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, value: Any, close: bool = False) -> None:
        self._send(code, (json.dumps(value, ensure_ascii=False) + "\n").encode(), JSON, close)

    def do_GET(self) -> None:
        service = self.server.service
        path = unquote(urlsplit(self.path).path)
        if path == "/healthz":
            self._send(200, b"ok\n", TEXT)
        elif path == "/readyz":
            rendered = service.rendered
            code = 200 if rendered.ready else 503
            self._send(code, (rendered.reason + "\n").encode(), TEXT)
        elif path == "/metrics":
            self._send(200, service.metrics.exposition(), METRICS_TYPE)
        elif path == "/api/status":
            self._send(200, service.rendered.status_json, JSON)
        elif path in ("/", "/index.html"):
            self._send(200, service.rendered.dashboard_html, HTML)
        elif path.startswith(("/environments/", "/api/environments/")):
            self._environment(path)
        else:
            self._send(404, b"not found\n", TEXT)

    do_HEAD = do_GET

    def _environment(self, path: str) -> None:
        api = path.startswith("/api/")
        name = path.split("/environments/", 1)[1]
        document = self.server.service.environment(name) if name and "/" not in name else None
        if document is None:
            self._send(404, f"no environment {name!r}\n".encode(), TEXT)
        elif api:
            self._json(200, document)
        else:
            self._send(200, dashboard.format_environment(document).encode(), HTML)

    def do_POST(self) -> None:
        service = self.server.service
        if urlsplit(self.path).path != "/hooks/github":
            self._send(404, b"not found\n", TEXT, close=True)
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.strip().isdigit():
            service.webhook_result("bad_request")
            self._json(411, {"error": "a Content-Length is required"}, close=True)
            return
        length = int(length_header)
        if length > MAX_BODY:
            # Not read: the connection is closed instead.
            service.webhook_result("too_large")
            self._json(413, {"error": f"body over {MAX_BODY} bytes"}, close=True)
            return
        body = self.rfile.read(length)
        if len(body) != length:
            service.webhook_result("bad_request")
            self._json(400, {"error": "body shorter than its Content-Length"}, close=True)
            return
        verdict = service.webhook(
            self.headers.get(EVENT_HEADER), self.headers.get(SIGNATURE_HEADER), body
        )
        answer = {"result": verdict.result, "message": verdict.message}
        self._json(verdict.status, answer)

    def _refuse(self) -> None:
        self._send(405, b"method not allowed\n", TEXT, close=True)

    do_PUT = do_DELETE = do_PATCH = _refuse

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per reconcile and per webhook is the log; no access log


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: Service) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service = service
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-answer is not the service's problem


class HttpServer:
    """The server on its own thread; ``close`` stops it."""

    def __init__(self, listen: str, service: Service) -> None:
        try:
            self._server = _Server(parse_listen(listen), service)
        except OSError as exc:
            raise ListenError(f"listen {listen}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 1.0}, name="http"
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
