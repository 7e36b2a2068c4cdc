"""Stopping on signals, backoff after transient errors, jitter, and duration parsing."""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from reconciler.core.spec.durations import parse_duration

__all__ = ["parse_duration"]


def jittered(seconds: float, fraction: float = 0.1) -> float:
    """Spread reconcilers that started together (±fraction), so they do not stay in step."""
    return seconds * random.uniform(1.0 - fraction, 1.0 + fraction)


@dataclass
class Backoff:
    """Exponential delays after consecutive transient failures, capped."""

    base: float = 1.0
    cap: float = 60.0
    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        return min(self.cap, jittered(self.base * 2 ** min(self.failures - 1, 32)))

    def reset(self) -> None:
        self.failures = 0


class Stopper:
    """SIGINT and SIGTERM ask the loop to stop instead of raising: a reconcile in progress
    finishes (the registry lock is released normally), then the loop returns. A second
    signal aborts at once (KeyboardInterrupt); the kernel releases the lock and SQLite
    rolls back the open transaction."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._linked: list[threading.Event] = []

    def link(self, event: threading.Event) -> None:
        """Also set ``event`` when a stop is asked for (it wakes whoever waits on it)."""
        self._linked.append(event)
        if self.event.is_set():
            event.set()

    def stop(self) -> None:
        self.event.set()
        for event in self._linked:
            event.set()

    @property
    def stopped(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as a stop is asked for."""
        return self.event.wait(max(0.0, seconds))

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.received = signum
        self.stop()

    def __enter__(self) -> Stopper:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


class Wakeup:
    """Triggers besides the timer (a webhook, file events): each one ends the loop's sleep
    early. Triggers arriving within the debounce time of each other are one reconcile;
    they carry no data, the reconcile re-reads everything."""

    def __init__(self, stopper: Stopper, debounce: float = 0.3, max_wait: float = 2.0) -> None:
        self.stopper = stopper
        self.debounce = debounce
        self.max_wait = max(max_wait, debounce)
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reasons: list[str] = []
        stopper.link(self._event)

    def request(self, reason: str) -> None:
        with self._lock:
            self._reasons.append(reason)
        self._event.set()

    def _take(self) -> list[str]:
        with self._lock:
            reasons, self._reasons = self._reasons, []
            self._event.clear()
        return reasons

    def wait(self, seconds: float) -> str | None:
        """Sleep up to ``seconds``. The trigger that ended it (debounced), or None when the
        time ran out or a stop was asked for."""
        if not self._event.wait(max(0.0, seconds)) or self.stopper.stopped:
            return None
        first = time.monotonic()
        reasons = self._take()
        while not self.stopper.stopped and time.monotonic() - first < self.max_wait:
            if not self._event.wait(self.debounce):
                break  # quiet for the debounce time
            reasons += self._take()
        if self.stopper.stopped:
            return None
        return _summary(reasons)


def _summary(reasons: list[str]) -> str:
    unique = list(dict.fromkeys(reasons))
    if len(unique) == 1:
        return unique[0]
    return f"{unique[0]} +{len(reasons) - 1} more"
