"""Wires the ports to the core: read desired and actual state, plan, apply.

Reconcile once = read, plan, apply. Apply takes the registry lock, plans again inside it
(so two reconcilers never act on a stale view), and runs each change with retries for
transient errors; a terminal error stops that environment only and is reported.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler import __version__
from reconciler.core.options import PlanOptions
from reconciler.core.selection import Selection
from reconciler.ports import Registry, RegistryError, Source

if TYPE_CHECKING:  # the rest of the core is imported when a plan is computed, not when
    # a cached one is answered
    from reconciler.core.desired import DesiredState, LoadMemo
    from reconciler.core.plan import Change, Plan

RETRIES = 3
RETRY_BASE_DELAY = 0.2


PARALLEL_PARSE_MIN = 2000  # below this, starting worker processes costs more than it saves


def parallel_map(
    function: Callable[[bytes], dict[str, Any]], items: list[bytes]
) -> Iterable[dict[str, Any]]:
    """Parse on every core when there is a lot to parse (a cold plan of a big repository)."""
    workers = min(os.cpu_count() or 1, 8)
    if workers < 2 or len(items) < PARALLEL_PARSE_MIN:
        return map(function, items)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers inherit the imported parser instead of importing it again
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(function, items, chunksize=64))


class ApplyRefused(Exception):
    """Apply will not start: the plan has error diagnostics."""


class MemoStore:
    """What the engine needs of a cache (see adapters/cache.py)."""

    def load_memo(self) -> LoadMemo:
        from reconciler.core.desired import LoadMemo

        return LoadMemo()

    def save_memo(self, memo: LoadMemo) -> None:
        return None

    def load_plan(self, slot: str) -> dict[str, Any] | None:
        return None

    def save_plan(self, slot: str, entry: dict[str, Any]) -> None:
        return None


@dataclass
class ApplyOutcome:
    plan: Plan
    applied: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class Engine:
    source: Source
    registry: Registry
    selection: Selection
    options: PlanOptions = field(default_factory=PlanOptions)
    cache: MemoStore = field(default_factory=MemoStore)
    lock_timeout: float = 60.0
    on_change: Callable[[Change, str], None] | None = None  # progress callback

    # -- reading --------------------------------------------------------------------

    def desired(self, ref: str | None = None, only: Iterable[str] | None = None) -> DesiredState:
        return self._read(ref, only)[0]

    def _read(
        self, ref: str | None, only: Iterable[str] | None = None
    ) -> tuple[DesiredState, list[str] | None]:
        """Desired state, and the watch list that keeps a cached plan of it honest."""
        from reconciler.core.desired import load_desired

        memo = self.cache.load_memo()
        snapshot = self.source.snapshot(ref)
        try:
            state = load_desired(snapshot, self.selection, memo, only, parallel_map)
            watch = self.source.watch_list(snapshot, self.selection.root, state.references)
        finally:
            close = getattr(snapshot, "close", None)
            if close is not None:
                close()
        self.cache.save_memo(memo)
        return state, watch

    def plan(self, ref: str | None = None) -> Plan:
        from reconciler.core.plan import make_plan

        desired = self.desired(ref)
        return make_plan(desired, self.registry.read_state(), self.selection, self.options)

    def _settings_key(self, token: str | None) -> str | None:
        if token is None:
            return None
        parts = [__version__, token, self.registry.url, repr(self.selection), repr(self.options)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def plan_document(self, ref: str | None = None) -> dict[str, Any]:
        """The plan as a document; answered from the cache when neither git nor the
        registry changed since the last plan of the same ref (no parsing, no registry read)."""
        slot = "working-tree" if ref is None else f"ref:{ref}"
        token = self.registry.state_token()
        key = self._settings_key(token)
        if key is not None:
            entry = self.cache.load_plan(slot)
            if entry is not None and entry.get("key") == key:
                fingerprint = self.source.fingerprint(ref, entry.get("watch"))
                if fingerprint is not None and fingerprint == entry.get("fingerprint"):
                    document: dict[str, Any] = entry["document"]
                    return document
        from reconciler.core.document import plan_document
        from reconciler.core.plan import make_plan

        desired, watch = self._read(ref)
        plan = make_plan(desired, self.registry.read_state(), self.selection, self.options)
        document = plan_document(plan, self.registry.url, self.selection.path)
        if key is not None and not plan.has_errors and self.registry.state_token() == token:
            # Taken after planning: a file edited meanwhile is too fresh to be trusted, and
            # the fingerprint then comes back None.
            fingerprint = self.source.fingerprint(ref, watch)
            if fingerprint is not None:
                self.cache.save_plan(
                    slot,
                    {"key": key, "fingerprint": fingerprint, "watch": watch, "document": document},
                )
        return document

    # -- applying ---------------------------------------------------------------------

    def apply(self, ref: str | None = None) -> ApplyOutcome:
        with self.registry.lock(self.lock_timeout):
            plan = self.plan(ref)
            if plan.has_errors:
                count = sum(1 for d in plan.diagnostics if d.severity == "error")
                raise ApplyRefused(
                    f"apply refused: {count} error(s) in the plan; nothing was written"
                )
            outcome = ApplyOutcome(plan)
            failed_names: set[str] = set()
            with self.registry.batch():
                for change in plan.changes:
                    if change.name in failed_names:
                        outcome.failed.append((change, "skipped: an earlier step failed"))
                        continue
                    try:
                        self._with_retries(change)
                    except RegistryError as exc:
                        failed_names.add(change.name)
                        outcome.failed.append((change, str(exc)))
                        self._report(change, f"failed: {exc}")
                    else:
                        outcome.applied.append(change)
                        self._report(change, "done")
            return outcome

    def _report(self, change: Change, status: str) -> None:
        if self.on_change is not None:
            self.on_change(change, status)

    def _with_retries(self, change: Change) -> None:
        for attempt in range(RETRIES + 1):
            try:
                self._execute(change)
                return
            except RegistryError as exc:
                if not exc.transient or attempt == RETRIES:
                    raise
                time.sleep(RETRY_BASE_DELAY * 2**attempt)

    def _execute(self, change: Change) -> None:
        from reconciler.core.plan import Action

        registry = self.registry
        if change.action in (Action.CREATE, Action.NEW_VERSION, Action.UPDATE_METADATA):
            assert change.write is not None and change.version is not None
            registry.put_version(change.name, change.version, change.write)
        elif change.action is Action.RESTORE:
            if change.version is None:
                registry.set_container_archived(change.name, False)
            else:
                registry.set_version_archived(change.name, change.version, False)
        elif change.action is Action.ARCHIVE:
            if change.version is None:
                registry.set_container_archived(change.name, True)
            else:
                registry.set_version_archived(change.name, change.version, True)
