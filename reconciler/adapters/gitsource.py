"""Desired-state sources: a git working tree, any git ref (no checkout), a plain directory.

The working tree is listed with git's own index (``git ls-files``), so unchanged files
keep the blob ids git already knows and only modified or untracked files are hashed.
A ref is read through gitpython straight from the object database.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from reconciler.adapters.git_fingerprint import commit_of, worktree_fingerprint
from reconciler.adapters.worktree import (
    SKIP_DIRS,
    DiskReads,
    Listing,
    WorkTreeSnapshot,
    disk_entry,
    head,
    normalize_remote,
    run_git,
)
from reconciler.core.desired.snapshot import FileEntry
from reconciler.ports import SourceError


class DirectorySnapshot(DiskReads):
    """A plain directory that is not a git repository: every file is hashed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = f"directory {root}"
        self.commit: str | None = None
        found: dict[str, None] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
            rel = os.path.relpath(dirpath, root)
            for filename in filenames:
                found[filename if rel == "." else f"{rel}/{filename}".replace(os.sep, "/")] = None
            for dirname in list(dirnames):
                if (Path(dirpath) / dirname).is_symlink():
                    found[dirname if rel == "." else f"{rel}/{dirname}"] = None
        self._entries: dict[str, FileEntry | None] = {}
        self._listing = Listing(found)

    def lookup(self, path: str) -> FileEntry | None:
        if path not in self._entries:
            self._entries[path] = disk_entry(self.root, path)
        return self._entries[path]

    def files_under(self, directory: str) -> list[FileEntry]:
        out = []
        for path in self._listing.paths_under(directory):
            entry = self.lookup(path)
            if entry is not None:
                out.append(entry)
        return out


class RefSnapshot:
    """The files of one commit, read from git's object database: no checkout."""

    def __init__(self, root: Path, sha: str, ref: str) -> None:
        import git  # gitpython; imported here to keep it off the working-tree path

        try:
            self._repo = git.Repo(root)
            commit = self._repo.commit(sha)
        except (git.BadName, git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError) as exc:
            raise SourceError(f"cannot resolve {ref!r} in {root}: {exc}") from exc
        self.commit: str | None = commit.hexsha
        self.label = ref
        self._root = root
        self._blobs: dict[str, bytes] = {}
        listing = self._repo.git.ls_tree(
            "-r", "-z", "--full-tree", commit.hexsha, stdout_as_string=False
        )
        self._entries: dict[str, FileEntry] = {}
        for record in listing.decode("utf-8", "surrogateescape").split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            mode, kind, blob = meta.split(" ")
            if kind == "blob":
                self._entries[path] = FileEntry(path, blob, mode)
        self._listing = Listing(self._entries)

    def files_under(self, directory: str) -> list[FileEntry]:
        return [self._entries[p] for p in self._listing.paths_under(directory)]

    def lookup(self, path: str) -> FileEntry | None:
        return self._entries.get(path)

    def prefetch(self, entries: list[FileEntry]) -> None:
        """Read many blobs through one `git cat-file --batch` instead of one round trip each."""
        wanted = [e.blob_id for e in entries if e.blob_id not in self._blobs]
        if not wanted:
            return
        done = subprocess.run(
            ["git", "cat-file", "--batch"],
            cwd=self._root,
            check=False,
            input="\n".join(wanted).encode() + b"\n",
            capture_output=True,
        )
        if done.returncode != 0:
            return  # fall back to reading one by one
        data, position = done.stdout, 0
        for blob in wanted:
            end = data.index(b"\n", position)
            header = data[position:end].split(b" ")
            if len(header) != 3:  # "<id> missing"
                position = end + 1
                continue
            size = int(header[2])
            self._blobs[blob] = data[end + 1 : end + 1 + size]
            position = end + 1 + size + 1

    def read(self, entry: FileEntry) -> bytes:
        cached = self._blobs.pop(entry.blob_id, None)
        if cached is not None:
            return cached
        data: bytes = self._repo.odb.stream(bytes.fromhex(entry.blob_id)).read()
        return data

    def close(self) -> None:
        self._repo.close()


def _parent(path: str) -> str:
    """posixpath.dirname of a path as git lists it (relative, no doubled or trailing "/"),
    at a fraction of its cost."""
    return path.rpartition("/")[0]


def walk_directories(root: str, top: str) -> Iterator[tuple[str, bool]]:
    """Every directory from ``top`` down (relative to ``root``, "/"-separated), with
    whether it holds a .gitignore: what os.walk visits (no symlinked directory followed,
    an unreadable one left out, nothing under .git or .reconciler), by plain string joins
    (os.walk's path handling costs more than the listing itself at 10,000 folders)."""
    stack = [top]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as found:
                children = list(found)
        except OSError:
            continue
        has_ignore = False
        prefix = rel + "/" if rel else ""
        for child in children:
            name = child.name
            try:
                is_dir = child.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if name not in SKIP_DIRS and not child.is_symlink():
                    stack.append(prefix + name)
            elif name == ".gitignore":
                has_ignore = True
        yield rel, has_ignore


