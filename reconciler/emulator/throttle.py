"""Throttling as the service does it: a budget of requests per second, and beyond it
``429 Too Many Requests`` with ``Retry-After`` (whole seconds, as ARM sends it).

A token bucket holding one second's worth of requests: bursts up to the rate pass, a
steady stream above it is refused. Refused requests take no token, so a client that
waits as told gets through.
"""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    def __init__(self, per_second: float) -> None:
        if per_second <= 0:
            raise ValueError("the rate limit must be positive")
        self.rate = float(per_second)
        self._tokens = self.rate
        self._stamp = time.monotonic()
        self._lock = threading.Lock()
        self.refused = 0

    def admit(self) -> float | None:
        """None when the request may pass, else the seconds until it would."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return None
            self.refused += 1
            return (1.0 - self._tokens) / self.rate


def retry_after_header(wait: float) -> str:
    """Whole seconds, at least one: the header's form on the real service."""
    return str(max(1, math.ceil(wait)))
