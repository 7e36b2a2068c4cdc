"""The SDK's errors translated into the registry port's, and retries with backoff.

- not found (404) -> NotFound; a version conflict (409) -> VersionConflict;
- throttling (429), server errors (5xx), timeouts and broken connections ->
  TransientRegistryError, retried here with exponential backoff before giving up;
- 401/403, or no credential at all -> RegistryError saying how to sign in;
- a certificate the client does not trust -> RegistryError naming REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from reconciler.ports import NotFound, RegistryError, TransientRegistryError, VersionConflict

T = TypeVar("T")
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # calls in all, the first included
    base_delay: float = 0.5  # seconds before the second call; doubles each time
    max_delay: float = 8.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed call number ``attempt`` (1-based), with jitter."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return float(ceiling * (0.5 + random.random() / 2))


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
) -> T:
    """Run one SDK call; translate its errors, retrying the transient ones."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return function()
        except RegistryError:
            raise
        except Exception as exc:
            error = translate(exc, url, what)
            if not error.transient or attempt == policy.attempts:
                if error.transient:
                    error = TransientRegistryError(f"{error} (after {attempt} attempts)")
                raise error from exc
            sleep(policy.delay(attempt))
    raise AssertionError("unreachable")
