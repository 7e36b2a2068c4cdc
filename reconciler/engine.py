"""Wires the ports to the core: read desired and actual state, plan, apply.

Reconcile once = read, plan, apply. Apply takes the registry lock, plans again inside it
(so two reconcilers never act on a stale view), and runs each change with retries for
transient errors; a terminal error stops that environment only and is reported.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from reconciler import __version__
from reconciler.core.options import PlanOptions
from reconciler.core.selection import Selection
from reconciler.ports import (
    BuildError,
    NotFound,
    Progress,
    QuietProgress,
    Registry,
    RegistryError,
    Source,
    SourceError,
)

if TYPE_CHECKING:  # the rest of the core is imported when a plan is computed, not when
    # a cached one is answered
    from reconciler.build_runner import BuildOutcome, BuildRunner, BuildTarget
    from reconciler.core.desired import DesiredEnvironment, DesiredState, LoadMemo
    from reconciler.core.desired_memo import ResolveMemo
    from reconciler.core.diagnostics import Diagnostic
    from reconciler.core.drift import DriftClass, DriftReport
    from reconciler.core.governance.consumers import ConsumerIndex, ConsumerSettings
    from reconciler.core.model import RegisteredContainer, RegistryState
    from reconciler.core.plan import Change, Plan
    from reconciler.core.plan_memo import PlanMemo
    from reconciler.core.policy import Policy
    from reconciler.core.snapshot import FileEntry, Snapshot

RETRIES = 3
RETRY_BASE_DELAY = 0.2


PARALLEL_PARSE_MIN = 2000  # below this, starting worker processes costs more than it saves


def _close(snapshot: object) -> None:
    close = getattr(snapshot, "close", None)
    if close is not None:
        close()


TargetMemo = dict[str, tuple[Any, Any, Any]]  # name -> (environment, container, target)


def build_targets(
    desired: DesiredState, state: RegistryState, memo: TargetMemo | None = None
) -> list[BuildTarget]:
    """The registered version that carries each environment's git content. ``memo`` keeps
    each environment's answer for the same (immutable) environment and container."""
    targets = []
    kept: TargetMemo = {}
    for name, env in desired.environments.items():
        container = state.containers.get(name)
        if container is None:
            continue
        found = memo.get(name) if memo is not None else None
        if found is None or found[0] is not env or found[1] is not container:
            found = (env, container, _build_target(name, env, container))
        kept[name] = found
        if found[2] is not None:
            targets.append(found[2])
    if memo is not None:
        memo.clear()
        memo.update(kept)
    return targets


def _build_target(
    name: str, env: DesiredEnvironment, container: RegisteredContainer
) -> BuildTarget | None:
    from reconciler.build_runner import BuildTarget

    if env.version is not None:
        version = container.get(env.version)
    else:
        version = next(
            (v for v in reversed(container.versions) if v.effective_digest == env.digest),
            None,
        )
    if version is None or version.effective_digest != env.digest:
        return None  # not registered (its write failed): nothing to build yet
    return BuildTarget(name, version.version, env.digest, env.content, env.build_root)


