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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

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
    registry: str
    after: tuple[str, ...] = ()
    soak: timedelta | None = None
    stage: str | None = None
    include: tuple[str, ...] = ()  # environment-name globs; empty: every environment
    exclude: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)  # per-target settings

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
