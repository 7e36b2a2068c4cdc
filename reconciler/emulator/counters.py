"""Request counts for tests and benchmarks: total, by method, by path pattern, by status
and by workspace or registry, readable and resettable through the control endpoint.

A path pattern names the operation, not the resource: ``GET /subscriptions/{}/.../
workspaces/{}/environments/{}/versions``, so calls of one kind add up whatever the names.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

_MFE_PREFIX = "/mferp/managementfrontend"
# ARM segments kept as they are; every other segment is a name, shown as {}.
_ARM_WORDS = {
    "subscriptions",
    "resourcegroups",
    "providers",
    "microsoft.machinelearningservices",
    "workspaces",
    "registries",
    "environments",
    "versions",
    "datastores",
    "listsecrets",
    "tempdatarefs",
    "registrymanagement",
    "v1.0",
    "discovery",
}


def path_pattern(path: str, query: dict[str, str]) -> str:
    """``path`` with its names replaced by ``{}`` (blob calls keep their ``comp``)."""
    if path.lower().startswith(_MFE_PREFIX + "/"):
        path = path[len(_MFE_PREFIX) :]
    parts = path.strip("/").split("/")
    first = parts[0].lower() if parts else ""
    if first in ("subscriptions", "registrymanagement"):
        shown = [p if p.lower() in _ARM_WORDS else "{}" for p in parts]
        return "/" + "/".join(shown)
    # Storage: /<account>/<container>[/<blob>], the operation is in comp/restype.
    shape = ["{account}", "{container}", "{blob}"][: min(len(parts), 3)]
    extra = [f"{k}={query[k]}" for k in ("restype", "comp") if k in query]
    return "/" + "/".join(shape) + ("?" + "&".join(extra) if extra else "")


def scope_name(path: str) -> str | None:
    """The workspace or registry a path is about, if any."""
    parts = path.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    for kind in ("workspaces", "registries"):
        if kind in lowered:
            index = lowered.index(kind)
            if index + 1 < len(parts):
                return parts[index + 1]
    return None


class RequestCounter:
    """Thread-safe counts of the requests the service side answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._by_method: Counter[str] = Counter()
        self._by_pattern: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._by_scope: Counter[str] = Counter()

    def count(self, method: str, path: str, query: dict[str, str], status: int | None) -> None:
        pattern = f"{method} {path_pattern(path, query)}"
        scope = scope_name(path)
        with self._lock:
            self._total += 1
            self._by_method[method] += 1
            self._by_pattern[pattern] += 1
            self._by_status["dropped" if status is None else str(status)] += 1
            if scope is not None:
                self._by_scope[scope] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot()

    def reset(self) -> dict[str, Any]:
        """The counts so far, and start again from zero (one step: none is lost)."""
        with self._lock:
            counts = self._snapshot()
            self._total = 0
            for counter in (self._by_method, self._by_pattern, self._by_status, self._by_scope):
                counter.clear()
            return counts

    def _snapshot(self) -> dict[str, Any]:
        return {
            "total": self._total,
            "by_method": dict(self._by_method),
            "by_pattern": dict(self._by_pattern),
            "by_status": dict(self._by_status),
            "by_scope": dict(self._by_scope),
        }
