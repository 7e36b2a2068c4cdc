"""`reconciler reconcile --interval`: apply, then write the drift report, on a timer.

Between cycles the loop sleeps the interval ±10% (jitter); after a transient error it
retries sooner, with exponential backoff capped at the interval. A stop signal ends the
sleep at once; a cycle in progress is finished (reports are written whole or not at all).
An operator reads the status file to see the last run, its result and the next run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.adapters.report_files import ReportWriteError, write_files
from reconciler.core.loop.reconcile_pass import CycleResult, Outcome
from reconciler.engine import Engine
from reconciler.ports import RegistryError, SourceError
from reconciler.render.cycle import format_cycle
from reconciler.watch.control import Backoff, Stopper, Wakeup, jittered
from reconciler.watch.cycle import is_transient, reconcile
from reconciler.watch.memory import flush, flush_when_due, keep_in_memory

STATUS_FORMAT_VERSION = 1

# Writes the drift report of a ref and returns how many environments have drift.
DriftReporter = Callable[[Engine, str | None], int]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment is not None else None


class StatusFile:
    """A JSON file for operators and probes, replaced whole on every update."""

    def __init__(self, path: Path, fixed: dict[str, Any]) -> None:
        self.path = path
        self.document: dict[str, Any] = {
            "format_version": STATUS_FORMAT_VERSION,
            "pid": os.getpid(),
            "started_at": _iso(datetime.now(UTC)),
            **fixed,
            "state": "starting",
            "cycles": 0,
            "consecutive_failures": 0,
            "last_run": None,
            "next_run_at": None,
        }

    def update(self, **values: Any) -> None:
        self.document.update(values)
        body = json.dumps(self.document, indent=2, ensure_ascii=False) + "\n"
        write_files(self.path.parent, {self.path.name: body})


def run_document(result: CycleResult) -> dict[str, Any]:
    return {
        "number": result.number,
        "trigger": result.trigger,
        "started_at": result.started.isoformat(timespec="milliseconds"),
        "ended_at": (result.started + timedelta(seconds=result.seconds)).isoformat(
            timespec="milliseconds"
        ),
        "duration_ms": round(result.seconds * 1000, 1),
        "result": result.status,
        "counts": {
            "applied": len(result.applied),
            "failed": len(result.failed),
            "errors": len(result.errors),
            "drift": result.drift,
        },
        "applied": list(result.applied),
        "failed": list(result.failed),
        "errors": list(result.errors),
        "error": result.message,
        "transient": result.transient,
    }


@dataclass
class IntervalLoop:
    engine: Engine
    report: DriftReporter
    status: StatusFile
    stopper: Stopper
    out: Callable[[str], None]
    interval: float
    ref: str | None = None
    # Hooks for `serve`: triggers that end the sleep early (webhook, file events), a step
    # before each cycle (fetching the tracked branch), and an observer of each result.
    wakeup: Wakeup | None = None
    prepare: Callable[[str], None] | None = None
    observe: Callable[[CycleResult], None] | None = None
    # A woken cycle applies only, as `watch` does, so a push is in the registry as soon as
    # an edit would be; the drift report (the full check) follows once triggers have been
    # quiet for this long.
    report_after: float = 2.0

    def cycle(self, number: int, trigger: str, woken: bool = False) -> CycleResult:
        if self.prepare is not None:
            try:
                self.prepare(trigger)
            except SourceError as exc:  # the remote is unreachable: retried with backoff
                started = datetime.now(UTC)
                return CycleResult(
                    number, trigger, started, 0.0, Outcome.ERROR, message=str(exc), transient=True
                )
        result = reconcile(self.engine, self.ref, number, trigger)
        if result.transient:
            return result  # the registry or git is unavailable: a report would say as much
        if woken:
            self.engine.registry.close()
            return result
        try:
            drift = self.report(self.engine, self.ref)
        except (RegistryError, SourceError, ReportWriteError) as exc:
            problem = f"drift report: {exc}"
            transient = isinstance(exc, ReportWriteError) or is_transient(exc)
            if result.message is not None:  # keep the apply's error first
                return result
            return replace(result, outcome=Outcome.ERROR, message=problem, transient=transient)
        finally:
            self.engine.registry.close()  # no connection held open while the loop sleeps
        outcome = result.outcome
        if drift and result.ok:
            outcome = Outcome.DRIFT
        seconds = (datetime.now(UTC) - result.started).total_seconds()
        return replace(result, drift=drift, outcome=outcome, seconds=seconds)

    def run(self, once: bool = False) -> CycleResult | None:
        """Cycles until stopped (or one with ``once``); the last result."""
        self.engine = keep_in_memory(self.engine)
        try:
            return self._cycles(once)
        finally:
            flush(self.engine)

    def _cycles(self, once: bool) -> CycleResult | None:
        backoff = Backoff(base=1.0, cap=self.interval)
        number = 0
        last: CycleResult | None = None
        trigger = "start"
        woken = False
        while not self.stopper.stopped:
            number += 1
            self.status.update(state="running", cycles=number, next_run_at=None)
            result = self.cycle(number, trigger, woken)
            flush_when_due(self.engine)  # between cycles, not inside one
            if result.transient:
                delay = backoff.next_delay()
                result = replace(result, retry_in=None if once else delay)
                trigger = "retry"
            elif woken:
                backoff.reset()
                delay = self.report_after
                trigger = "drift report"
            else:
                backoff.reset()
                delay = jittered(self.interval)
                trigger = "interval"
            last = result
            self.out(format_cycle(result))
            stopping = once or self.stopper.stopped
            next_run = None if stopping else datetime.now(UTC) + timedelta(seconds=delay)
            self.status.update(
                state="stopped" if stopping else "waiting",
                last_run=run_document(result),
                consecutive_failures=0
                if result.ok
                else self.status.document["consecutive_failures"] + 1,
                next_run_at=_iso(next_run),
            )
            if self.observe is not None:
                self.observe(result)
            if stopping:
                break
            if self.wakeup is None:
                if self.stopper.wait(delay):
                    break
                continue
            reason = self.wakeup.wait(delay)
            if self.stopper.stopped:
                break
            woken = reason is not None
            if reason is not None:
                trigger = reason
        self.status.update(state="stopped", next_run_at=None)
        return last
