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
    from reconciler.core.desired.types import DesiredEnvironment, DesiredState
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
    changed: set[str] = field(default_factory=set)  # the changed paths alone
    _next: dict[str, FileEntry] = field(default_factory=dict)
    # The last complete load, for patching: its state (diagnostics as they were before
    # anyone added to them), every candidate path, and which results read each path.
    last: DesiredState | None = None
    last_diagnostics: tuple[Diagnostic, ...] = ()
    candidates: frozenset[str] = frozenset()
    _readers: dict[str, set[str]] | None = None
    patches: int = 0  # for tests: how many loads were patched from the last one
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
            self.last = None
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
        self.changed = changed
        self._next = new

    def finish(
        self, resolved: dict[str, Resolved], state: DesiredState, candidates: frozenset[str]
    ) -> None:
        """The load is complete: its listing and results are what the next one compares
        with (a load that failed half way leaves the previous pair, still consistent)."""
        self.listing, self.resolved = self._next, resolved
        self.last, self.candidates, self._readers = state, candidates, None
        self.last_diagnostics = tuple(state.diagnostics)

    def current(self, path: str) -> FileEntry | None:
        """The file at ``path`` in the listing being loaded (see begin)."""
        return self._next.get(path)

    def readers(self, touched: set[str]) -> set[str]:
        """The kept results that read any of ``touched`` (the index is built on first use
        after a complete load, then patched)."""
        if self._readers is None:
            index: dict[str, set[str]] = {}
            for path, done in self.resolved.items():
                for read in done.reads:
                    index.setdefault(read, set()).add(path)
            self._readers = index
        out: set[str] = set()
        for key in touched:
            found = self._readers.get(key)
            if found:
                out |= found
        return out

    def patched(self, results: list[Resolved], state: DesiredState) -> None:
        """A load patched from the last one: these results replace theirs."""
        index = self._readers
        for done in results:
            path = done.entry.path
            old = self.resolved.get(path)
            if index is not None:
                for read in old.reads if old is not None else ():
                    index[read].discard(path)
                for read in done.reads:
                    index.setdefault(read, set()).add(path)
            self.resolved[path] = done
        self.listing = self._next
        self.last = state
        self.patches += 1

    def get(self, entry: FileEntry) -> Resolved | None:
        found = self.resolved.get(entry.path)
        if found is None or (found.entry is not entry and found.entry != entry):
            return None
        if self.touched and not found.reads.isdisjoint(self.touched):
            return None
        return found
