"""Resolved environments kept between loads of a long-running reconciler.

Resolving an environment file reads only through the snapshot: the file itself, the
paths it looks up (its conda file, symlinks on the way) and the directories it lists (its
build context). Each result is kept with those paths. The next load compares the whole
new listing with the previous one; a result is reused only when no path it read, and no
file under a directory it listed, was added, removed or changed: the same reads would
give the same answers, so resolving again would give the same result.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.core.desired.snapshot import FileEntry, Snapshot

if TYPE_CHECKING:
    from reconciler.core.desired.types import DesiredEnvironment
    from reconciler.core.spec.diagnostics import Diagnostic


class Recording:
    """A snapshot that notes every path looked up and every directory listed (as
    ``directory/``: its result changes with any file below it, a lookup's only with the
    file at that very path)."""

    def __init__(self, inner: Snapshot) -> None:
        self.inner = inner
        self.reads: set[str] = set()

    @property
    def commit(self) -> str | None:
        return self.inner.commit

    @property
    def label(self) -> str:
        return self.inner.label

    def files_under(self, directory: str) -> list[FileEntry]:
        self.reads.add(directory + "/")
        return self.inner.files_under(directory)

    def lookup(self, path: str) -> FileEntry | None:
        self.reads.add(path)
        return self.inner.lookup(path)

    def read(self, entry: FileEntry) -> bytes:
        return self.inner.read(entry)  # by entry: the entry came from a recorded query

    def prefetch(self, entries: list[FileEntry]) -> None:
        self.inner.prefetch(entries)


@dataclass(frozen=True, slots=True)
class Resolved:
    entry: FileEntry
    reads: frozenset[str]
    desired: DesiredEnvironment | None
    references: tuple[str, ...]  # other than the file itself
    diagnostics: tuple[Diagnostic, ...]
    conda: bool = False  # a conda file, not an environment


@dataclass(slots=True)
class ResolveMemo:
    key: Any = None  # the selection: candidates depend on it
    listing: dict[str, FileEntry] = field(default_factory=dict)
    resolved: dict[str, Resolved] = field(default_factory=dict)
    matches: dict[str, bool] = field(default_factory=dict)  # path -> a candidate?
    # changed paths, and their directories as ``directory/`` (see Recording)
    touched: set[str] = field(default_factory=set)
    _next: dict[str, FileEntry] = field(default_factory=dict)
    # path -> a consumer file by its path alone (engine/consumers.py), under these settings
    consumer_key: Any = None
    consumer_paths: dict[str, bool] = field(default_factory=dict)

    def consumer_matches(self, key: Any) -> dict[str, bool]:
        """Which paths the consumer settings ``key`` accept, as far as asked before."""
        if key != self.consumer_key:
            self.consumer_key, self.consumer_paths = key, {}
        return self.consumer_paths

    def begin(self, key: Any, entries: list[FileEntry]) -> None:
        """Compare the snapshot's whole listing with the previous one."""
        if key != self.key:
            self.key = key
            self.listing, self.resolved, self.matches = {}, {}, {}
        old = self.listing
        new: dict[str, FileEntry] = {}
        changed: set[str] = set()
        for entry in entries:
            new[entry.path] = entry
            before = old.get(entry.path)
            if before is not entry and before != entry:
                changed.add(entry.path)
        if len(new) != len(old) or changed:
            changed.update(old.keys() - new.keys())
        touched = set(changed)
        for path in changed:
            while path:
                path = posixpath.dirname(path)
                touched.add(path + "/")
        self.touched = touched
        self._next = new

    def finish(self, resolved: dict[str, Resolved]) -> None:
        """The load is complete: its listing and results are what the next one compares
        with (a load that failed half way leaves the previous pair, still consistent)."""
        self.listing, self.resolved = self._next, resolved

    def get(self, entry: FileEntry) -> Resolved | None:
        found = self.resolved.get(entry.path)
        if found is None or (found.entry is not entry and found.entry != entry):
            return None
        if self.touched and not found.reads.isdisjoint(self.touched):
            return None
        return found
