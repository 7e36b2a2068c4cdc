"""The working tree's listing, kept between snapshots by a long-running reconciler and
revalidated by stat data, as git's own index is.

A full listing (git ls-files, diff-files, untracked files) costs hundreds of milliseconds
in a big repository. Kept instead: every listed file and every directory of the tree with
its stat data. A snapshot then stats them all; a file whose stat data changed is hashed
again, a directory whose stat data changed is listed again (a file added or removed
there), and git is asked only whether new files are ignored. Anything that changes what
git counts (its index, HEAD, refs, config, excludes, a .gitignore or .gitattributes) makes
the next snapshot a full listing. Stat data taken less than RACY_SECONDS after the change
it records is not trusted (a later write in the same clock tick would look the same): such
files and directories are read again every time until they are old enough.

A file watcher may instead name the paths that changed (``hint``), as git's fsmonitor
does: the next snapshot then reads only those files again and stats nothing else. A hint
that names a directory or a rule file cannot be mapped to files and falls back to the
stat check; git's control files are compared on every snapshot all the same.
"""

from __future__ import annotations

import os
import posixpath
import stat
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

from reconciler.adapters.git_fingerprint import RACY_SECONDS, control_files, git_dirs
from reconciler.adapters.worktree import (
    SKIP_DIRS,
    WorkTreeSnapshot,
    disk_entry,
    run_git,
)
from reconciler.adapters.worktree import head as git_head
from reconciler.core.desired.snapshot import FileEntry
from reconciler.ports import SourceError

StatKey = tuple[int, int, int, int, int]
# A change to one of these files changes what git lists (or how it hashes): full listing.
_GIT_RULE_FILES = frozenset({".gitignore", ".gitattributes"})


def _key(info: os.stat_result) -> StatKey:
    return (info.st_mtime_ns, info.st_ctime_ns, info.st_size, info.st_ino, info.st_mode)


class KeptSnapshot(WorkTreeSnapshot):
    """A working-tree snapshot over an already complete listing."""

    def __init__(
        self, root: Path, commit: str | None, entries: list[FileEntry], untracked: set[str]
    ) -> None:
        super().__init__(root, commit)
        self._entries = entries  # sorted by path
        self._paths = [e.path for e in entries]
        self._by_path = {e.path: e for e in entries}
        self._untracked = untracked

    @property
    def untracked(self) -> set[str]:
        return self._untracked

    def files_under(self, directory: str) -> list[FileEntry]:
        if not directory:
            return list(self._entries)
        prefix = directory.rstrip("/") + "/"
        start = bisect_left(self._paths, prefix)
        end = bisect_left(self._paths, prefix[:-1] + "0", start)  # "0" sorts right after "/"
        return self._entries[start:end]

    def lookup(self, path: str) -> FileEntry | None:
        return self._by_path.get(path)


