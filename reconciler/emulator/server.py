"""The emulator's HTTPS server: routing, authentication, paging, faults and error bodies.

ARM calls (``/subscriptions/...``) need ``Authorization: Bearer <token>``; blob calls
(``/<account>/<container>/<blob>``) need the SAS the datastore hands out. Errors have the
service's shapes: ``{"error": {"code", "message"}}`` for ARM, XML for storage.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from reconciler.emulator import arm_routes, blob_routes
from reconciler.emulator.faults import FaultSpecError, parse_fault
from reconciler.emulator.http import (
    BLOB_ACCOUNT,
    CONTROL_PREFIX,
    DEFAULT_PAGE_SIZE,
    MFE_PREFIX,
    EmulatorState,
    Request,
    Response,
    arm_error,
)
from reconciler.emulator.throttle import retry_after_header
from reconciler.emulator.tls import TlsFiles, ensure_tls


class Emulator(EmulatorState):
    """The state, and the dispatch of each request to its routes."""

    # -- dispatch -----------------------------------------------------------------------

    def handle(self, request: Request) -> Response | None:
        """The answer, or None to drop the connection."""
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        first = request.path.strip("/").split("/", 1)[0].lower()
        if self.limiter is not None and first != BLOB_ACCOUNT:
            # ARM throttles per caller; storage has budgets of its own, far above these.
            wait = self.limiter.admit()
            if wait is not None:
                response = arm_error(
                    429,
                    "TooManyRequests",
                    f"the request rate is over {self.limiter.rate:g} per second; retry later",
                )
                response.headers["Retry-After"] = retry_after_header(wait)
                return response
        fault = self.faults.take(request.method, request.path)
        if fault is not None:
            if fault.status is None:
                return None
            response = self._fault_response(request, fault.status)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(fault.retry_after)
            return response
        # Registries are served under the management front end's prefix; same resources.
        if request.path.lower().startswith(MFE_PREFIX):
            request.path = request.path[len(MFE_PREFIX) - 1 :]
        first = request.path.strip("/").split("/", 1)[0].lower()
        with self._write_lock:
            if first in ("subscriptions", "registrymanagement"):
                denied = self._check_bearer(request)
                return denied or arm_routes.route(self, request)
            if first == BLOB_ACCOUNT:
                return blob_routes.route(self, request)
        return arm_error(404, "NotFound", f"the emulator has no route {request.path}")

    def _fault_response(self, request: Request, status: int) -> Response:
        phrase = HTTPStatus(status).phrase
        if request.path.strip("/").startswith(BLOB_ACCOUNT):
            return blob_routes.storage_error(status, "ServerBusy", f"injected fault: {phrase}")
        code = "TooManyRequests" if status == 429 else phrase.replace(" ", "")
        return arm_error(status, code, f"injected fault: {phrase}")

    def _check_bearer(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        if header != f"Bearer {self.token}":
            return arm_error(
                401,
                "InvalidAuthenticationToken",
                "the access token is missing or invalid (the emulator expects the token it "
                "printed at start-up)",
            )
        return None

    def _control(self, request: Request) -> Response:
        what = request.path[len(CONTROL_PREFIX) :].strip("/")
        if what == "health":
            return Response.json(200, {"status": "ok"})
        if what == "requests":
            with self._log_lock:
                return Response.json(200, {"requests": list(self.requests)})
        if what == "counters":
            # DELETE answers the counts up to now and starts again from zero.
            return Response.json(200, self._counters(reset=request.method == "DELETE"))
        if what == "clock":
            # Moves the lease clock forward, so a test lets a lease expire without waiting.
            if request.method == "POST":
                body = request.json()
                seconds = body.get("advance_seconds") if isinstance(body, dict) else None
                if not isinstance(seconds, int | float) or seconds < 0:
                    return arm_error(400, "InvalidClock", 'expected {"advance_seconds": N}, N >= 0')
                with self._write_lock:
                    self.leases.offset += float(seconds)
            return Response.json(200, {"offset_seconds": self.leases.offset})
        if what == "faults":
            if request.method == "GET":
                return Response.json(200, {"faults": self.faults.describe()})
            if request.method == "DELETE":
                self.faults.clear()
                return Response.json(200, {"faults": []})
            if request.method == "POST":
                spec = request.json()
                specs = spec if isinstance(spec, list) else [spec]
                try:
                    for item in specs:
                        self.faults.add(parse_fault(item))
                except FaultSpecError as exc:
                    return arm_error(400, "InvalidFault", str(exc))
                return Response.json(200, {"faults": self.faults.describe()})
        return arm_error(404, "NotFound", f"no control endpoint {request.path}")

    def _counters(self, reset: bool = False) -> dict[str, Any]:
        counts = self.counter.reset() if reset else self.counter.snapshot()
        counts["throttled"] = self.limiter.refused if self.limiter else 0
        counts["latency_ms"] = self.latency * 1000.0
        counts["rate_limit"] = self.limiter.rate if self.limiter else None
        return counts


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffered writes: the status line, headers and body leave in one send when the
    # handler flushes, instead of a small header segment that Nagle's algorithm holds
    # back until the client's delayed ACK (a 40 ms stall per keep-alive request).
    wbufsize = 1 << 16
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            self.command,
            unquote(split.path),
            query,
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        emulator = self.server.emulator
        try:
            response = emulator.handle(request)
        except Exception as exc:  # a bug in the emulator: say so, keep serving
            response = arm_error(500, "EmulatorError", f"{type(exc).__name__}: {exc}")
        if not request.path.startswith(CONTROL_PREFIX):
            emulator.counter.count(
                self.command, request.path, query, None if response is None else response.status
            )
            if emulator.latency:
                time.sleep(emulator.latency)  # outside every lock: concurrent calls overlap
        if response is None:
            emulator.log(f"{self.command} {split.path} -> dropped")
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        emulator.log(f"{self.command} {split.path} -> {response.status}")
        self.send_response(response.status)
        headers = {"x-ms-request-id": str(uuid.uuid4()), **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in response.headers:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        self.wfile.flush()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: Emulator
    verbose: bool = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up or distrusts the certificate is the client's business.
        if self.verbose:
            super().handle_error(request, client_address)


@dataclass
class RunningEmulator:
    emulator: Emulator
    server: _Server
    tls: TlsFiles
    thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return self.emulator.base_url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.emulator.store.registry.close()


def start(
    db: Path,
    port: int = 0,
    host: str = "127.0.0.1",
    token: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    verbose: bool = False,
    background: bool = True,
    latency_ms: float = 0.0,
    rate_limit: float | None = None,
) -> RunningEmulator:
    """Bind the HTTPS server (port 0: any free port); serve in a thread if ``background``."""
    db.parent.mkdir(parents=True, exist_ok=True)
    tls = ensure_tls(db.parent / "tls")
    emulator = Emulator(db, token, page_size, latency_ms, rate_limit)
    server = _Server((host, port), _Handler)
    server.emulator = emulator
    server.verbose = verbose
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    # The handshake happens in the request thread, so a stalled client cannot block accept().
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    bound_port = server.server_address[1]
    emulator.base_url = f"https://{host}:{bound_port}/"
    running = RunningEmulator(emulator, server, tls)
    if background:
        running.thread = threading.Thread(
            target=server.serve_forever, name="azureml-emulator", daemon=True
        )
        running.thread.start()
    return running


def client_settings(running: RunningEmulator) -> dict[str, str]:
    """The environment a client needs to reach this emulator."""
    return {
        "RECONCILER_AZUREML_ENDPOINT": running.endpoint,
        "REQUESTS_CA_BUNDLE": str(running.tls.ca),
        "RECONCILER_AZUREML_TOKEN": running.emulator.token,
    }
