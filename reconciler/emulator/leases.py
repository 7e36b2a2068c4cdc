"""Blob leases as Azure Storage keeps them: the five states, the five actions, and the
checks a write to a leased blob must pass.

The outcomes follow the service's table for Lease Blob (states available, leased,
expired, breaking, broken; actions acquire, renew, change, release, break): a fixed lease
lasts 15 to 60 seconds, an infinite one until released or broken; a lease ends by
release, by expiry (it can then be renewed or re-acquired by its holder as long as nobody
else took it) or by a break (immediate, or after a break period during which only break
and release are allowed). Errors carry the service's codes and statuses.

Time is the wall clock plus an offset the control endpoint can advance, so a test can
let a lease expire without waiting for it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

INFINITE = -1
MIN_SECONDS = 15
MAX_SECONDS = 60
MAX_BREAK_PERIOD = 60


class LeaseError(Exception):
    """The service's refusal: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _already_present() -> LeaseError:
    return LeaseError(409, "LeaseAlreadyPresent", "There is already a lease present.")


def _mismatch() -> LeaseError:
    return LeaseError(
        409,
        "LeaseIdMismatchWithLeaseOperation",
        "The lease ID specified did not match the lease ID for the blob.",
    )


def _not_present() -> LeaseError:
    return LeaseError(
        409, "LeaseNotPresentWithLeaseOperation", "There is currently no lease on the blob."
    )


@dataclass(frozen=True)
class Lease:
    """A blob's lease record; ``state`` is as stored, :meth:`at` gives it at a moment."""

    lease_id: str | None = None
    state: str = "available"  # available | leased | expired | breaking | broken
    duration: int | None = None  # seconds, INFINITE, or None when not leased
    expires_at: float | None = None  # fixed leases
    break_at: float | None = None  # breaking leases

    def at(self, now: float) -> Lease:
        """The lease as time has left it: fixed leases expire, breaking ones break."""
        if self.state == "leased" and self.expires_at is not None and now >= self.expires_at:
            return replace(self, state="expired", expires_at=None)
        if self.state == "breaking" and self.break_at is not None and now >= self.break_at:
            return Lease(self.lease_id, "broken")
        return self

    @property
    def status(self) -> str:
        """``x-ms-lease-status``: locked while leased or breaking."""
        return "locked" if self.state in ("leased", "breaking") else "unlocked"

    @property
    def duration_header(self) -> str | None:
        """``x-ms-lease-duration``: only while leased."""
        if self.state != "leased":
            return None
        return "infinite" if self.duration == INFINITE else "fixed"

    def headers(self) -> dict[str, str]:
        headers = {"x-ms-lease-status": self.status, "x-ms-lease-state": self.state}
        if self.duration_header:
            headers["x-ms-lease-duration"] = self.duration_header
        return headers


def _leased(lease_id: str, duration: int, now: float) -> Lease:
    expires = None if duration == INFINITE else now + duration
    return Lease(lease_id, "leased", duration, expires)


def acquire(lease: Lease, duration: int, proposed: str | None, now: float) -> Lease:
    if duration != INFINITE and not MIN_SECONDS <= duration <= MAX_SECONDS:
        raise LeaseError(
            400,
            "InvalidHeaderValue",
            "x-ms-lease-duration must be -1 (infinite) or between 15 and 60 seconds.",
        )
    if lease.state == "leased":
        if proposed is None or proposed != lease.lease_id:
            raise _already_present()
        return _leased(proposed, duration, now)  # the holder sets a new duration
    if lease.state == "breaking":
        if proposed == lease.lease_id:
            raise LeaseError(
                409,
                "LeaseIsBreakingAndCannotBeAcquired",
                "There is already a breaking lease present.",
            )
        raise _already_present()
    return _leased(proposed or str(uuid.uuid4()), duration, now)


def renew(lease: Lease, lease_id: str, now: float) -> Lease:
    if lease.state == "available":
        raise _not_present()
    if lease.lease_id != lease_id:
        raise _mismatch()
    if lease.state in ("breaking", "broken"):
        raise LeaseError(
            409, "LeaseIsBrokenAndCannotBeRenewed", "The lease has been broken explicitly."
        )
    assert lease.duration is not None
    return _leased(lease_id, lease.duration, now)  # an expired lease nobody took: its holder's


