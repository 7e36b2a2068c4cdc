"""One pass of a long-running reconciler (watch or interval), as a value: what it did and
how it ended. The loops make these; the renderer turns them into one line each and the
status file keeps the last one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Outcome(StrEnum):
    IN_SYNC = "in_sync"  # nothing to write
    APPLIED = "applied"  # changes written, none failed
    DRIFT = "drift"  # applied what git asks; the drift report still finds drift
    INVALID = "invalid"  # environment files have errors: the registry was left as is
    ERROR = "error"  # a change failed, or the registry or the source could not be used


@dataclass(frozen=True, slots=True)
class CycleResult:
    number: int
    trigger: str  # "start", "3 file events", "interval", ...
    started: datetime  # timezone-aware
    seconds: float
    outcome: Outcome
    applied: tuple[str, ...] = ()  # "name:version action"
    failed: tuple[str, ...] = ()  # "name:version action: why"
    errors: tuple[str, ...] = ()  # "path:line message" of each error diagnostic
    message: str | None = None  # why the cycle failed as a whole
    transient: bool = False  # retrying may help (busy or locked registry, git hiccup)
    retry_in: float | None = None  # seconds until the loop tries again on its own
    drift: int | None = None  # environments with drift (when a drift report was made)
    builds: str | None = None  # a short note on image builds, when any ran or failed
    build_counts: tuple[tuple[str, int], ...] = ()  # ("built", 2), ("failed", 1), ...

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.IN_SYNC, Outcome.APPLIED, Outcome.DRIFT)

    @property
    def status(self) -> str:
        """The result as operators see it in the status file: in_sync, applied, drift or
        error (invalid files are an error of the input)."""
        return "error" if self.outcome is Outcome.INVALID else self.outcome.value
