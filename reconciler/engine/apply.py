"""Apply: make the registry match git, under the registry's lock.

1. Take the lock, so two reconcilers never act on a stale view.
2. Read git and the registry, and plan inside the lock.
3. Refuse (with that plan) if it has errors: nothing is written.
4. Run each change with retries for transient errors; a terminal error stops that
   environment only and is reported.
5. Record what was applied (the inventory) and build the images of what git holds.

A saved plan (`apply FILE`) skips steps 2-3: it is checked for staleness and applied as
it was reviewed.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from reconciler.core.plan.types import Action, ApplyOutcome
from reconciler.core.spec.model import with_written
from reconciler.engine.read import alongside, blob_reader, close, load, read_state
from reconciler.engine.refusal import ApplyRefused
from reconciler.ports import RegistryError

if TYPE_CHECKING:
    from reconciler.core.plan.types import Change, Plan
    from reconciler.core.spec.model import RegisteredVersion, VersionWrite
    from reconciler.engine.context import Context
    from reconciler.ports import Registry

RETRIES = 3
RETRY_BASE_DELAY = 0.2
PUTS = frozenset({Action.CREATE, Action.NEW_VERSION, Action.UPDATE_METADATA})


def apply(engine: Context, ref: str | None = None) -> ApplyOutcome:
    from reconciler.core.build.jobs import build_targets
    from reconciler.engine.plan import make

    with engine.registry.lock(engine.lock_timeout):
        snapshot = engine.source.snapshot(ref)
        try:
            desired, state = alongside(
                lambda: load(engine, snapshot, watch_list=False)[0], lambda: read_state(engine)
            )
            result = make(engine, desired, state, ref, snapshot)
            outcome, written = _apply_plan(engine, result)
            if engine.builds is None and engine.inventory is None:
                return outcome
            # Every change a put that returned its version: the state read before, patched
            # with those, is what a second read would give. Anything else: read again.
            after = (
                engine.registry.read_state() if written is None else with_written(state, written)
            )
            targets = build_targets(desired, after, engine.targets)
            if engine.inventory is not None:
                engine.inventory.save({t.name: t.version for t in targets})
            if engine.builds is not None:
                outcome.builds = engine.builds.run(targets, blob_reader(engine, snapshot))
            return outcome
        finally:
            close(snapshot)


def apply_saved(engine: Context, data: Any, where: str) -> ApplyOutcome:
    """Apply a saved plan exactly, under the lock, after checking it is not stale."""
    from reconciler.core.build.jobs import BuildTarget
    from reconciler.core.plan.saved import check_fresh, load_saved_plan
    from reconciler.core.plan.types import Plan

    section, changes = load_saved_plan(data, where)
    with engine.registry.lock(engine.lock_timeout):
        snapshot = engine.source.snapshot(section.get("ref"))
        try:
            state = engine.registry.read_state()
            check_fresh(section, engine.registry.url, state, snapshot.commit)
            result = Plan(tuple(changes), (), (), (), "saved plan", section.get("commit"))
            outcome = apply_plan(engine, result)
            written = [
                c
                for c in outcome.applied
                if c.write is not None
                and c.version is not None
                and c.action in (Action.CREATE, Action.NEW_VERSION)
            ]
            if engine.inventory is not None and written:
                applied = engine.inventory.load()
                applied.update({c.name: c.version for c in written if c.version})
                engine.inventory.save(applied)
            if engine.builds is not None:
                targets = [
                    BuildTarget(c.name, c.version, c.write.digest, c.write.content)
                    for c in written
                    if c.write is not None and c.version is not None
                ]
                outcome.builds = engine.builds.run(targets, blob_reader(engine, snapshot))
            return outcome
        finally:
            close(snapshot)


def apply_plan(engine: Context, plan: Plan) -> ApplyOutcome:
    """Run a plan's changes in order; refused as a whole when the plan has errors."""
    return _apply_plan(engine, plan)[0]