def parallel_map(
    function: Callable[[bytes], dict[str, Any]],
    items: list[bytes],
    done: Callable[[], None] | None = None,
) -> Iterable[dict[str, Any]]:
    """Parse on every core when there is a lot to parse (a cold plan of a big repository);
    ``done`` is told after each item."""
    workers = min(os.cpu_count() or 1, 8)
    if workers < 2 or len(items) < PARALLEL_PARSE_MIN:
        if done is None:
            return map(function, items)
        return [_counted(function(item), done) for item in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers inherit the imported parser instead of importing it again
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        results = pool.map(function, items, chunksize=64)
        return [_counted(result, done) for result in results] if done else list(results)


def _counted(result: dict[str, Any], done: Callable[[], None]) -> dict[str, Any]:
    done()
    return result


def _lines_of(
    snapshot: Snapshot, subjects: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The first line of each file that mentions each text (to annotate a finding)."""
    found: dict[tuple[str, str], int] = {}
    by_path: dict[str, list[str]] = {}
    for path, text in subjects:
        by_path.setdefault(path, []).append(text)
    for path, texts in by_path.items():
        entry = snapshot.lookup(path)
        if entry is None:
            continue
        lines = snapshot.read(entry).decode("utf-8", "replace").splitlines()
        for text in texts:
            for number, line in enumerate(lines, 1):
                if text in line:
                    found[(path, text)] = number
                    break
    return found


def _dockerfile_bases(snapshot: Snapshot, env: DesiredEnvironment) -> list[str]:
    """The base images an environment's Dockerfile starts from (none without a context)."""
    from reconciler.core.build import dockerfile_bases

    path = env.dockerfile_path
    entry = snapshot.lookup(path) if path is not None else None
    if entry is None:
        return []
    return dockerfile_bases(snapshot.read(entry).decode("utf-8", "replace"))


class AppliedStore(Protocol):
    """Where apply records what it applied (see adapters/inventory.py)."""

    def load(self) -> dict[str, str]: ...

    def save(self, applied: Mapping[str, str]) -> None: ...


class Stage(Protocol):
    """One target among several (see stages/): how it shares the desired state read for
    the other targets, which environments it holds, and the promotion gate on its plan."""

    def load(self, key: tuple[Any, ...], read: Callable[[], DesiredState]) -> DesiredState: ...

    def select(self, desired: DesiredState) -> DesiredState: ...

    def gate(self, plan: Plan, state: RegistryState) -> Plan: ...

    def cache_key(self) -> str | None:
        """What else a cached plan of this target depends on; None: never cache it."""


class ApplyRefused(Exception):
    """Apply will not start: the plan has error diagnostics (``plan`` holds them)."""

    def __init__(self, message: str, plan: Plan | None = None) -> None:
        super().__init__(message)
        self.plan = plan


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

    def kept_memos(self) -> tuple[ResolveMemo, PlanMemo] | None:
        """Resolved environments and per-environment plans held in memory between
        reconciles (a long-running reconciler's); None: every reconcile starts afresh."""
        return None


@dataclass
class ApplyOutcome:
    plan: Plan
    applied: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, str]] = field(default_factory=list)
    builds: BuildOutcome | None = None
    deferred: list[Change] = field(default_factory=list)  # held by the promotion gate

    @property
    def ok(self) -> bool:
        return not self.failed and (self.builds is None or not self.builds.broken)


