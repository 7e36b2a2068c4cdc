"""Package-level differences between two contents: which conda and pip packages, conda
channels and pip indexes were added, removed or changed.

Reviewers read `numpy 1.26.4 -> 2.0.1` faster than a list-index diff of the conda file.
The packages come from the conda specification (conda and pip sections) and from the
`requirements*.txt` files of a local build context. This module does no I/O: the texts of
requirement files are passed in, keyed by git blob id (the engine reads them).
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.governance.packages import (
    Package,
    conda_channels,
    conda_packages,
    requirements_file,
)

CONDA_SOURCE = "conda_file"  # the `source` of entries from the conda specification
REQUIREMENTS_GLOB = "requirements*.txt"


@dataclass(frozen=True, slots=True)
class PackageChange:
    manager: str  # "conda" | "pip"
    name: str
    before: str | None  # the version as written ("" when unconstrained), None when absent
    after: str | None
    kind: str  # "added" | "removed" | "changed"
    source: str  # CONDA_SOURCE, or a requirements file's path inside the build context

    def to_dict(self) -> dict[str, Any]:
        from reconciler.core.spec.secrets import mask_text

        return {
            "manager": self.manager,
            "name": mask_text(self.name),
            "before": None if self.before is None else mask_text(self.before),
            "after": None if self.after is None else mask_text(self.after),
            "kind": self.kind,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class ChannelChange:
    manager: str  # "conda": a channel; "pip": a package index (`--index-url` and the like)
    channel: str
    kind: str  # "added" | "removed" | "changed" (only a masked credential in it changed)
    source: str

    def to_dict(self) -> dict[str, Any]:
        from reconciler.core.spec.secrets import mask_text

        return {
            "manager": self.manager,
            "channel": mask_text(self.channel),
            "kind": self.kind,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class PackageDiff:
    packages: tuple[PackageChange, ...] = ()
    channels: tuple[ChannelChange, ...] = ()
    unread: tuple[str, ...] = ()  # requirement files whose text was not available

    def __bool__(self) -> bool:
        return bool(self.packages or self.channels or self.unread)


def _by_name(packages: Iterable[Package]) -> dict[tuple[str, str], Package]:
    out: dict[tuple[str, str], Package] = {}
    for package in packages:
        out.setdefault((package.manager, package.name), package)  # the first entry wins
    return out


def diff_packages(
    before: Iterable[Package], after: Iterable[Package], source: str
) -> list[PackageChange]:
    old, new = _by_name(before), _by_name(after)
    out: list[PackageChange] = []
    for key in sorted(old.keys() | new.keys()):
        manager, name = key
        a, b = old.get(key), new.get(key)
        if a is None and b is not None:
            out.append(PackageChange(manager, name, None, b.version_label, "added", source))
        elif b is None and a is not None:
            out.append(PackageChange(manager, name, a.version_label, None, "removed", source))
        elif a is not None and b is not None and a.raw != b.raw:
            was, now = a.version_label, b.version_label
            if was == now:  # e.g. a channel prefix or a marker changed: show the entries
                was, now = a.raw, b.raw
            out.append(PackageChange(manager, name, was, now, "changed", source))
    return out


def diff_channels(
    before: Iterable[str], after: Iterable[str], manager: str, source: str
) -> list[ChannelChange]:
    from reconciler.core.spec.secrets import mask_text

    old, new = list(dict.fromkeys(before)), list(dict.fromkeys(after))
    removed = [c for c in old if c not in new]
    added = [c for c in new if c not in old]
    # The same index with another credential: one "changed" entry (shown masked) instead
    # of a removal and an addition that would read identically.
    masked_added = {mask_text(c): c for c in added}
    out: list[ChannelChange] = []
    for channel in removed:
        twin = masked_added.pop(mask_text(channel), None)
        if twin is not None and twin != channel:
            added.remove(twin)
            out.append(ChannelChange(manager, twin, "changed", source))
        else:
            out.append(ChannelChange(manager, channel, "removed", source))
    out += [ChannelChange(manager, c, "added", source) for c in added]
    return out


def requirement_blobs(content: Mapping[str, Any] | None) -> dict[str, str]:
    """Path inside the build context -> blob id of each `requirements*.txt` file."""
    build = content.get("build") if content is not None else None
    if not isinstance(build, Mapping):
        return {}
    out = {}
    for path, _mode, blob in build.get("files") or ():
        if fnmatch.fnmatchcase(posixpath.basename(str(path)), REQUIREMENTS_GLOB):
            out[str(path)] = str(blob)
    return out


def needed_blobs(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> set[str]:
    """Blob ids whose text ``content_diff`` needs: the requirement files that changed."""
    old, new = requirement_blobs(before), requirement_blobs(after)
    return {
        blob
        for files, other in ((old, new), (new, old))
        for path, blob in files.items()
        if other.get(path) != blob
    }


def _conda(content: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    conda = content.get("conda") if content is not None else None
    return conda if isinstance(conda, Mapping) else None


def content_diff(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    texts: Mapping[str, str],
) -> PackageDiff:
    """What changed package by package between two contents (``before`` None: everything
    in ``after`` is added). ``texts``: requirement file texts by blob id."""
    old_conda, new_conda = _conda(before), _conda(after)
    packages: list[PackageChange] = []
    channels: list[ChannelChange] = []
    if old_conda != new_conda:
        packages += diff_packages(
            conda_packages(old_conda), conda_packages(new_conda), CONDA_SOURCE
        )
        old_channels, old_indexes = conda_channels(old_conda)
        new_channels, new_indexes = conda_channels(new_conda)
        channels += diff_channels(old_channels, new_channels, "conda", CONDA_SOURCE)
        channels += diff_channels(old_indexes, new_indexes, "pip", CONDA_SOURCE)
    unread: list[str] = []
    old_files, new_files = requirement_blobs(before), requirement_blobs(after)
    for path in sorted(old_files.keys() | new_files.keys()):
        a, b = old_files.get(path), new_files.get(path)
        if a == b:
            continue
        if (a is not None and a not in texts) or (b is not None and b not in texts):
            unread.append(path)
            continue
        old_packages, old_index = requirements_file(texts[a]) if a is not None else ([], [])
        new_packages, new_index = requirements_file(texts[b]) if b is not None else ([], [])
        packages += diff_packages(old_packages, new_packages, path)
        channels += diff_channels(old_index, new_index, "pip", path)
    return PackageDiff(tuple(packages), tuple(channels), tuple(unread))


def diff_document(diff: PackageDiff | None) -> dict[str, Any]:
    """The JSON keys a change carries for its package diff (none when there is none)."""
    if not diff:
        return {}
    doc: dict[str, Any] = {
        "packages": [p.to_dict() for p in diff.packages],
        "channels": [c.to_dict() for c in diff.channels],
    }
    if diff.unread:
        doc["requirements_unread"] = list(diff.unread)
    return doc
