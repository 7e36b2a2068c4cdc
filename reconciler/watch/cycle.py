"""One reconcile: Engine.apply (lock, fresh plan, writes, builds) turned into a CycleResult.
Errors become values here, so a loop never dies of a bad file or a busy registry."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

from reconciler.core.loop.reconcile_pass import CycleResult, Outcome
from reconciler.core.spec.diagnostics import Severity
from reconciler.engine import ApplyOutcome, ApplyRefused, Engine
from reconciler.ports import BuildError, LockTimeout, RegistryError, SourceError


def is_transient(exc: Exception) -> bool:
    """Worth retrying without any change to git: a busy or locked registry, or a git
    command that failed (a checkout or gc in progress)."""
    if isinstance(exc, LockTimeout | SourceError):
        return True
    return isinstance(exc, RegistryError) and exc.transient


def _builds_note(outcome: ApplyOutcome) -> str | None:
    builds = outcome.builds
    if builds is None:
        return None
    parts = []
    if builds.built:
        parts.append(f"{len(builds.built)} built")
    if builds.failed:
        parts.append(f"{len(builds.failed)} failed")
    if builds.waiting:
        parts.append(f"{len(builds.waiting)} waiting to retry")
    if builds.not_built and builds.unavailable:
        parts.append(f"{len(builds.not_built)} not built ({builds.unavailable})")
    return ", ".join(parts) or None


def _build_counts(outcome: ApplyOutcome) -> tuple[tuple[str, int], ...]:
    builds = outcome.builds
    if builds is None:
        return ()
    counts = (("built", len(builds.built)), ("failed", len(builds.failed)))
    return tuple((status, n) for status, n in counts if n)


def reconcile(engine: Engine, ref: str | None, number: int, trigger: str) -> CycleResult:
    started = datetime.now(UTC)
    clock = time.perf_counter()

    base = CycleResult(number, trigger, started, 0.0, Outcome.IN_SYNC)

    def elapsed() -> float:
        return time.perf_counter() - clock

    try:
        applied = engine.apply(ref)
    except ApplyRefused as exc:
        errors = tuple(
            f"{d.location() or '-'} {d.message}"
            for d in (exc.plan.diagnostics if exc.plan is not None else ())
            if d.severity is Severity.ERROR
        )
        return replace(
            base,
            seconds=elapsed(),
            outcome=Outcome.INVALID,
            errors=errors or (str(exc),),
            message=str(exc),
        )
    except (RegistryError, SourceError, BuildError) as exc:
        return replace(
            base,
            seconds=elapsed(),
            outcome=Outcome.ERROR,
            message=str(exc),
            transient=is_transient(exc),
        )
    names = tuple(f"{c.target} {c.action.value}" for c in applied.applied)
    failed = tuple(f"{c.target} {c.action.value}: {why}" for c, why in applied.failed)
    outcome = Outcome.APPLIED if names else Outcome.IN_SYNC
    if not applied.ok:
        outcome = Outcome.ERROR
    return replace(
        base,
        seconds=elapsed(),
        outcome=outcome,
        applied=names,
        failed=failed,
        builds=_builds_note(applied),
        build_counts=_build_counts(applied),
    )
