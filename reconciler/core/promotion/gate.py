"""Stages and gated promotion, as plain data and pure decisions.

A target is one registry the repository drives (a dev workspace, a prod workspace, a
shared Azure ML registry). ``after`` makes a target wait: a create or new version whose
content is not yet registered, built and (with ``soak``) lived in every target it waits
for is *deferred*: it stays in the plan, marked with what it waits for. The engine
gathers each upstream target's versions and build records; this module decides.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from reconciler.core.plan.types import Action, Change, Plan
from reconciler.core.spec.model import RegisteredContainer, RegistryState

# The key a promoted version is stamped with: `<target>:<name>:<version>` it came from.
STAMP_PROMOTED_FROM = "reconciler.promoted-from"

# Keys of a `[targets.NAME]` table that describe the target itself; every other key must
# be a setting a single registry takes (checked against the settings' own keys).
TARGET_KEYS = frozenset({"registry", "after", "soak", "stage", "include", "exclude"})


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


class TargetError(ValueError):
    """A `[targets]` table that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    """The table's name, `[targets.NAME]`: letters, digits, `-` and `_`."""
    registry: str
    """The target's registry URL (required), as the top-level `registry` setting takes it."""
    after: tuple[str, ...] = ()
    """The gate: targets whose registries must hold the same content (registered, managed, not
    archived, built where builds are configured) before a create or new version lands here.
    """
    soak: timedelta | None = None
    """And for how long it must have been there: `30m`, `24h`, `7d`."""
    stage: str | None = None
    """The version's stage property, where the service has one. Accepted, not sent yet: the
    SDK's Environment entity does not carry it."""
    include: tuple[str, ...] = ()
    """Globs of environment names this target holds (default: every environment)."""
    exclude: tuple[str, ...] = ()
    """Globs of environment names this target never holds."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Any per-registry setting (`image_registry`, `archive_limit_count`, `lock_timeout`, ...,
    and a `policy` table) given in the target's table; the top-level value otherwise."""

    def selects(self, name: str) -> bool:
        """Whether this target holds the environment ``name`` at all."""
        if self.include and not any(fnmatch.fnmatchcase(name, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)


def gate_order(targets: Mapping[str, Target]) -> tuple[str, ...]:
    """Targets with every target before the ones that wait for it; ties keep the order
    of declaration, so the order is stable and readable. A cycle or an unknown name in
    ``after`` is a TargetError naming the key."""
    for target in targets.values():
        for upstream in target.after:
            if upstream not in targets:
                known = ", ".join(targets) or "none"
                raise TargetError(
                    f"[targets.{target.name}] after: unknown target {upstream!r} (known: {known})"
                )
            if upstream == target.name:
                raise TargetError(f"[targets.{target.name}] after: a target cannot wait for itself")
    order: list[str] = []
    placed: set[str] = set()
    pending = list(targets)
    while pending:
        ready = [n for n in pending if all(u in placed for u in targets[n].after)]
        if not ready:
            raise TargetError(f"[targets] after: a cycle ({_cycle(targets, pending)})")
        for name in ready:
            order.append(name)
            placed.add(name)
        pending = [n for n in pending if n not in placed]
    return tuple(order)


def _cycle(targets: Mapping[str, Target], pending: Sequence[str]) -> str:
    """One cycle among the targets that could not be placed, as `a -> b -> a`."""
    left = set(pending)
    path = [pending[0]]
    while True:
        nxt = next(u for u in targets[path[-1]].after if u in left)
        if nxt in path:
            loop = [*path[path.index(nxt) :], nxt]
            return " -> ".join(loop)
        path.append(nxt)


def upstreams_of(name: str, targets: Mapping[str, Target]) -> tuple[str, ...]:
    return targets[name].after


# -- the gate ------------------------------------------------------------------------


class Wait(StrEnum):
    """Why a change waits for an upstream target; the human text is in ``Deferral.text``."""

    NOT_SELECTED = "not_selected"
    NOT_REGISTERED = "not_registered"
    ARCHIVED = "archived"
    NOT_BUILT = "not_built"
    BUILD_FAILED = "build_failed"
    SOAKING = "soaking"
    UNREACHABLE = "unreachable"


_TEXT = {
    Wait.NOT_SELECTED: "not in that target's environments",
    Wait.NOT_REGISTERED: "not registered",
    Wait.ARCHIVED: "archived",
    Wait.NOT_BUILT: "not built yet",
    Wait.BUILD_FAILED: "build failed",
    Wait.UNREACHABLE: "its registry could not be read",
}


@dataclass(frozen=True, slots=True)
class Landed:
    """One version of an environment as an upstream target holds it."""

    version: str
    digest: str | None
    managed: bool
    archived: bool
    created_at: datetime | None
    build: str | None = None  # a BuildStatus value; None: no build record


@dataclass(frozen=True, slots=True)
class Upstream:
    """What the gate needs to know of one target a change waits for."""

    target: str
    versions: Mapping[str, Sequence[Landed]]  # environment name -> versions, oldest first
    builds_configured: bool = False
    reachable: bool = True
    selects: frozenset[str] | None = None  # names the target holds; None: all


@dataclass(frozen=True, slots=True)
class Deferral:
    upstream: str
    wait: Wait
    until: datetime | None = None  # soaking: when the content will have soaked

    @property
    def text(self) -> str:
        if self.wait is Wait.SOAKING and self.until is not None:
            return f"soaking in {self.upstream} until {_stamp(self.until)}"
        return f"waiting for {self.upstream}: {_TEXT[self.wait]}"


@dataclass(frozen=True, slots=True)
class Gate:
    """The gate's answer for one create or new version in one target."""

    deferrals: tuple[Deferral, ...] = ()
    # Where the content comes from when it passed (the first upstream in gate order):
    # (target, version) - the version number it keeps where the target allows it.
    source: tuple[str, str] | None = None

    @property
    def passed(self) -> bool:
        return not self.deferrals

    def promoted_from(self, name: str) -> str | None:
        if self.source is None:
            return None
        return f"{self.source[0]}:{name}:{self.source[1]}"


def check(
    name: str,
    digest: str,
    upstreams: Iterable[Upstream],
    soak: timedelta | None,
    now: datetime,
) -> Gate:
    """Whether content ``digest`` of environment ``name`` may land in a target that waits
    for ``upstreams``: registered there (managed, not archived), with a succeeded build
    where builds are configured, and older than ``soak``."""
    deferrals: list[Deferral] = []
    source: tuple[str, str] | None = None
    for upstream in upstreams:
        found = _landed(name, digest, upstream, soak, now)
        if isinstance(found, Deferral):
            deferrals.append(found)
        elif source is None:
            source = (upstream.target, found.version)
    return Gate(tuple(deferrals), None if deferrals else source)


def _landed(
    name: str, digest: str, upstream: Upstream, soak: timedelta | None, now: datetime
) -> Landed | Deferral:
    if not upstream.reachable:
        return Deferral(upstream.target, Wait.UNREACHABLE)
    if upstream.selects is not None and name not in upstream.selects:
        return Deferral(upstream.target, Wait.NOT_SELECTED)
    same = [v for v in upstream.versions.get(name, ()) if v.managed and v.digest == digest]
    if not same:
        return Deferral(upstream.target, Wait.NOT_REGISTERED)
    active = [v for v in same if not v.archived]
    if not active:
        return Deferral(upstream.target, Wait.ARCHIVED)
    if upstream.builds_configured:
        built = [v for v in active if v.build == "succeeded"]
        if not built:
            failed = any(v.build == "failed" for v in active)
            return Deferral(upstream.target, Wait.BUILD_FAILED if failed else Wait.NOT_BUILT)
        active = built
    # The oldest registration is the one that has lived there longest.
    landed = active[0]
    if soak is not None:
        since = landed.created_at
        if since is None:
            return Deferral(upstream.target, Wait.SOAKING, now + soak)
        until = since + soak
        if until > now:
            return Deferral(upstream.target, Wait.SOAKING, until)
    return landed


def _stamp(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def parse_created(text: str) -> datetime | None:
    """A registry's creation time (ISO 8601, with or without a zone) as an aware time."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- settings ------------------------------------------------------------------------


def parse_targets(
    table: Any,
    setting: Any,
    duration: Any,
) -> dict[str, Target]:
    """The `[targets]` table of reconciler.toml. ``setting(key, value, where)`` checks and
    coerces a per-target override of a top-level setting (raising TargetError for an
    unknown key); ``duration(text)`` parses `soak`."""
    if not isinstance(table, Mapping):
        raise TargetError("[targets] must be a table of tables ([targets.NAME])")
    targets: dict[str, Target] = {}
    for name, body in table.items():
        where = f"[targets.{name}]"
        if not _NAME.fullmatch(name):
            raise TargetError(f"{where}: a target name is letters, digits, '-' and '_'")
        if not isinstance(body, Mapping):
            raise TargetError(f"{where} must be a table")
        registry = body.get("registry")
        if not isinstance(registry, str) or not registry:
            raise TargetError(f"{where}: `registry` is required (a registry URL)")
        after = _strings(body.get("after", ()), f"{where} after")
        soak = None
        if "soak" in body:
            try:
                soak = timedelta(seconds=duration(str(body["soak"])))
            except ValueError as exc:
                raise TargetError(f"{where} soak: {exc}") from None
        stage = body.get("stage")
        if stage is not None and not isinstance(stage, str):
            raise TargetError(f"{where} stage: expected a string")
        overrides = {
            key: setting(key, value, where) for key, value in body.items() if key not in TARGET_KEYS
        }
        targets[name] = Target(
            name=name,
            registry=registry,
            after=after,
            soak=soak,
            stage=stage,
            include=_strings(body.get("include", ()), f"{where} include"),
            exclude=_strings(body.get("exclude", ()), f"{where} exclude"),
            overrides=overrides,
        )
    gate_order(targets)  # a cycle or an unknown name is an error at load time
    return targets


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TargetError(f"{where}: expected a list of strings")


# -- the gate on a plan ----------------------------------------------------------------


def gate_plan(
    plan: Plan,
    state: RegistryState,
    upstreams: Sequence[Upstream],
    soak: timedelta | None,
    now: datetime,
    pinned: frozenset[str] = frozenset(),
) -> Plan:
    """``plan`` of one target with the gate applied: each create or new version either
    deferred (with what it waits for) or promoted: the version number it has upstream
    where this target does not hold that number yet, and the promoted-from stamp. A
    metadata update keeps the stamp a promoted version carries. Archives, restores and
    metadata updates are never held. ``pinned``: environments whose version git names
    (the same number everywhere already)."""
    changes: list[Change] = []
    deferred = 0
    for change in plan.changes:
        if change.action in (Action.CREATE, Action.NEW_VERSION) and change.write is not None:
            if upstreams:
                gate = check(change.name, change.write.digest, upstreams, soak, now)
                if not gate.passed:
                    deferred += 1
                    text = "; ".join(d.text for d in gate.deferrals)
                    changes.append(replace(change, deferred=text))
                    continue
                container = state.containers.get(change.name)
                change = _promoted(change, gate, container, change.name not in pinned)
        elif change.action is Action.UPDATE_METADATA and change.write is not None:
            change = _keep_stamp(change, state.containers.get(change.name))
        changes.append(change)
    summary = dict(plan.summary)
    summary["deferred"] = deferred
    return replace(plan, changes=tuple(changes), summary=summary)


def _promoted(
    change: Change, gate: Gate, container: RegisteredContainer | None, floating: bool
) -> Change:
    assert change.write is not None and gate.source is not None
    upstream_version = gate.source[1]
    version = change.version
    taken = container is not None and container.get(upstream_version) is not None
    if floating and not taken:
        version = upstream_version  # the same number everywhere, where it is free
    origin = f"{gate.source[0]}:{change.name}:{upstream_version}"
    tags = dict(change.write.tags)
    tags[STAMP_PROMOTED_FROM] = origin
    return replace(change, version=version, write=replace(change.write, tags=tags))


def _keep_stamp(change: Change, container: RegisteredContainer | None) -> Change:
    existing = container.get(change.version) if container and change.version else None
    origin = existing.tags.get(STAMP_PROMOTED_FROM) if existing is not None else None
    if origin is None or change.write is None or STAMP_PROMOTED_FROM in change.write.tags:
        return change
    tags = dict(change.write.tags)
    tags[STAMP_PROMOTED_FROM] = origin
    return replace(change, write=replace(change.write, tags=tags))


def upstream_view(
    target: str,
    state: RegistryState,
    records: Mapping[tuple[str, str], Any],
    builds_configured: bool,
    selects: frozenset[str] | None,
) -> Upstream:
    """What the gate needs of an upstream target, from its registry state and build
    records (``records[(name, version)].status``)."""
    versions: dict[str, tuple[Landed, ...]] = {}
    for name, container in state.containers.items():
        versions[name] = tuple(
            Landed(
                v.version,
                v.effective_digest,
                v.managed,
                v.archived or container.archived,
                parse_created(v.created_at),
                _status(records.get((name, v.version))),
            )
            for v in container.versions
        )
    return Upstream(target, versions, builds_configured, True, selects)


def _status(record: Any) -> str | None:
    if record is None:
        return None
    status = getattr(record, "status", None)
    return None if status is None else str(getattr(status, "value", status))


# -- evidence --------------------------------------------------------------------------


def promotions(
    target: str, after: Sequence[str], states: Mapping[str, RegistryState]
) -> list[dict[str, Any]]:
    """For every version of ``target`` promoted from a target before it: the version it
    was promoted from, when that was registered there and from which commit, and when
    (and at which commit) it was promoted here."""
    state = states.get(target)
    if state is None:
        return []
    out: list[dict[str, Any]] = []
    for name, container in sorted(state.containers.items()):
        for version in container.versions:
            origin = version.tags.get(STAMP_PROMOTED_FROM)
            if origin is None:
                continue
            source, _, rest = origin.partition(":")
            source_name, _, source_version = rest.rpartition(":")
            upstream = states.get(source)
            container_there = upstream.containers.get(source_name) if upstream else None
            found = container_there.get(source_version) if container_there else None
            out.append(
                {
                    "name": name,
                    "version": version.version,
                    "promoted_at": version.created_at or None,
                    "commit": version.source_commit,
                    "digest": version.effective_digest,
                    "from": {
                        "target": source,
                        "name": source_name,
                        "version": source_version,
                        "registered_at": found.created_at or None if found else None,
                        "commit": found.source_commit if found else None,
                        "digest": found.effective_digest if found else None,
                        "found": found is not None,
                    },
                    "waits_for": list(after),
                }
            )
    return out


# -- pull requests: where a change lands on merge ----------------------------------------

_NOT_REGISTERED = re.compile(r"waiting for ([A-Za-z0-9_-]+): not registered")


def predict_landing(
    sections: Sequence[Mapping[str, Any]], soaks: Mapping[str, str | None]
) -> dict[str, dict[str, str]]:
    """For each environment a pull request changes, per target (plan documents in gate
    order): what merging does there. A change that waits only for upstream targets that
    take the same content on merge lands in the same reconcile, after them, unless the
    target soaks it or the upstream has to build it first."""
    out: dict[str, dict[str, str]] = {}
    lands: dict[tuple[str, str], str] = {}  # (target, environment) -> "now" / "later"
    for section in sections:
        target = str(section["target"])
        changed = (section.get("pull_request") or {}).get("environments_changed") or []
        for change in section.get("changes", ()):
            name = str(change["name"])
            if name not in changed or not change.get("introduced", True):
                continue
            label = f"{change['action'].replace('_', ' ')} {name}" + (
                f":{change['version']}" if change.get("version") else ""
            )
            waits = change.get("deferred")
            if not waits:
                lands[(target, name)] = "now"
                out.setdefault(name, {})[target] = label
                continue
            reasons = str(waits).split("; ")
            upstreams = [m.group(1) for r in reasons if (m := _NOT_REGISTERED.fullmatch(r))]
            if len(upstreams) != len(reasons) or not all((u, name) in lands for u in upstreams):
                out.setdefault(name, {})[target] = f"waits: {waits}"
                continue
            after = ", ".join(upstreams)
            soak = soaks.get(target)
            if soak:
                text = f"waits: soaks {soak} in {after} after merge"
            elif any(_builds(sections, u, name) for u in upstreams):
                lands[(target, name)] = "later"
                text = f"{label} once {after} built it"
            else:
                lands[(target, name)] = "later"
                text = f"{label} on merge, after {after}"
            out.setdefault(name, {})[target] = text
    for section in sections:  # environments changed that a target does not hold
        changed = (section.get("pull_request") or {}).get("environments_changed") or []
        for name in changed:
            out.setdefault(name, {}).setdefault(str(section["target"]), "no change")
    return dict(sorted(out.items()))


def _builds(sections: Sequence[Mapping[str, Any]], target: str, name: str) -> bool:
    """The upstream's plan predicts an image build for the change (builds configured)."""
    for section in sections:
        if section["target"] == target:
            return any(c["name"] == name and c.get("build") for c in section.get("changes", ()))
    return False
