"""The packages of a conda specification, as data: conda match specs (parsed by rattler,
the conda ecosystem's own library) and pip requirements (parsed by `packaging`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PIP_OPTION_PREFIXES = ("-", "--")


@dataclass(frozen=True, slots=True)
class Package:
    manager: str  # "conda" | "pip"
    name: str  # normalised: lower case, `_` and `.` as `-` for pip
    spec: str  # the version constraint as written ("" when none)
    raw: str  # the entry as written in the specification
    pinned: bool  # exactly one version (`==1.2.3`, `=1.2.3=build`, a URL at a fixed ref)
    channel: str | None = None
    error: str | None = None  # could not be parsed: why

    @property
    def constrained(self) -> bool:
        return bool(self.spec)


def _conda(entry: str) -> Package:
    from rattler import MatchSpec

    try:
        spec = MatchSpec(entry)
    except Exception as exc:  # rattler raises its own InvalidMatchSpecError family
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Package("conda", entry.split()[0].lower(), "", entry, False, error=reason)
    name = spec.name.normalized if spec.name else entry
    version = str(spec.version) if spec.version is not None else ""
    exact = version.startswith("==") and "*" not in version and "," not in version
    # `numpy=1.26.4=py311_0`: a version with a build string is one exact package
    build = spec.build or ""
    pinned = exact or (bool(build) and bool(version) and "*" not in build)
    channel = spec.channel.name if spec.channel is not None else None
    return Package("conda", name, version, entry, pinned, channel)


def _pip(entry: str) -> Package | None:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    text = entry.split(" #", 1)[0].strip()
    if not text or text.startswith(PIP_OPTION_PREFIXES):
        return None  # `--index-url ...`, `-r file`: options, not packages
    if "://" in text and "@" not in text.split("://", 1)[0] and " @ " not in text:
        # a bare URL or VCS reference: pinned when it names a fixed ref or file
        return Package("pip", text, "", entry, "@" in text.rsplit("/", 1)[-1])
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        return Package("pip", text.lower(), "", entry, False, error=str(exc).splitlines()[0])
    specifiers = list(req.specifier)
    pinned = bool(req.url) or (
        len(specifiers) == 1
        and specifiers[0].operator in ("==", "===")
        and not specifiers[0].version.endswith(".*")
    )
    return Package("pip", canonicalize_name(req.name), str(req.specifier), entry, pinned)


def conda_packages(conda: Mapping[str, Any] | None) -> list[Package]:
    """Every package of a conda specification: its conda entries, then its pip section."""
    if not isinstance(conda, Mapping):
        return []
    out: list[Package] = []
    for item in conda.get("dependencies") or ():
        if isinstance(item, str):
            out.append(_conda(item))
        elif isinstance(item, Mapping):
            for entry in item.get("pip") or ():
                if isinstance(entry, str) and (package := _pip(entry)) is not None:
                    out.append(package)
    return out
