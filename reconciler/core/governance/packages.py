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
    build: str = ""  # conda build string, when given

    @property
    def version_label(self) -> str:
        """The version as a reader writes it: `1.26.4` for an exact pin (`==1.26.4`,
        conda's `=1.26.4`), the constraint otherwise (`>=1.2`), "" when none."""
        spec = self.spec
        if spec.startswith("==") and "," not in spec:
            spec = spec[2:]
        elif self.manager == "conda" and spec.endswith(".*") and spec[:1].isalnum():
            spec = spec[:-2]  # conda's fuzzy `=1.26.4` reads back as 1.26.4.*
        if not spec and "://" in self.raw:
            spec = self.raw  # a URL or VCS reference: the reference is the version
        return f"{spec} {self.build}".strip() if self.build else spec

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
    return Package("conda", name, version, entry, pinned, channel, build=build)


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


PIP_INDEX_OPTIONS = ("--index-url", "--extra-index-url", "-i", "--find-links", "-f")


def pip_index(entry: str) -> str | None:
    """The index of a pip option line (`--index-url URL`, `-i URL`, `--find-links=URL`)."""
    text = entry.split(" #", 1)[0].strip()
    for option in PIP_INDEX_OPTIONS:
        if text == option or not text.startswith(option):
            continue
        rest = text[len(option) :]
        if rest[:1] in ("=", " ", "\t"):
            value = rest[1:].strip()
            return value or None
    return None


def requirement_lines(text: str) -> list[str]:
    """The logical lines of a pip requirements file: continuations joined, comments and
    blank lines dropped."""
    out: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = pending + line
        pending = ""
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        stripped = stripped.split(" #", 1)[0].strip()
        if stripped:
            out.append(stripped)
    if pending.strip():
        out.append(pending.strip())
    return out


def requirements_file(text: str) -> tuple[list[Package], list[str]]:
    """The packages and package indexes of a requirements*.txt file."""
    packages: list[Package] = []
    indexes: list[str] = []
    for line in requirement_lines(text):
        index = pip_index(line)
        if index is not None:
            indexes.append(index)
        elif (package := _pip(line)) is not None:
            packages.append(package)
    return packages, indexes


def conda_channels(conda: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    """A conda specification's channels, and the pip indexes of its pip section."""
    if not isinstance(conda, Mapping):
        return [], []
    channels = [str(c) for c in conda.get("channels") or () if isinstance(c, str | int | float)]
    indexes: list[str] = []
    for item in conda.get("dependencies") or ():
        if isinstance(item, Mapping):
            for entry in item.get("pip") or ():
                if isinstance(entry, str) and (index := pip_index(entry)) is not None:
                    indexes.append(index)
    return channels, indexes


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
