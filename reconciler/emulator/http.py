"""The emulator's HTTP values and the state every route handler reads: kept apart from the
server so that the route modules and the server do not import each other."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.emulator.blobs import BlobStore
from reconciler.emulator.counters import RequestCounter
from reconciler.emulator.faults import FaultPlan
from reconciler.emulator.leases import LeaseTable
from reconciler.emulator.resources import EnvironmentStore
from reconciler.emulator.throttle import RateLimiter

BLOB_ACCOUNT = "emulatorstore"
CONTROL_PREFIX = "/_emulator/"
MFE_PREFIX = "/mferp/managementfrontend/"
DEFAULT_PAGE_SIZE = 100


@dataclass
class Request:
    method: str
    path: str  # decoded, without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def json(status: int, value: Any) -> Response:
        return Response(
            status,
            json.dumps(value).encode(),
            {"Content-Type": "application/json; charset=utf-8"},
        )


def arm_error(status: int, code: str, message: str) -> Response:
    return Response.json(status, {"error": {"code": code, "message": message}})


class EmulatorState:
    """Everything a request handler needs; one per server."""

    def __init__(
        self,
        db: Path,
        token: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        latency_ms: float = 0.0,
        rate_limit: float | None = None,
    ) -> None:
        self.db = db
        self.data_dir = db.parent
        self.token = token or secrets.token_urlsafe(24)
        self.sas = "sv=2023-11-03&sr=c&sp=racwl&sig=" + quote(secrets.token_urlsafe(16), safe="")
        self.page_size = page_size
        self.store = EnvironmentStore(SqliteRegistry(db))
        self.blobs = BlobStore(self.data_dir / "blobs")
        self.leases = LeaseTable(self.data_dir / "leases.json")
        self.faults = FaultPlan()
        self.latency = max(0.0, latency_ms) / 1000.0  # added to every service response
        self.limiter = RateLimiter(rate_limit) if rate_limit else None
        self.counter = RequestCounter()
        self.base_url = ""  # set when the server is bound
        self.requests: list[str] = []  # "METHOD path -> status", for inspection
        self._log_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one SQLite connection: writes one at a time

    def log(self, line: str) -> None:
        with self._log_lock:
            self.requests.append(line)

    # -- paging -------------------------------------------------------------------------

    def page(
        self,
        request: Request,
        items: list[Any],
        render: Callable[[Any], dict[str, Any]] | None = None,
    ) -> Response:
        """One page of a listing, with ``nextLink`` when more follow; ``render`` turns the
        page's items (only those) into resources."""
        try:
            start = int(request.query.get("$skipToken", "0"))
            size = int(request.query.get("$top", str(self.page_size)))
        except ValueError:
            return arm_error(400, "BadRequest", "$skipToken and $top must be integers")
        size = max(1, min(size, self.page_size))
        chunk = items[start : start + size]
        body: dict[str, Any] = {"value": [render(i) for i in chunk] if render else chunk}
        if start + size < len(items) and "$top" not in request.query:
            query = dict(request.query, **{"$skipToken": str(start + size)})
            body["nextLink"] = f"{self.base_url.rstrip('/')}{quote(request.path)}?" + urlencode(
                query
            )
        return Response.json(200, body)
