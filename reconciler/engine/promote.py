"""Many targets: one engine per target, walked in gate order.

A layer over the Engine's public verbs. Every target's engine shares one read of git
(parsing and content digests are done once per run), takes the environments its target
holds, and has the promotion gate applied to its plan against what the targets before
it hold. Apply walks the gate order, so a change that lands in dev (and builds there)
may go on to prod in the same run, unless ``soak`` holds it. A target whose registry
cannot be read is reported and the others still run; the ones waiting for it defer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reconciler.core.plan.types import ApplyOutcome
from reconciler.engine.refusal import ApplyRefused
from reconciler.engine.wiring import Engine
from reconciler.ports import RegistryError, SourceError

if TYPE_CHECKING:
    from reconciler.core.desired.types import DesiredState
    from reconciler.core.plan.types import Plan
    from reconciler.core.promotion.gate import Target, Upstream
    from reconciler.core.promotion.status import TargetView
    from reconciler.core.spec.model import RegistryState
    from reconciler.settings import Settings

# Errors of one target that must not stop the others.
TARGET_ERRORS: tuple[type[Exception], ...] = (RegistryError, SourceError, OSError)


class StagesError(Exception):
    """Targets asked for that the settings do not have."""


def chosen_targets(settings: Settings, names: Iterable[str] | None) -> tuple[str, ...]:
    """The targets a command acts on, in gate order: ``names`` (``--target``), else all."""
    from reconciler.core.promotion.gate import gate_order

    order = gate_order(settings.targets)
    wanted = list(names or ())
    unknown = [n for n in wanted if n not in settings.targets]
    if unknown:
        known = ", ".join(order) or "none in reconciler.toml"
        raise StagesError(f"--target {unknown[0]}: unknown target (known: {known})")
    return tuple(n for n in order if not wanted or n in wanted)


@dataclass
class _Seen:
    """A target's registry as last read in this run (dropped when the target is written)."""

    state: RegistryState | None = None
    upstream: Upstream | None = None


@dataclass
class Stages:
    """The targets of one run. ``make_engine(name)`` wires the engine of a target (the
    command line does it from ``settings.for_target(name)``)."""

    settings: Settings
    make_engine: Callable[[str], Engine]
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # One command's run: git is read once and each registry once until it is written.
    # False (a long-running reconciler): every plan reads afresh.
    per_run: bool = True
    _engines: dict[str, Engine] = field(default_factory=dict, init=False)
    _reads: dict[tuple[Any, ...], DesiredState] = field(default_factory=dict, init=False)
    _seen: dict[str, _Seen] = field(default_factory=dict, init=False)

    @property
    def targets(self) -> Mapping[str, Target]:
        return self.settings.targets

    def engine(self, name: str) -> Engine:
        found = self._engines.get(name)
        if found is None:
            found = self.make_engine(name)
            found.stage = _TargetStage(self, self.targets[name])
            self._engines[name] = found
        return found

    def adopt(self, name: str, engine: Engine) -> Engine:
        """Make ``engine`` (wired elsewhere) this run's engine of target ``name``."""
        engine.stage = _TargetStage(self, self.targets[name])
        self._engines[name] = engine
        return engine

    def close(self) -> None:
        for engine in self._engines.values():
            engine.registry.close()

    def forget(self, name: str | None = None) -> None:
        """Drop what was read of a target's registry (all, and git's read, when None)."""
        if name is None:
            self._seen.clear()
            self._reads.clear()
        else:
            self._seen.pop(name, None)

    # -- what the gate needs of the targets before one -------------------------------------

    def upstream(self, name: str) -> Upstream:
        from reconciler.core.promotion.gate import Upstream, upstream_view

        seen = self._seen.setdefault(name, _Seen())
        if seen.upstream is not None:
            return seen.upstream
        target = self.targets[name]
        engine = self.engine(name)
        try:
            state = seen.state if seen.state is not None else engine.registry.read_state()
            builds = bool(self.settings.for_target(name).image_registry)
            records = engine.registry.build_records() if builds else {}
        except TARGET_ERRORS:
            return Upstream(name, {}, reachable=False)
        selects = None
        if target.include or target.exclude:
            selects = frozenset(n for n in state.containers if target.selects(n))
            desired = self._any_read()
            if desired is not None:
                selects |= {n for n in desired.environments if target.selects(n)}
        found = upstream_view(name, state, records, builds, selects)
        if self.per_run:
            seen.upstream = found
        else:
            self.forget(name)
        return found

    def _any_read(self) -> DesiredState | None:
        return next(iter(self._reads.values()), None)

    # -- verbs over targets ----------------------------------------------------------------

    def plans(self, names: Iterable[str], ref: str | None = None) -> Iterator[TargetResult]:
        """Each target's plan document, in gate order."""
        for name in names:
            engine = self.engine(name)
            try:
                document = engine.plan_document(ref)
            except TARGET_ERRORS as exc:
                yield TargetResult(name, engine.registry.url, error=str(exc))
                continue
            yield TargetResult(name, engine.registry.url, document=document)

    def apply(self, names: Iterable[str], ref: str | None = None) -> Iterator[TargetResult]:
        """Apply each target in gate order; what lands in one is seen by the next."""
        for name in names:
            engine = self.engine(name)
            try:
                outcome = engine.apply(ref)
            except ApplyRefused as refused:
                yield TargetResult(name, engine.registry.url, error=str(refused), refused=refused)
                continue
            except TARGET_ERRORS as exc:
                yield TargetResult(name, engine.registry.url, error=str(exc))
                continue
            finally:
                self.forget(name)
            yield TargetResult(name, engine.registry.url, outcome=outcome)

    def view(self, name: str, ref: str | None = None) -> TargetView:
        """One column of the promotion matrix: the target's plan, its registry and builds."""
        from reconciler.core.promotion.status import TargetView

        engine = self.engine(name)
        target = self.targets[name]
        try:
            plan = engine.plan(ref)
            state = self._seen.get(name, _Seen()).state or engine.registry.read_state()
            builds = bool(self.settings.for_target(name).image_registry)
            records = engine.registry.build_records() if builds else {}
        except TARGET_ERRORS as exc:
            return TargetView(name, frozenset(), reachable=False, error=str(exc))
        desired = self._any_read()
        selected = frozenset(
            n for n in (desired.environments if desired is not None else ()) if target.selects(n)
        )
        return _target_view(name, selected, plan, state, records)