def _apply_plan(engine: Context, plan: Plan) -> tuple[ApplyOutcome, list[RegisteredVersion] | None]:
    """apply_plan, with the versions written when every change was a put that succeeded
    in a batched write (None: some change was not, or failed)."""
    if plan.has_errors:
        count = sum(1 for d in plan.diagnostics if d.severity == "error")
        raise ApplyRefused(
            f"apply refused: {count} error(s) in the plan; nothing was written", plan
        )
    outcome = ApplyOutcome(plan)
    registry, progress = engine.registry, engine.progress
    # Environments are independent: a backend that takes concurrent calls (Azure ML)
    # gets several environments' changes at once; one environment's stay in order.
    workers = max(1, registry.write_concurrency)
    groups: dict[str, list[Change]] = {}
    for change in plan.changes:
        if change.deferred is not None:  # held by the promotion gate
            outcome.deferred.append(change)
            continue
        groups.setdefault(change.name, []).append(change)
    results: dict[int, str | None] = {}  # id(change) -> error, None when applied
    report_lock = threading.Lock()

    def report(change: Change, error: str | None) -> None:
        with report_lock:
            results[id(change)] = error
            if error is None:
                progress.advance("apply", f"{change.action.value} {change.target}: done")
            elif not error.startswith("skipped"):
                progress.advance("apply", f"{change.action.value} {change.target}: failed: {error}")

    def run(changes: list[Change]) -> None:
        failed = False
        for change in changes:
            error: str | None
            if failed:
                error = "skipped: an earlier step failed"
            else:
                try:
                    with_retries(registry, change)
                    error = None
                except RegistryError as exc:
                    failed = True
                    error = str(exc)
            report(change, error)

    pending: list[list[Change]] = []  # environments of puts only, not yet written
    written: list[RegisteredVersion] = []  # by batched writes that succeeded

    def flush() -> None:
        """Write the pending environments' versions in one call; when that fails, one
        change at a time, so that retries and errors are per environment as usual."""
        changes = [c for group in pending for c in group]
        if not changes:
            return
        try:
            versions = registry.put_versions([_write_of(c) for c in changes])
        except RegistryError:
            for group in pending:
                run(group)
        else:
            written.extend(versions)
            for change in changes:
                report(change, None)
        pending.clear()

    if plan.changes:
        progress.start("apply", f"applying {len(plan.changes)} change(s)", len(plan.changes))
    with registry.batch():
        if workers == 1:
            for changes in groups.values():
                if all(c.action in PUTS for c in changes):
                    pending.append(changes)
                else:
                    flush()
                    run(changes)
            flush()
        elif len(groups) < 2:
            for changes in groups.values():
                run(changes)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(workers, len(groups))) as pool:
                list(pool.map(run, groups.values()))
    progress.finish("apply")
    for change in plan.changes:
        if change.deferred is not None:
            continue
        error = results[id(change)]
        if error is None:
            outcome.applied.append(change)
        else:
            outcome.failed.append((change, error))
    everything = sum(len(changes) for changes in groups.values())
    return outcome, written if len(written) == everything else None


def _write_of(change: Change) -> tuple[str, str, VersionWrite]:
    """The registry write of a put (create, new version, metadata update)."""
    assert change.write is not None and change.version is not None
    return change.name, change.version, change.write


def with_retries(registry: Registry, change: Change) -> None:
    for attempt in range(RETRIES + 1):
        try:
            execute(registry, change)
            return
        except RegistryError as exc:
            if not exc.transient or attempt == RETRIES:
                raise
            time.sleep(RETRY_BASE_DELAY * 2**attempt)


def execute(registry: Registry, change: Change) -> None:
    """One change, as registry writes (each safe to repeat)."""
    if change.action in PUTS:
        registry.put_version(*_write_of(change))
    elif change.action in (Action.RESTORE, Action.ARCHIVE):
        archived = change.action is Action.ARCHIVE
        if change.version is None:
            registry.set_container_archived(change.name, archived)
        else:
            registry.set_version_archived(change.name, change.version, archived)
        # The stamp goes on after the flag: an apply killed in between leaves an
        # archive without stamp (harmless while out of git) or a stale stamp on an
        # active environment (the next plan clears it).
        if change.write is not None and change.stamp_version is not None:
            registry.put_version(change.name, change.stamp_version, change.write)