def change(lease: Lease, lease_id: str, proposed: str) -> Lease:
    if lease.state in ("available", "expired", "broken"):
        raise _not_present()
    if lease.state == "breaking":
        if lease.lease_id == lease_id:
            raise LeaseError(409, "LeaseIsBreakingAndCannotBeChanged", "The lease is breaking.")
        raise _mismatch()
    # Changing to the id it already has succeeds: a retried change is harmless.
    if lease.lease_id not in (lease_id, proposed):
        raise _mismatch()
    return replace(lease, lease_id=proposed)


def release(lease: Lease, lease_id: str) -> Lease:
    if lease.state == "available":
        raise _not_present()
    if lease.lease_id != lease_id:
        raise _mismatch()
    return Lease()


def break_lease(lease: Lease, period: int | None, now: float) -> tuple[Lease, int]:
    """The lease after a break, and the seconds until it can be acquired again."""
    if period is not None and not 0 <= period <= MAX_BREAK_PERIOD:
        raise LeaseError(
            400, "InvalidHeaderValue", "x-ms-lease-break-period must be between 0 and 60."
        )
    if lease.state == "available":
        raise _not_present()
    if lease.state in ("expired", "broken"):
        return Lease(lease.lease_id, "broken"), 0
    if lease.state == "leased":
        if lease.duration == INFINITE:
            until = now + (period or 0)
        else:
            assert lease.expires_at is not None
            until = lease.expires_at if period is None else min(lease.expires_at, now + period)
    else:  # breaking: a shorter period wins
        assert lease.break_at is not None
        until = lease.break_at if period is None else min(lease.break_at, now + period)
    if until <= now:
        return Lease(lease.lease_id, "broken"), 0
    return Lease(lease.lease_id, "breaking", break_at=until), max(0, round(until - now))


def check_write(lease: Lease, lease_id: str | None) -> None:
    """Whether a write to the blob (put, set metadata) may go ahead."""
    if lease.state in ("leased", "breaking"):
        if lease_id is None:
            raise LeaseError(
                412,
                "LeaseIdMissing",
                "There is currently a lease on the blob and no lease ID was specified in "
                "the request.",
            )
        if lease_id != lease.lease_id:
            raise LeaseError(
                412,
                "LeaseIdMismatchWithBlobOperation",
                "The lease ID specified did not match the lease ID for the blob.",
            )
    elif lease_id is not None:
        if lease.state == "expired" and lease_id == lease.lease_id:
            raise LeaseError(
                412,
                "LeaseLost",
                "A lease ID was specified, but the lease for the blob has expired.",
            )
        raise LeaseError(
            412,
            "LeaseNotPresentWithBlobOperation",
            "There is currently no lease on the blob.",
        )


class LeaseTable:
    """Every blob's lease, kept in a JSON file so leases outlive an emulator restart.

    Callers serialise access (the emulator handles storage calls one at a time).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0.0  # seconds the control endpoint moved the lease clock forward
        self._leases: dict[str, Lease] = {}
        if path.is_file():
            stored = json.loads(path.read_text())
            self._leases = {key: Lease(**value) for key, value in stored.items()}

    def now(self) -> float:
        return time.time() + self.offset

    def get(self, key: str) -> Lease:
        return self._leases.get(key, Lease()).at(self.now())

    def put(self, key: str, lease: Lease) -> None:
        if lease.state == "available":
            self._leases.pop(key, None)
        else:
            self._leases[key] = lease
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.urandom(6).hex()}.tmp")
        temporary.write_text(json.dumps({k: asdict(v) for k, v in self._leases.items()}))
        os.replace(temporary, self.path)

    def written(self, key: str) -> None:
        """A write went through: an expired or broken lease is forgotten, as the service
        does (the blob is available again)."""
        if key in self._leases and self.get(key).state in ("expired", "broken"):
            self.put(key, Lease())