@dataclass
class Engine:
    source: Source
    registry: Registry
    selection: Selection
    options: PlanOptions = field(default_factory=PlanOptions)
    cache: MemoStore = field(default_factory=MemoStore)
    lock_timeout: float = 60.0
    on_change: Callable[[Change, str], None] | None = None  # progress callback
    progress: Progress = field(default_factory=QuietProgress)  # a terminal's display
    builds: BuildRunner | None = None  # None: registering only, no images
    inventory: AppliedStore | None = None  # what was applied, for `missing` drift
    policy: Policy | None = None  # governance rules (see core/policy.py)
    policy_date: date | None = None  # judge policy exceptions at this date (default: today)
    consumers: ConsumerSettings | None = None  # which files to scan for references (None: none)
    stage: Stage | None = None  # one of several targets (see stages/); None: the only one
    _targets: TargetMemo = field(default_factory=dict, init=False, repr=False, compare=False)

    # -- reading --------------------------------------------------------------------

    def desired(self, ref: str | None = None, only: Iterable[str] | None = None) -> DesiredState:
        return self._read(ref, only)[0]

    def _read(
        self, ref: str | None, only: Iterable[str] | None = None, watch_list: bool = True
    ) -> tuple[DesiredState, list[str] | None]:
        """Desired state, and the watch list that keeps a cached plan of it honest."""
        snapshot = self.source.snapshot(ref)
        try:
            return self._load(snapshot, only, watch_list)
        finally:
            _close(snapshot)

    def _load(
        self, snapshot: Snapshot, only: Iterable[str] | None = None, watch_list: bool = True
    ) -> tuple[DesiredState, list[str] | None]:
        from reconciler.core.desired import load_desired

        memo = self.cache.load_memo()
        kept = self._kept_memos()
        resolved = kept[0] if kept is not None else None

        def read() -> DesiredState:
            return load_desired(snapshot, self.selection, memo, only, self._parse_map, resolved)

        if self.stage is None:
            state = read()
        else:  # targets share one read of git; each then takes the environments it holds
            key = (snapshot.commit, snapshot.label, tuple(only) if only is not None else None)
            state = self.stage.select(self.stage.load(key, read))
        if self.policy is not None:
            state.diagnostics.extend(self._policy_diagnostics(state, snapshot, self.policy))
        scanning = self.consumers is not None and self.consumers.enabled and only is None
        if scanning:
            state.consumers = self._scan_consumers(snapshot, state, memo)
        watch = None
        if watch_list:  # only a cached plan needs it; walking every directory is not free
            watch = self.source.watch_list(
                snapshot, self.selection.root, state.references, whole_tree=scanning
            )
        self.cache.save_memo(memo)
        return state, watch

    def _scan_consumers(
        self, snapshot: Snapshot, state: DesiredState, memo: LoadMemo
    ) -> ConsumerIndex:
        """Every reference in the consumer files of the snapshot; each file's scan is kept
        by blob id, so an unchanged file is never read again."""
        from reconciler.core.governance import consumers as scan

        settings = self.consumers
        assert settings is not None
        selection, used = self.selection, state.references

        def wanted(path: str) -> bool:
            return settings.matches(path) and path not in used and not selection.owns(path)

        scanned: list[tuple[str, dict[str, Any]]] = []
        todo: list[tuple[FileEntry, str]] = []
        for entry in self.source.list_files(snapshot, wanted):
            key = ("code:" if scan.is_code(entry.path) else "yaml:") + entry.blob_id
            if entry.is_symlink:  # its target is scanned under its own name, if inside
                try:
                    target = snapshot.read(entry).decode("utf-8", "replace")
                except SourceError as exc:
                    scanned.append((entry.path, scan.unreadable_record(str(exc))))
                    continue
                problem = scan.symlink_problem(entry.path, target)
                if problem is not None:
                    scanned.append((entry.path, scan.unreadable_record(problem)))
                continue
            record = memo.consumers.get(key)
            if record is None:
                todo.append((entry, key))
            else:
                scanned.append((entry.path, record))
        if todo:
            scanned.extend(self._scan_files(snapshot, todo, memo))
        return scan.build_index(scanned)

    def _scan_files(
        self, snapshot: Snapshot, todo: list[tuple[FileEntry, str]], memo: LoadMemo
    ) -> list[tuple[str, dict[str, Any]]]:
        from reconciler.core.governance import consumers as scan

        sizes = self.source.sizes(snapshot, [entry for entry, _ in todo])
        out: list[tuple[str, dict[str, Any]]] = []
        readable: dict[str, list[tuple[FileEntry, str]]] = {"yaml": [], "code": []}
        for entry, key in todo:
            kind = key.split(":", 1)[0]
            size = sizes.get(entry.blob_id, 0)
            limit = scan.MAX_CODE_BYTES if kind == "code" else scan.MAX_YAML_BYTES
            if size > limit:  # never read: a huge file is refused before it is held
                memo.consumers[key] = scan.too_large_record(size, limit)
                out.append((entry.path, memo.consumers[key]))
            else:
                readable[kind].append((entry, key))
        snapshot.prefetch([entry for group in readable.values() for entry, _ in group])
        for kind, function in (("yaml", scan.scan_yaml), ("code", scan.scan_code)):
            group, contents = [], []
            for entry, key in readable[kind]:
                try:
                    contents.append(snapshot.read(entry))
                except SourceError as exc:  # vanished or unreadable: not cached
                    out.append((entry.path, scan.unreadable_record(str(exc))))
                    continue
                group.append((entry, key))
            for (entry, key), record in zip(group, parallel_map(function, contents), strict=True):
                memo.consumers[key] = record
                out.append((entry.path, record))
        memo.changed = True
        return out

    def reference_findings(self, state: DesiredState) -> list[Diagnostic]:
        """What git alone tells about the consumers' references (for validate)."""
        if state.consumers is None:
            return []
        from reconciler.core.governance.pins import Levels, Scope, reference_findings

        return reference_findings(
            state.consumers,
            state,
            None,
            None,
            Levels(self.options.reference_levels),
            Scope(self.options.registry_scope),
        )

    def _parse_map(
        self, function: Callable[[bytes], dict[str, Any]], items: list[bytes]
    ) -> Iterable[dict[str, Any]]:
        """parallel_map, counting parsed files on the progress display."""
        if isinstance(self.progress, QuietProgress):
            return parallel_map(function, items)
        self.progress.start("parse", f"parsing {len(items)} environment file(s)", len(items))
        try:
            return parallel_map(function, items, lambda: self.progress.advance("parse"))
        finally:
            self.progress.finish("parse")

    def _read_state(self) -> RegistryState:
        self.progress.start("registry", f"reading {self.registry.url}")
        try:
            return self.registry.read_state()
        finally:
            self.progress.finish("registry")

    def _kept_memos(self) -> tuple[ResolveMemo, PlanMemo] | None:
        kept = getattr(self.cache, "kept_memos", None)  # DiskCache has none
        return None if kept is None else kept()

    def today(self) -> date:
        """The date policy exceptions are judged at (UTC)."""
        return self.policy_date or datetime.now(UTC).date()

    def _policy_diagnostics(
        self, state: DesiredState, snapshot: Snapshot, policy: Policy
    ) -> list[Diagnostic]:
        """Policy violations of every valid environment, with the file and line."""
        from reconciler.core.package_diff import requirement_blobs
        from reconciler.core.policy import evaluate

        def text(path: str) -> str | None:
            entry = snapshot.lookup(path)
            return None if entry is None else snapshot.read(entry).decode("utf-8", "replace")

        today = self.today()
        violations = []
        for env in state.environments.values():
            bases: list[str] = []
            requirements: dict[str, str] = {}
            build = env.content.get("build")
            if env.build_root is not None and isinstance(build, Mapping):
                root = env.build_root
                if policy.needs_dockerfiles:
                    bases = _dockerfile_bases(snapshot, env)
                if policy.needs_requirements:
                    for path in requirement_blobs(env.content):
                        found = text(f"{root}/{path}".lstrip("/"))
                        if found is not None:
                            requirements[path] = found
            violations.extend(evaluate(policy, env, today, bases, requirements))
        subjects = {(v.path, v.subject) for v in violations if v.line is None and v.path}
        lines = _lines_of(snapshot, [(p, s) for p, s in subjects if s])
        return [v.diagnostic(lines) for v in violations]

    def plan(self, ref: str | None = None) -> Plan:
        return self._planned(ref)[0]

    def plan_with_state(self, ref: str | None = None) -> tuple[Plan, DesiredState, RegistryState]:
        """The plan, and the desired state (consumers included) and registry state it was
        made from (for `refs` and `bump`)."""
        plan, desired, state, _ = self._planned(ref)
        return plan, desired, state

    def _planned(
        self, ref: str | None, options: PlanOptions | None = None, watch_list: bool = True
    ) -> tuple[Plan, DesiredState, RegistryState, list[str] | None]:
        """Read ``ref``, plan it against the registry, with package diffs."""
        desired, watch = self._read(ref, watch_list=watch_list)
        state = self._read_state()
        return self._make_plan(desired, state, ref, None, options), desired, state, watch

    def _make_plan(
        self,
        desired: DesiredState,
        state: RegistryState,
        ref: str | None,
        snapshot: Snapshot | None = None,
        options: PlanOptions | None = None,
    ) -> Plan:
        """The plan, with package diffs (requirement files read from ``snapshot``, or from
        a new snapshot of ``ref`` when one is needed)."""
        from reconciler.core.plan import make_plan
        from reconciler.core.plan_packages import annotate_packages, package_blobs

        kept = self._kept_memos()
        memo = kept[1] if kept is not None else None
        plan = make_plan(desired, state, self.selection, options or self.options, memo)
        if self.stage is not None:
            plan = self.stage.gate(plan, state)
        blobs = package_blobs(plan, state)
        if not blobs:  # conda files only: their content is in the plan already
            return annotate_packages(plan, state, {})
        if snapshot is not None:
            return annotate_packages(plan, state, self._texts(blobs, snapshot, desired))
        snapshot = self.source.snapshot(ref)
        try:
            return annotate_packages(plan, state, self._texts(blobs, snapshot, desired))
        finally:
            _close(snapshot)

    def _texts(
        self, blobs: Iterable[str], snapshot: Snapshot, desired: DesiredState
    ) -> dict[str, str]:
        """Text of files by blob id: from git's history, else from the snapshot (a file
        edited in the working tree is not in git's object database yet). Unreadable ones
        are left out (shown as not read)."""

        out: dict[str, str] = {}
        index: dict[str, FileEntry] | None = None
        for blob in sorted(blobs):
            try:
                data = self.source.read_blob(blob)
            except SourceError:
                if index is None:
                    index = {
                        e.blob_id: e
                        for env in desired.environments.values()
                        if env.build_root is not None
                        for e in snapshot.files_under(env.build_root)
                    }
                entry = index.get(blob)
                if entry is None:
                    continue
                data = snapshot.read(entry)
            out[blob] = data.decode("utf-8", "replace")
        return out

    def _settings_key(self, token: str | None) -> str | None:
        if token is None:
            return None
        parts = [__version__, token, self.registry.url, repr(self.selection), repr(self.options)]
        parts.append(repr(self.consumers))
        if self.stage is not None:
            extra = self.stage.cache_key()
            if extra is None:
                return None
            parts.append(extra)
        if self.policy is not None:  # exceptions expire: a cached plan is good for one day
            parts += [repr(self.policy), self.today().isoformat()]
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

        # The watch list only serves a plan that may be cached.
        plan, _, _, watch = self._planned(ref, watch_list=key is not None)
        document = plan_document(plan, self.registry.url, self.selection.path, self._predict(plan))
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
            snapshot = self.source.snapshot(ref)
            try:
                desired, _ = self._load(snapshot, watch_list=False)
                plan = self._make_plan(desired, self._read_state(), ref, snapshot)
                outcome = self._apply_plan(plan)
                if self.builds is None and self.inventory is None:
                    return outcome
                targets = build_targets(desired, self.registry.read_state(), self._targets)
                if self.inventory is not None:
                    self.inventory.save({t.name: t.version for t in targets})
                if self.builds is not None:
                    outcome.builds = self.builds.run(targets, self._blob_reader(snapshot))
                return outcome
            finally:
                _close(snapshot)

    # -- saved plans and pull requests ---------------------------------------------------

    def saved_plan(self, ref: str | None = None) -> dict[str, Any]:
        """`plan --out`: the plan document and everything `apply FILE` will write."""
        from reconciler.core.document import plan_document
        from reconciler.core.saved_plan import saved_plan

        plan, _, state, _ = self._planned(ref)
        document = plan_document(plan, self.registry.url, self.selection.path, self._predict(plan))
        return saved_plan(plan, document, state, self.registry.url, ref)

    def apply_saved(self, data: Any, where: str) -> ApplyOutcome:
        """Apply a saved plan exactly, under the lock, after checking it is not stale."""
        from reconciler.build_runner import BuildTarget
        from reconciler.core.plan import Action, Plan
        from reconciler.core.saved_plan import check_fresh, load_saved_plan

        section, changes = load_saved_plan(data, where)
        with self.registry.lock(self.lock_timeout):
            snapshot = self.source.snapshot(section.get("ref"))
            try:
                check_fresh(section, self.registry.url, self.registry.read_state(), snapshot.commit)
                plan = Plan(tuple(changes), (), (), (), "saved plan", section.get("commit"))
                outcome = self._apply_plan(plan)
                written = [
                    c
                    for c in outcome.applied
                    if c.write is not None
                    and c.version is not None
                    and c.action in (Action.CREATE, Action.NEW_VERSION)
                ]
                if self.inventory is not None and written:
                    applied = self.inventory.load()
                    applied.update({c.name: c.version for c in written if c.version})
                    self.inventory.save(applied)
                if self.builds is not None:
                    targets = [
                        BuildTarget(c.name, c.version, c.write.digest, c.write.content)
                        for c in written
                        if c.write is not None and c.version is not None
                    ]
                    outcome.builds = self.builds.run(targets, self._blob_reader(snapshot))
                return outcome
            finally:
                _close(snapshot)

    def _predict(self, plan: Plan) -> dict[str, str] | None:
        if self.builds is None:
            return None
        return self.builds.predict(
            c.write.digest
            for c in plan.changes
            if c.write is not None
            and c.version
            and c.action.value in ("create", "new_version")
            and c.deferred is None
        )

    def pull_request_plan(self, base: str, head: str) -> dict[str, Any]:
        """What merging ``head`` would do to the registry: head's tree planned against the
        registry, each change marked with whether this pull request introduces it (base's
        tree would not make it), and the findings of the environments it touches."""
        from reconciler.core.document import pull_request_document
        from reconciler.core.plan import make_plan

        head_plan, head_desired, state, _ = self._planned(head)
        base_desired, _ = self._read(base)
        base_plan = make_plan(base_desired, state, self.selection, self.options)
        return pull_request_document(
            head_plan,
            base_plan,
            head_desired,
            base_desired,
            self.registry.url,
            self.selection.path,
            (base, head),
            self._predict(head_plan),
        )

    # -- comparing versions ----------------------------------------------------------------

    def version_diff(
        self, left: tuple[str, str], right: tuple[str, str] | None, ref: str | None = None
    ) -> dict[str, Any]:
        """NAME:V1 against NAME:V2, or against git's version of NAME (at ``ref``, default
        the working tree) when ``right`` is None."""
        from reconciler.core.package_diff import needed_blobs
        from reconciler.core.version_diff import Side, compare

        def registered(name: str, version: str) -> Side:
            found = self.registry.get_version(name, version)
            if found is None or found.content is None:
                raise NotFound(f"no version {name}:{version} in {self.registry.url}")
            return Side(
                f"{name}:{version}",
                name,
                version,
                found.content,
                found.effective_digest,
                found.description,
                found.tags,
                "registry",
            )

        before = registered(*left)
        snapshot = self.source.snapshot(ref)
        try:
            desired, _ = self._load(snapshot)
            if right is not None:
                after = registered(*right)
            else:
                env = desired.environments.get(left[0])
                if env is None:
                    raise SourceError(f"no environment {left[0]!r} in git ({snapshot.label})")
                after = Side(
                    f"{env.name} in git ({snapshot.label})",
                    env.name,
                    env.version,
                    env.content,
                    env.digest,
                    env.description,
                    env.tags,
                    "git",
                )
            blobs = needed_blobs(before.content, after.content)
            texts = self._texts(blobs, snapshot, desired) if blobs else {}
        finally:
            _close(snapshot)
        return compare(before, after, texts)

    # -- drift ----------------------------------------------------------------------------

    def drift(self, ref: str | None, fail_on: Iterable[DriftClass] | None = None) -> DriftReport:
        """Classify every environment: git at ``ref`` against the registry, its build
        records, the OCI registry and the base images' registries."""
        from reconciler.core.drift import DEFAULT_FAIL_ON, make_report

        snapshot = self.source.snapshot(ref)
        try:
            desired, _ = self._load(snapshot, watch_list=False)
            state = self.registry.read_state()
            options = replace(self.options, self_heal=False)
            plan = self._make_plan(desired, state, ref, snapshot, options)
            seen = self._observe(desired, state, snapshot)
        finally:
            _close(snapshot)
        return make_report(
            plan, desired, state, seen, DEFAULT_FAIL_ON if fail_on is None else fail_on
        )

    def _observe(self, desired: DesiredState, state: RegistryState, snapshot: Snapshot) -> Any:
        from concurrent.futures import ThreadPoolExecutor

        from reconciler.core.build import BuildStatus
        from reconciler.core.drift import Observations, finding_subjects

        bases = {
            name: tuple(_dockerfile_bases(snapshot, env))
            for name, env in desired.environments.items()
            if env.dockerfile_path is not None
        }
        seen = Observations(
            applied=self.inventory.load() if self.inventory else {},
            build_targets={t.name: t.version for t in build_targets(desired, state)},
            dockerfile_bases=bases,
        )
        seen = replace(seen, finding_lines=_lines_of(snapshot, finding_subjects(desired, seen)))
        runner = self.builds
        if runner is None or runner.builder is None:
            return seen
        records = self.registry.build_records()
        tags: frozenset[str] | None = None
        error = None
        try:
            tags = frozenset(runner.builder.pushed_tags())
        except BuildError as exc:
            error = str(exc)
        refs = sorted(
            {
                ref
                for name, version in seen.build_targets.items()
                if (r := records.get((name, version))) is not None
                and r.status is BuildStatus.SUCCEEDED
                for ref, digest in r.bases.items()
                if digest is not None
            }
        )
        digests: dict[str, str | None] = {}
        errors: dict[str, str] = {}
        resolve = runner.resolve_base
        if resolve is not None and refs:

            def one(ref: str) -> tuple[str, str | None, str | None]:
                try:
                    return ref, resolve(ref), None
                except BuildError as exc:  # unreachable: unknown, not drift
                    return ref, None, str(exc)

            with ThreadPoolExecutor(min(8, len(refs))) as pool:
                for ref, digest, problem in pool.map(one, refs):
                    if problem is None:
                        digests[ref] = digest
                    else:
                        errors[ref] = problem
        return replace(
            seen,
            build_records=records,
            builds_configured=True,
            image_tags=tags,
            image_lookup_error=error,
            base_digests=digests,
            base_errors=errors,
        )

    def build(self, name: str, version: str | None = None, ref: str | None = None) -> BuildOutcome:
        """Build NAME (its version in git) or NAME:VERSION (any registered version) now,
        whatever its record says."""
        from reconciler.build_runner import BuildTarget

        if self.builds is None:
            raise BuildError("builds are not configured: set --image-registry")
        with self.registry.lock(self.lock_timeout):
            snapshot = self.source.snapshot(ref)
            try:
                desired, _ = self._load(snapshot)
                state = self.registry.read_state()
                container = state.containers.get(name)
                if container is None:
                    raise BuildError(f"no environment {name!r} in {self.registry.url}")
                targets = [t for t in build_targets(desired, state) if t.name == name]
                if version is not None and not any(t.version == version for t in targets):
                    found = container.get(version)
                    if found is None or found.content is None or found.digest is None:
                        raise BuildError(f"no version {name}:{version} in {self.registry.url}")
                    targets = [BuildTarget(name, version, found.digest, found.content)]
                elif version is not None:
                    targets = [t for t in targets if t.version == version]
                if not targets:
                    raise BuildError(f"{name} is not in git; name a version: {name}:VERSION")
                return self.builds.run(targets, self._blob_reader(snapshot), force=True)
            finally:
                _close(snapshot)

    def _blob_reader(self, snapshot: Snapshot) -> Callable[[str, BuildTarget], bytes]:
        """Build context files by blob id: from the snapshot, else from git's history."""

        indexes: dict[str, dict[str, FileEntry]] = {}
        lock = threading.Lock()

        def read(blob: str, target: BuildTarget) -> bytes:
            if target.build_root is not None:
                with lock:
                    index = indexes.get(target.build_root)
                    if index is None:
                        index = {e.blob_id: e for e in snapshot.files_under(target.build_root)}
                        indexes[target.build_root] = index
                    entry = index.get(blob)
                    if entry is not None:
                        return snapshot.read(entry)
            return self.source.read_blob(blob)

        return read

    def _apply_plan(self, plan: Plan) -> ApplyOutcome:
        if plan.has_errors:
            count = sum(1 for d in plan.diagnostics if d.severity == "error")
            raise ApplyRefused(
                f"apply refused: {count} error(s) in the plan; nothing was written", plan
            )
        outcome = ApplyOutcome(plan)
        # Environments are independent: a backend that takes concurrent calls (Azure ML)
        # gets several environments' changes at once; one environment's stay in order.
        workers = max(1, int(getattr(self.registry, "write_concurrency", 1)))
        groups: dict[str, list[Change]] = {}
        for change in plan.changes:
            if change.deferred is not None:  # held by the promotion gate
                outcome.deferred.append(change)
                continue
            groups.setdefault(change.name, []).append(change)
        results: dict[int, str | None] = {}  # id(change) -> error, None when applied
        report_lock = threading.Lock()

        def run(changes: list[Change]) -> None:
            failed = False
            for change in changes:
                error: str | None
                if failed:
                    error = "skipped: an earlier step failed"
                else:
                    try:
                        self._with_retries(change)
                        error = None
                    except RegistryError as exc:
                        failed = True
                        error = str(exc)
                with report_lock:
                    results[id(change)] = error
                    if error is None:
                        self._report(change, "done")
                    elif not error.startswith("skipped"):
                        self._report(change, f"failed: {error}")

        if plan.changes:
            self.progress.start(
                "apply", f"applying {len(plan.changes)} change(s)", len(plan.changes)
            )
        with self.registry.batch():
            if workers == 1 or len(groups) < 2:
                for changes in groups.values():
                    run(changes)
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(min(workers, len(groups))) as pool:
                    list(pool.map(run, groups.values()))
        self.progress.finish("apply")
        for change in plan.changes:
            if change.deferred is not None:
                continue
            error = results[id(change)]
            if error is None:
                outcome.applied.append(change)
            else:
                outcome.failed.append((change, error))
        return outcome

    def _report(self, change: Change, status: str) -> None:
        target = f"{change.name}:{change.version}" if change.version else change.name
        self.progress.advance("apply", f"{change.action.value} {target}: {status}")
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