class GitSource:
    """The Source port for a repository directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.is_git = (root / ".git").exists()
        self._kept: Any = None  # a TreeIndex, once keep_listing() was called

    def keep_listing(self) -> None:
        """Keep the working tree's listing between snapshots, revalidated by stat data (for
        a long-running reconciler: each snapshot then costs a stat per file, not git's
        full listing)."""
        if self.is_git and self._kept is None:
            from reconciler.adapters.worktree_index import TreeIndex

            self._kept = TreeIndex(self.root)

    def hint(self, paths: frozenset[str] | None) -> None:
        """The working-tree paths that changed since the last snapshot (from file events),
        for the kept listing's next snapshot; None: unknown, it checks everything."""
        if self._kept is not None:
            self._kept.hint(paths)

    def read_blob(self, blob: str) -> bytes:
        """Any blob of the repository's history, by id (files of an older version)."""
        if not self.is_git:
            raise SourceError(f"{self.root} is not a git repository")
        try:
            return run_git(self.root, "cat-file", "blob", blob)
        except SourceError:
            raise SourceError(f"blob {blob} is not in {self.root}'s git history") from None

    def default_owner(self) -> str:
        """The repository's identity for ownership stamps: its origin URL (credentials
        removed), else its absolute path."""
        if self.is_git:
            try:
                url = run_git(self.root, "config", "--get", "remote.origin.url").decode().strip()
            except SourceError:
                url = ""
            if url:
                return normalize_remote(url)
        return str(self.root.resolve())

    def head(self) -> str | None:
        return head(self.root)

    def resolve(self, ref: str) -> str:
        if not self.is_git:
            raise SourceError(f"{self.root} is not a git repository; --ref needs one")
        # The same lookup a replayed plan checks its answer with (cli/replay.py).
        commit = commit_of(str(self.root), ref)
        if commit is None:
            raise SourceError(f"unknown git ref {ref!r} in {self.root}")
        return commit

    def fingerprint(self, ref: str | None, watch: list[str] | None = None) -> str | None:
        """A cheap identity of the files at ``ref``: equal fingerprints, equal files.

        For the working tree: see git_fingerprint.worktree_fingerprint (HEAD, git's index,
        the tracked files git sees modified, and the stat data of ``watch``). None when it
        cannot be trusted: no watch list yet, or a file changed a moment ago.
        """
        if ref is not None:
            return "commit:" + self.resolve(ref)
        if not self.is_git or watch is None:
            return None
        return worktree_fingerprint(str(self.root), watch)

    def watch_list(
        self,
        snapshot: object,
        root: str,
        references: frozenset[str],
        whole_tree: bool = False,
    ) -> list[str] | None:
        """What ``fingerprint`` must stat for a working-tree plan to stay valid: every
        directory of the selection and of referenced files, and the untracked files there.
        ``whole_tree`` (consumers are read from anywhere): also every directory holding a
        file git lists, whose mtime changes when a file appears there."""
        if not isinstance(snapshot, WorkTreeSnapshot):
            return None
        dirs: set[str] = set()
        if whole_tree:
            for path in snapshot.listed_paths():
                parent = _parent(path)
                while parent not in dirs:
                    dirs.add(parent)
                    parent = _parent(parent)
        ignores: set[str] = set()

        def walk(top: str) -> None:
            for rel, has_ignore in walk_directories(str(self.root), top):
                dirs.add(rel)
                if has_ignore:
                    ignores.add(posixpath.join(rel, ".gitignore"))

        walk(root)
        outside = {_parent(p) for p in references}
        for parent in sorted(outside):
            if parent not in dirs:
                walk(parent)  # a build context elsewhere: all of it, empty folders too
        # Ancestors: a new .gitignore there changes what counts. Each chain is climbed
        # only until it meets one climbed before.
        ancestors: set[str] = set()
        for parent in dirs:
            while parent:
                parent = _parent(parent)
                if parent in ancestors:
                    break
                ancestors.add(parent)
        ignores.update(f"{a}/.gitignore" if a else ".gitignore" for a in ancestors)
        prefixes = tuple(d + "/" for d in dirs if d)
        untracked = [p for p in snapshot.untracked if "" in dirs or p.startswith(prefixes)]
        return sorted(dirs) + sorted(ignores) + sorted(untracked)

    def list_files(self, snapshot: Any, match: Callable[[str], bool]) -> list[FileEntry]:
        """The files of a snapshot (working tree, ref or plain directory) whose path
        ``match`` accepts, with their blob ids (by which their scans are cached)."""
        return [e for e in snapshot.files_under("") if match(e.path)]

    def sizes(self, snapshot: Any, entries: list[FileEntry]) -> dict[str, int]:
        """Size of each file by blob id, without reading it (a huge file is refused
        before it is read): stat on disk, `git cat-file --batch-check` for a ref."""
        out: dict[str, int] = {}
        if isinstance(snapshot, RefSnapshot):
            wanted = sorted({e.blob_id for e in entries})
            if not wanted:
                return out
            done = subprocess.run(
                ["git", "cat-file", "--batch-check"],
                cwd=self.root,
                input="\n".join(wanted).encode() + b"\n",
                capture_output=True,
                check=False,
            )
            for line in done.stdout.decode("ascii", "replace").splitlines():
                parts = line.split(" ")
                if len(parts) == 3 and parts[2].isdigit():
                    out[parts[0]] = int(parts[2])
            return out
        for entry in entries:
            try:
                out[entry.blob_id] = (self.root / entry.path).lstat().st_size
            except OSError:
                continue
        return out

    def snapshot(self, ref: str | None) -> WorkTreeSnapshot | RefSnapshot | DirectorySnapshot:
        if ref is None:
            if not self.is_git:
                return DirectorySnapshot(self.root)
            if self._kept is not None:
                snapshot: WorkTreeSnapshot = self._kept.snapshot()
                return snapshot
            return WorkTreeSnapshot(self.root, self.head())
        return RefSnapshot(self.root, self.resolve(ref), ref)
