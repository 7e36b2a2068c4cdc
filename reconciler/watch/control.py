"""Stopping on signals, backoff after transient errors, jitter, and duration parsing."""

from __future__ import annotations

import random
import signal
import threading
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from reconciler.core.durations import parse_duration

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
        self.event.set()

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
