"""What consumers' references say about the environments: stale, unknown, archived and
floating pins, inline environments; which archives they forbid; and the edits that move
stale pins to the version git makes latest. Pure: values in, values out.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.core.desired.consumers import ConsumerIndex, Form, Reference
from reconciler.core.spec.diagnostics import Diagnostic, Severity

if TYPE_CHECKING:
    from reconciler.core.desired.types import DesiredState
    from reconciler.core.spec.model import RegistryState

REFERENCE_RULES = (
    "ref-stale",
    "ref-unknown",
    "ref-archived",
    "ref-floating",
    "ref-inline-environment",
    "ref-unreadable",
)
LEVELS = ("off", "info", "warning", "error")
DEFAULT_LEVELS = {
    "ref-stale": "warning",
    "ref-unknown": "warning",
    "ref-archived": "warning",
    "ref-floating": "info",
    "ref-inline-environment": "info",
    "ref-unreadable": "warning",
}
# Curated environments live in Microsoft's registries, never in this one.
_CURATED_PREFIXES = ("AzureML-", "azureml-")


@dataclass(frozen=True, slots=True)
class Levels:
    """Severity of each reference rule: defaults, then (name glob, rule, level) triples
    from `[policy]`, later ones winning."""

    overrides: tuple[tuple[str, str, str], ...] = ()

    def of(self, rule: str, name: str | None) -> str:
        level = DEFAULT_LEVELS[rule]
        for pattern, which, value in self.overrides:
            if which == rule and (pattern == "*" or fnmatch.fnmatchcase(name or "", pattern)):
                level = value
        return level


@dataclass(frozen=True, slots=True)
class Scope:
    """Which registry the reconciler manages, to tell its references from others':
    `registries/NAME`, `subscriptions/S/resourceGroups/R/workspaces/W`, or None (a local
    registry: only names git defines count for long forms)."""

    scope: str | None = None

    def ours(self, ref: Reference, in_git: bool) -> bool:
        if ref.name is None:
            return False
        if ref.name.startswith(_CURATED_PREFIXES) and not in_git:
            return False
        if ref.scope is None:
            return True  # workspace-relative: the workspace the job runs in
        if in_git:
            return True  # git defines it: a copy of ours, wherever it was promoted
        return self.scope is not None and ref.scope.lower() == self.scope.lower()


def registry_scope(url: str) -> Scope:
    """The scope of a registry URL (see settings: azureml://registries/NAME or
    azureml://subscriptions/S/resourceGroups/R/workspaces/W), by the one URL parser."""
    from reconciler.core.spec.registry_url import BadRegistryURL, parse_registry_url

    try:
        return Scope(parse_registry_url(url).scope)
    except BadRegistryURL:
        return Scope(None)


# ---------------------------------------------------------------------------- latest


def latest_versions(
    desired: DesiredState,
    state: RegistryState | None,
    created: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The version git makes latest per environment: the one this plan creates, else the
    registered version with git's content (or the version git pins), else for names only
    in the registry its newest active version."""
    return dict(LatestVersions(desired, state, created or {}).items())


class LatestVersions(Mapping[str, str]):
    """latest_versions, worked out per name when asked: a plan's findings ask only for the
    environments that consumers reference, not for every environment."""

    def __init__(
        self, desired: DesiredState, state: RegistryState | None, created: Mapping[str, str]
    ) -> None:
        self.desired, self.state, self.created = desired, state, created
        self._known: dict[str, str | None] = {}

    def _of(self, name: str) -> str | None:
        if name in self._known:
            return self._known[name]
        found = self._known[name] = self._work_out(name)
        return found

    def _work_out(self, name: str) -> str | None:
        if name in self.created:
            return self.created[name]
        env = self.desired.environments.get(name)
        state = self.state
        container = state.containers.get(name) if state is not None else None
        if env is not None:
            if env.version is not None:
                return env.version
            if container is not None:
                match = next(
                    (v for v in reversed(container.versions) if v.effective_digest == env.digest),
                    None,
                )
                if match is not None:
                    return match.version
        if container is not None and not container.archived:
            active = [v for v in container.versions if not v.archived]
            if active:
                return active[-1].version
        return None

    def __getitem__(self, name: str) -> str:
        found = self._of(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._of(name) is not None

    def __iter__(self) -> Iterator[str]:
        # git's environments first, then the names only in the registry
        names = dict.fromkeys(self.desired.environments)
        if self.state is not None:
            names.update(dict.fromkeys(self.state.containers))
        return (name for name in names if self._of(name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


# ---------------------------------------------------------------------------- findings


def _diagnostic(
    levels: Levels, rule: str, ref: Reference | None, message: str, path: str, line: int | None
) -> Diagnostic | None:
    level = levels.of(rule, ref.name if ref is not None else None)
    if level == "off":
        return None
    return Diagnostic(Severity(level), rule, message, path, line)


def reference_findings(
    index: ConsumerIndex,
    desired: DesiredState,
    state: RegistryState | None,
    created: Mapping[str, str] | None = None,
    levels: Levels | None = None,
    scope: Scope | None = None,
) -> list[Diagnostic]:
    """Findings for every reference. Without ``state`` (validate) only what git alone can
    tell: floating and inline references, unreadable files, pins of another version than
    the one git pins itself."""
    levels = levels or Levels()
    scope = scope or Scope()
    created = created or {}
    latest = LatestVersions(desired, state, created)
    out: list[Diagnostic | None] = []
    for bad in index.unreadable:
        out.append(
            _diagnostic(
                levels,
                "ref-unreadable",
                None,
                f"consumer file not read: {bad.reason}",
                bad.path,
                bad.line,
            )
        )
    for ref in index.references:
        if ref.form is Form.INLINE:
            out.append(
                _diagnostic(
                    levels,
                    "ref-inline-environment",
                    ref,
                    f"`{ref.key_path}` defines an anonymous environment: the registry cannot "
                    "track, review or archive it safely; define it in git and reference it "
                    "by name",
                    ref.path,
                    ref.line,
                )
            )
            continue
        assert ref.name is not None
        in_git = ref.name in desired.environments
        if not scope.ours(ref, in_git):
            continue
        out.append(_finding(ref, desired, state, created, latest, levels, in_git))
    return [d for d in out if d is not None]


def _finding(
    ref: Reference,
    desired: DesiredState,
    state: RegistryState | None,
    created: Mapping[str, str],
    latest: Mapping[str, str],
    levels: Levels,
    in_git: bool,
) -> Diagnostic | None:
    assert ref.name is not None
    container = state.containers.get(ref.name) if state is not None else None
    where = (ref.path, ref.line)
    if not in_git and container is None:
        if state is None:
            return None  # validate does not read the registry
        return _diagnostic(
            levels,
            "ref-unknown",
            ref,
            f"{ref.text!r} names {ref.name!r}, which is neither in git nor in the registry",
            *where,
        )
    if ref.form.floating:
        if ref.label != "latest":
            return _diagnostic(
                levels,
                "ref-unknown",
                ref,
                f"{ref.text!r}: environments have no label {ref.label!r} (only latest)",
                *where,
            )
        now = latest.get(ref.name)
        picks = f" (now {ref.name}:{now})" if now else ""
        return _diagnostic(
            levels,
            "ref-floating",
            ref,
            f"{ref.text!r} follows the latest version{picks}: each run may use another "
            "environment; pin a version for reproducible runs",
            *where,
        )
    version = ref.version
    assert version is not None
    if state is not None:
        registered = container.get(version) if container is not None else None
        if registered is None and created.get(ref.name) != version:
            return _diagnostic(
                levels,
                "ref-unknown",
                ref,
                f"{ref.text!r} pins {ref.name}:{version}, which is not registered (and this "
                "plan does not create it)",
                *where,
            )
        if registered is not None and (registered.archived or container.archived):  # type: ignore[union-attr]
            return _diagnostic(
                levels,
                "ref-archived",
                ref,
                f"{ref.text!r} pins {ref.name}:{version}, which is archived in the registry"
                + (f"; move to {latest[ref.name]}" if ref.name in latest else ""),
                *where,
            )
    target = latest.get(ref.name)
    if target is not None and target != version:
        return _diagnostic(
            levels,
            "ref-stale",
            ref,
            f"{ref.text!r} pins {ref.name}:{version}, but git makes {ref.name}:{target} "
            f"latest: move to {target} (`reconciler bump {ref.name}`)",
            *where,
        )
    return None


# ---------------------------------------------------------------------------- archives


def consumer_list(refs: Iterable[Reference]) -> str:
    """`a.yml:3 (azureml:x:1), b.py:9 (...)`: every one of them (an archive refusal must
    say what to move)."""
    return ", ".join(f"{r.where} ({r.text or r.form.value})" for r in refs)


def pinned_versions(index: ConsumerIndex) -> dict[str, set[str]]:
    """name -> the versions consumers pin (retention never archives them)."""
    out: dict[str, set[str]] = {}
    for ref in index.references:
        if ref.name is not None and ref.version is not None:
            out.setdefault(ref.name, set()).add(ref.version)
    return out


# ---------------------------------------------------------------------------- bumps


@dataclass(frozen=True, slots=True)
class Bump:
    reference: Reference
    to: str


@dataclass(frozen=True, slots=True)
class Skipped:
    reference: Reference
    reason: str


def plan_bumps(
    index: ConsumerIndex,
    targets: Mapping[str, str],
    include_code: bool = False,
) -> tuple[list[Bump], list[Skipped]]:
    """The pins to move: every pinned reference to a name in ``targets`` (name -> version)
    that pins another version. Code files only with ``include_code``."""
    bumps: list[Bump] = []
    skipped: list[Skipped] = []
    for ref in index.references:
        name = ref.name
        if name is None or name not in targets or not ref.form.pinned:
            continue
        if ref.version == targets[name]:
            continue
        to = targets[name]
        if ref.code and not include_code:
            skipped.append(Skipped(ref, f"code: not edited without --include-code (to {to})"))
        elif ref.offset is None:
            skipped.append(
                Skipped(ref, f"written across lines or with escapes: edit by hand (to {to})")
            )
        else:
            bumps.append(Bump(ref, to))
    return bumps, skipped


class BumpError(ValueError):
    """An edit would not land where the scan saw the reference (the file changed)."""


def apply_bumps(text: str, bumps: Iterable[Bump]) -> str:
    """``text`` with each bumped version replaced at its recorded position, and nothing
    else changed."""
    ordered = sorted(bumps, key=lambda b: b.reference.offset or 0, reverse=True)
    for bump in ordered:
        ref = bump.reference
        assert ref.offset is not None and ref.version is not None
        end = ref.offset + len(ref.version)
        if text[ref.offset : end] != ref.version:
            raise BumpError(f"{ref.where}: {ref.text!r} is no longer where it was read")
        text = text[: ref.offset] + bump.to + text[end:]
    return text


def check_yaml_bumps(before: str, after: str, bumps: Iterable[Bump]) -> str | None:
    """Read the edited YAML with a round-trip parser and confirm each edited key holds the
    new reference and every other value is unchanged; the problem, or None."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="rt", pure=True)
    try:
        old = list(yaml.load_all(before))
        new = list(yaml.load_all(after))
    except YAMLError as exc:
        return f"the edited file is not valid YAML: {str(exc).splitlines()[0]}"
    expected = {b.reference.key_path: b for b in bumps if b.reference.key_path}
    problems: list[str] = []
    _compare(old, new, "", expected, problems)
    return problems[0] if problems else None


def _compare(
    old: Any, new: Any, path: str, expected: Mapping[str, Bump], problems: list[str]
) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        if list(old) != list(new):
            problems.append(f"{path or 'document'}: keys changed")
            return
        for key in old:
            child = f"{path}.{key}" if path else str(key)
            _compare(old[key], new[key], child, expected, problems)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            problems.append(f"{path}: list length changed")
            return
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            # documents of a stream are top-level: no index in their key paths
            child = f"{path}[{index}]" if path else ""
            _compare(a, b, child, expected, problems)
    elif old != new:
        bump = expected.get(path)
        if bump is None or not isinstance(new, str):
            problems.append(f"{path}: changed unexpectedly")
            return
        ref = bump.reference
        wanted = ref.text[: len(ref.text) - len(ref.version or "")] + bump.to
        if wanted not in new:
            problems.append(f"{path}: does not hold {wanted!r} after the edit")