@dataclass
class TargetResult:
    """One target's answer to a verb: a document, an apply outcome, or an error."""

    target: str
    registry: str
    document: dict[str, Any] | None = None
    outcome: ApplyOutcome | None = None
    error: str | None = None
    refused: ApplyRefused | None = None


class _TargetStage:
    """The engine's hook for one target (see engine.Stage)."""

    def __init__(self, stages: Stages, target: Target) -> None:
        self.stages = stages
        self.target = target
        self.pinned: frozenset[str] = frozenset()

    def load(self, key: tuple[Any, ...], read: Callable[[], DesiredState]) -> DesiredState:
        if not self.stages.per_run:
            return read()
        reads = self.stages._reads
        found = reads.get(key)
        if found is None:
            found = reads[key] = read()
        return found

    def select(self, desired: DesiredState) -> DesiredState:
        # A copy in any case: diagnostics are appended to per target (policies differ).
        target = self.target
        environments = desired.environments
        if target.include or target.exclude:
            environments = {n: e for n, e in environments.items() if target.selects(n)}
        self.pinned = frozenset(n for n, e in environments.items() if e.version is not None)
        return replace(desired, environments=environments, diagnostics=list(desired.diagnostics))

    def gate(self, plan: Plan, state: RegistryState) -> Plan:
        from reconciler.core.promotion.gate import gate_plan

        if self.stages.per_run:
            self.stages._seen[self.target.name] = _Seen(state=state)
        if not self.target.after:
            return plan
        upstreams = [self.stages.upstream(name) for name in self.target.after]
        return gate_plan(plan, state, upstreams, self.target.soak, self.stages.now(), self.pinned)

    def cache_key(self) -> str | None:
        # A gated plan depends on the targets before it and on the time (soak): not cached.
        return None if self.target.after else f"target:{self.target.name}"


def _target_view(
    name: str,
    selected: frozenset[str],
    plan: Plan,
    state: RegistryState,
    records: Mapping[tuple[str, str], Any],
) -> TargetView:
    from reconciler.core.build.jobs import BuildStatus
    from reconciler.core.promotion.status import TargetView

    versions: dict[str, str] = {}
    failed: dict[str, str] = {}
    for container_name, container in state.containers.items():
        if container.archived:
            continue
        active = [v for v in container.versions if not v.archived]
        if active:
            versions[container_name] = active[-1].version
            record = records.get((container_name, active[-1].version))
            if record is not None and record.status is BuildStatus.FAILED:
                failed[container_name] = record.message or "build failed"
    pending: dict[str, str] = {}
    deferred: dict[str, str] = {}
    for change in plan.changes:
        if change.deferred is not None:
            deferred.setdefault(change.name, change.deferred)
        else:
            pending.setdefault(change.name, f"{change.action.value} {change.target}")
    drift = {c.name: c.why for c in plan.drift}
    return TargetView(
        name,
        selected,
        versions,
        pending,
        deferred,
        drift,
        failed,
    )