class TreeIndex:
    def __init__(self, root: Path, racy_seconds: float = RACY_SECONDS) -> None:
        self.root = root
        self.racy_ns = int(racy_seconds * 1e9)
        self.full_loads = 0  # for tests: how often the whole tree was listed by git
        self.hinted_loads = 0  # for tests: how often only hinted paths were read again
        self._git_dirs: tuple[str, str] | None = None
        self._control: tuple[Any, ...] | None = None
        self._head: str | None = None
        self._entries: dict[str, FileEntry] = {}
        self._files: dict[str, StatKey | None] = {}  # None: too fresh to trust
        self._dirs: dict[str, StatKey | None] = {}
        self._tracked: set[str] = set()
        self._untracked: set[str] = set()
        self._hasher: Any = None
        self._sorted: list[FileEntry] | None = None
        self._hints: frozenset[str] | None = None  # for the next snapshot only
        self._hinted = False

    # -- what git's answer depends on besides the files ----------------------------------

    def _control_files(self) -> list[str]:
        if self._git_dirs is None:
            self._git_dirs = git_dirs(str(self.root))
            if self._git_dirs is None:
                raise SourceError(f"{self.root} is not a git repository")
        git_dir, common = self._git_dirs
        try:
            head = Path(git_dir, "HEAD").read_bytes()
        except OSError:
            head = b""
        return control_files(git_dir, common, head)

    def _signature(self, fresh_after: int) -> tuple[Any, ...] | None:
        """Stat data of git's control files; None if one is too fresh to trust."""
        keys: list[Any] = []
        for path in self._control_files():
            try:
                info = os.stat(path)
            except OSError:
                keys.append((path, None))
                continue
            if info.st_mtime_ns > fresh_after or info.st_ctime_ns > fresh_after:
                return None
            keys.append((path, _key(info)))
        return tuple(keys)

    # -- listing ---------------------------------------------------------------------

    def hint(self, paths: frozenset[str] | None) -> None:
        """The only paths (relative to the root) that changed since the last snapshot, as
        a file watcher saw them; None: unknown, the next snapshot checks everything. Hints
        not taken yet (a reconcile that failed before its snapshot) are added to."""
        if self._hinted:
            paths = None if paths is None or self._hints is None else self._hints | paths
        self._hints, self._hinted = paths, True

    def snapshot(self) -> KeptSnapshot:
        fresh_after = time.time_ns() - self.racy_ns
        hints = self._hints if self._hinted else None
        self._hints, self._hinted = None, False
        control = self._signature(fresh_after)
        try:
            if (
                control is None
                or control != self._control
                or not self._refresh_some(hints, fresh_after)
            ):
                self._full_load(fresh_after)
                self._control = control
        except BaseException:
            self._control = None  # left half updated: the next snapshot lists everything
            raise
        if self._sorted is None:
            self._sorted = [self._entries[p] for p in sorted(self._entries)]
        return KeptSnapshot(self.root, self._head, self._sorted, set(self._untracked))

    def _trusted(self, info: os.stat_result, fresh_after: int) -> StatKey | None:
        if info.st_mtime_ns > fresh_after or info.st_ctime_ns > fresh_after:
            return None
        return _key(info)

    def _full_load(self, fresh_after: int) -> None:
        self.full_loads += 1
        head = git_head(self.root)
        listing = WorkTreeSnapshot(self.root, head)
        entries = listing.files_under("")
        self._head = head
        self._hasher = listing._git_hasher()
        self._untracked = set(listing.untracked)
        self._tracked = set(listing._known) - self._untracked
        self._entries = {e.path: e for e in entries}
        self._sorted = entries
        self._files = {}
        for path in self._entries:
            try:
                info = os.lstat(self.root / path)
            except OSError:
                self._files[path] = None
                continue
            self._files[path] = self._trusted(info, fresh_after)
        self._dirs = {}
        self._walk("", fresh_after, [])

    def _walk(self, top: str, fresh_after: int, found: list[str]) -> None:
        """Record ``top`` and every directory below it; the files met go to ``found``."""
        pending = [top]
        while pending:
            rel = pending.pop()
            try:
                info = os.lstat(self.root / rel if rel else self.root)
                children = list(os.scandir(self.root / rel if rel else self.root))
            except OSError:
                continue
            self._dirs[rel] = self._trusted(info, fresh_after)
            for child in children:
                path = f"{rel}/{child.name}" if rel else child.name
                if child.is_dir(follow_symlinks=False):
                    if child.name == ".git" or (not rel and child.name in SKIP_DIRS):
                        continue
                    pending.append(path)
                else:
                    found.append(path)

    def _refresh_some(self, hints: frozenset[str] | None, fresh_after: int) -> bool:
        """The hinted files read again, or everything checked by stat data without hints;
        False: a full listing is needed."""
        if hints is None:
            return self._refresh(fresh_after)
        files: list[str] = []
        new: list[str] = []
        for path in hints:
            if path.split("/", 1)[0] in SKIP_DIRS:
                continue
            if posixpath.basename(path) in _GIT_RULE_FILES or path in self._dirs:
                return self._refresh(fresh_after)
            try:
                info = os.lstat(self.root / path)
            except OSError:
                info = None
            if info is not None and stat.S_ISDIR(info.st_mode):
                return self._refresh(fresh_after)  # a new or renamed directory
            if path in self._files:
                files.append(path)
            elif info is not None:
                new.append(path)
        self.hinted_loads += 1
        for path in files:
            self._update(path, fresh_after)
        # The parents keep their old stat data: a later stat check lists them again.
        return self._add(new, fresh_after)

    def _refresh(self, fresh_after: int) -> bool:
        """Bring the kept listing up to date by stat data; False: a full listing is needed."""
        base = str(self.root) + "/"  # plain strings: pathlib costs more than the stat
        new_files: list[str] = []
        for directory, key in list(self._dirs.items()):
            if directory not in self._dirs:
                continue  # dropped with a parent below
            try:
                info = os.lstat(base + directory)
            except OSError:
                info = None
            if info is not None and key is not None and _key(info) == key:
                continue
            if info is None or not stat.S_ISDIR(info.st_mode):
                if not directory:
                    return False
                self._drop_tree(directory)
                parent = posixpath.dirname(directory)
                new_files.append(directory)  # maybe a file or a symlink now
                self._dirs[parent] = None  # listed again below, if not done yet
                continue
            if not self._rescan(directory, info, fresh_after, new_files):
                return False
        changed: set[str] = set()
        for path, key in self._files.items():
            try:
                info = os.lstat(base + path)
            except OSError:
                info = None
            if info is not None and key is not None and _key(info) == key:
                continue
            changed.add(path)
        for path in changed:
            if posixpath.basename(path) in _GIT_RULE_FILES:
                return False
            self._update(path, fresh_after)
        return self._add(new_files, fresh_after)

    def _rescan(
        self, directory: str, info: os.stat_result, fresh_after: int, new_files: list[str]
    ) -> bool:
        try:
            children = list(os.scandir(self.root / directory if directory else self.root))
        except OSError:
            return False
        self._dirs[directory] = self._trusted(info, fresh_after)
        prefix = directory + "/" if directory else ""
        subdirs = set()
        for child in children:
            path = prefix + child.name
            if child.is_dir(follow_symlinks=False):
                if child.name == ".git" or (not directory and child.name in SKIP_DIRS):
                    continue
                subdirs.add(path)
                if path not in self._dirs:
                    self._walk(path, fresh_after, new_files)
            elif path not in self._files:
                new_files.append(path)
        gone = [
            d for d in self._dirs if d and posixpath.dirname(d) == directory and d not in subdirs
        ]
        for path in gone:
            self._drop_tree(path)
        return True

    def _drop_tree(self, directory: str) -> None:
        prefix = directory + "/"
        for path in [d for d in self._dirs if d == directory or d.startswith(prefix)]:
            del self._dirs[path]
        for path in [p for p in self._files if p.startswith(prefix)]:
            self._forget(path)

    def _forget(self, path: str) -> None:
        self._files.pop(path, None)
        self._untracked.discard(path)
        if self._entries.pop(path, None) is not None:
            self._sorted = None

    def _update(self, path: str, fresh_after: int) -> None:
        """Stat and hash one listed file again."""
        full = self.root / path
        entry = disk_entry(self.root, path, self._hasher)
        if entry is None:
            self._forget(path)
            return
        try:
            info = os.lstat(full)
        except OSError:
            self._forget(path)
            return
        self._files[path] = self._trusted(info, fresh_after)
        old = self._entries.get(path)
        if old == entry:
            return  # same content: the kept entry stays (the desired-state memo checks identity)
        self._entries[path] = entry
        if old is None or self._sorted is None:
            self._sorted = None  # a new path: sorted again
            return
        # same path, new content: a copy (snapshots handed out keep their list)
        out = list(self._sorted)
        out[bisect_left([e.path for e in out], path)] = entry
        self._sorted = out

    def _add(self, paths: list[str], fresh_after: int) -> bool:
        """Files that appeared: listed if git tracks them or does not ignore them."""
        paths = [p for p in dict.fromkeys(paths) if p not in self._files]
        if not paths:
            return True
        if any(posixpath.basename(p) in _GIT_RULE_FILES for p in paths):
            return False
        untracked = [p for p in paths if p not in self._tracked]
        listed: set[str] = set()
        if untracked:
            parents = sorted({posixpath.dirname(p) for p in untracked})
            specs = [f"{p}/" if p else "." for p in parents]
            args = ("--literal-pathspecs", "ls-files", "-o", "-z", "--exclude-standard", "--")
            out = run_git(self.root, *args, *specs)
            listed = set(out.decode("utf-8", "surrogateescape").split("\0"))
        for path in paths:
            if path in self._tracked or path in listed:
                if path not in self._tracked:
                    self._untracked.add(path)
                self._files[path] = None
                self._update(path, fresh_after)
                if path not in self._entries:
                    self._files.pop(path, None)
                    self._untracked.discard(path)
        return True
