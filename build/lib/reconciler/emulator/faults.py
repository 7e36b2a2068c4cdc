"""Fault injection: answer some requests with an error status, or drop the connection.

A fault is ``{"status": 429 | 500 | ..., "count": N, "match": "PUT */versions/*"}`` or
``{"drop": true, "count": N, "match": ...}``. ``match`` is ``METHOD PATH-GLOB`` (either part
may be ``*``; the path is matched without its query string); ``count`` is how many
matching requests it takes (omitted or negative: every one, until cleared). Faults are
taken in the order they were added.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass
from typing import Any


class FaultSpecError(ValueError):
    pass


@dataclass
class Fault:
    method: str
    path_glob: str
    status: int | None  # None: drop the connection
    remaining: int  # < 0: forever
    retry_after: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and fnmatch.fnmatchcase(path, self.path_glob)

    def describe(self) -> dict[str, Any]:
        return {
            "match": f"{self.method} {self.path_glob}",
            "status": self.status,
            "drop": self.status is None,
            "remaining": self.remaining,
        }


def parse_fault(spec: dict[str, Any]) -> Fault:
    if not isinstance(spec, dict):
        raise FaultSpecError("a fault is a JSON object")
    match = str(spec.get("match", "* *")).strip()
    method, _, glob = match.partition(" ")
    if not glob:
        method, glob = "*", method
    drop = bool(spec.get("drop", False))
    status = spec.get("status")
    if drop == (status is not None):
        raise FaultSpecError("a fault needs exactly one of `status` and `drop`")
    if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
        raise FaultSpecError("`status` must be an HTTP error status (400-599)")
    count = spec.get("count", -1)
    if not isinstance(count, int):
        raise FaultSpecError("`count` must be an integer")
    retry_after = spec.get("retry_after")
    if retry_after is not None and not isinstance(retry_after, int):
        raise FaultSpecError("`retry_after` must be an integer (seconds)")
    return Fault(method.upper(), glob, None if drop else status, count, retry_after)


class FaultPlan:
    """The active faults; safe to use from the server's threads."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.injected = 0  # how many requests were answered by a fault

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._faults]

    def take(self, method: str, path: str) -> Fault | None:
        """The fault that answers this request, if any (its count is used up by one)."""
        with self._lock:
            for fault in self._faults:
                if fault.remaining != 0 and fault.matches(method, path):
                    if fault.remaining > 0:
                        fault.remaining -= 1
                    self.injected += 1
                    return fault
            self._faults = [f for f in self._faults if f.remaining != 0]
            return None
