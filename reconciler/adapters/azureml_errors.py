"""The SDK's errors translated into the registry port's, and retries with backoff.

- not found (404) -> NotFound; a version conflict (409) -> VersionConflict;
- throttling (429), server errors (5xx), timeouts and broken connections ->
  TransientRegistryError, retried here with exponential backoff before giving up;
- an answer with ``Retry-After`` (the service throttling) holds every call of the
  registry for that long (one Throttle shared by all threads: they back off together)
  and is retried without using up the attempts, within a budget of waiting time;
- 401/403, or no credential at all -> RegistryError saying how to sign in;
- a certificate the client does not trust -> RegistryError naming REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from reconciler.ports import NotFound, RegistryError, TransientRegistryError, VersionConflict

T = TypeVar("T")
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # calls in all, the first included
    base_delay: float = 0.5  # seconds before the second call; doubles each time
    max_delay: float = 8.0
    throttle_budget: float = 300.0  # seconds one call may wait on Retry-After in all
    throttle_retries: int = 100  # and how many throttled answers it takes

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed call number ``attempt`` (1-based), with jitter."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return float(ceiling * (0.5 + random.random() / 2))


class Throttle:
    """The registry's shared back-off: a Retry-After seen by one call holds them all, and
    the wall-clock time held is kept for the run's report."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._lock = threading.Lock()
        self._open_at = 0.0
        self._sleep = sleep
        self.held = 0.0  # seconds during which calls were held (wall clock, not summed)
        self.throttled = 0  # answers that asked to wait

    def hold(self, seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.throttled += 1
            until = now + max(0.0, seconds)
            if until > self._open_at:
                self.held += until - max(self._open_at, now)
                self._open_at = until

    def wait(self) -> None:
        while True:
            with self._lock:
                delay = self._open_at - time.monotonic()
            if delay <= 0:
                return
            self._sleep(delay)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the service asked to wait (``Retry-After``, or the ``x-ms-`` variants)."""
    response: Any = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            try:
                return float(value) / 1000.0
            except ValueError:
                pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def translate(exc: Exception, url: str, what: str) -> RegistryError:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    text = _first_line(exc)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        return RegistryError(
            f"not authorised for {url} ({what}: {text}): sign in with `az login` (or set "
            "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET for a service principal) "
            "and check the role assignment on the workspace or registry"
        )
    if isinstance(exc, HttpResponseError):
        if status == 404:
            return NotFound(f"{what}: not found in {url}")
        if status == 409:
            return VersionConflict(f"{what}: conflict in {url}: {text}")
        if status in TRANSIENT_STATUS or (status is not None and status >= 500):
            return TransientRegistryError(f"{what}: {url} answered {status}: {text}")
        return RegistryError(f"{what}: {url} answered {status}: {text}")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return RegistryError(
                f"{what}: the certificate of {url} is not trusted; for the emulator set "
                "REQUESTS_CA_BUNDLE to the CA it printed"
            )
        return TransientRegistryError(f"{what}: cannot reach {url}: {text}")
    return RegistryError(f"{what}: {type(exc).__name__}: {text}")


def _first_line(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message).strip().splitlines()[0][:300]


def call(
    function: Callable[[], T],
    url: str,
    what: str,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    throttle: Throttle | None = None,
) -> T:
    """Run one service call; translate its errors, retrying the transient ones."""
    attempt = 1
    waited = 0.0
    throttled = 0
    while True:
        if throttle is not None:
            throttle.wait()
        try:
            return function()
        except RegistryError:
            raise
        except Exception as exc:
            error = translate(exc, url, what)
            delay = retry_after(exc) if error.transient else None
            throttled += delay is not None
            if (
                delay is not None
                and waited + delay <= policy.throttle_budget
                and throttled <= policy.throttle_retries
            ):
                # The service said when to come back: not a failed attempt.
                waited += delay
                if throttle is not None:
                    throttle.hold(delay)
                else:
                    sleep(delay)
                continue
            if not error.transient or attempt >= policy.attempts:
                if error.transient:
                    error = TransientRegistryError(f"{error} (after {attempt} attempts)")
                raise error from exc
            sleep(policy.delay(attempt))
            attempt += 1
