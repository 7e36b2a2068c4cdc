"""Desired-state sources: a git working tree, any git ref (no checkout), a plain directory.

The working tree is listed with git's own index (``git ls-files``), so unchanged files
keep the blob ids git already knows and only modified or untracked files are hashed.
A ref is read through gitpython straight from the object database.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import subprocess
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

from reconciler.core.snapshot import EXECUTABLE_MODE, SYMLINK_MODE, FileEntry
from reconciler.ports import SourceError

_SKIP_DIRS = frozenset({".git", ".reconciler"})


def blob_id(content: bytes) -> str:
    """The id git gives this content as a blob."""
    header = f"blob {len(content)}\0".encode()
    return hashlib.sha1(header + content, usedforsecurity=False).hexdigest()


def _git(root: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise SourceError("git is not installed") from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SourceError(f"git {' '.join(args)}: {message[-1] if message else 'failed'}")
    return done.stdout


def _git_many(root: Path, *commands: tuple[str, ...]) -> list[bytes]:
    """Run several read-only git commands at once (they are independent)."""
    try:
        running = [
            subprocess.Popen(
                ["git", *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for args in commands
        ]
    except FileNotFoundError as exc:
        raise SourceError("git is not installed") from exc
    outputs = []
    for args, process in zip(commands, running, strict=True):
        out, err = process.communicate()
        if process.returncode != 0:
            message = err.decode("utf-8", "replace").strip().splitlines()
            raise SourceError(f"git {' '.join(args)}: {message[-1] if message else 'failed'}")
        outputs.append(out)
    return outputs


# A file changed less than this long ago may change again within the same timestamp tick
# (git's "racy clean" problem): a fingerprint that includes one is not trusted.
RACY_SECONDS = 2.0


def normalize_remote(url: str) -> str:
    """`https://user:token@Host/org/repo.git` and `git@host:org/repo` -> `host/org/repo`."""
    text = url.strip()
    _, sep, rest = text.partition("://")
    if not sep:
        rest = text
        if ":" in rest and "@" in rest.split(":", 1)[0]:  # scp-like git@host:org/repo
            rest = rest.replace(":", "/", 1)
    rest = rest.rsplit("@", 1)[-1] if "@" in rest.split("/", 1)[0] else rest
    host, _, path = rest.partition("/")
    return f"{host.lower()}/{path}".removesuffix("/").removesuffix(".git")


def find_repo_root(start: Path) -> Path | None:
    try:
        out = _git(start, "rev-parse", "--show-toplevel")
    except SourceError:
        return None
    return Path(out.decode().strip())


class _Listing:
    """Sorted paths with prefix queries; shared by every snapshot kind."""

    def __init__(self, entries: dict[str, Any]) -> None:
        self._entries = entries
        self._sorted = sorted(entries)

    def paths_under(self, directory: str) -> list[str]:
        if not directory:
            return list(self._sorted)
        prefix = directory.rstrip("/") + "/"
        start = bisect_left(self._sorted, prefix)
        out = []
        for path in self._sorted[start:]:
            if not path.startswith(prefix):
                break
            out.append(path)
        return out


def _inside(root: Path, path: str) -> bool:
    """No directory on the way to ``path`` is a symlink (lstat of the file itself would
    follow a symlinked parent out of the repository)."""
    parent = posixpath.dirname(path)
    if not parent:
        return True
    expected = os.path.join(os.path.realpath(root), parent)
    return os.path.realpath(root / parent) == expected


def _disk_entry(root: Path, path: str, hasher: Any = None) -> FileEntry | None:
    full = root / path
    if not _inside(root, path):
        return None  # reached through a symlinked directory: not a file of this tree
    try:
        info = full.lstat()
    except OSError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return FileEntry(path, blob_id(os.readlink(full).encode()), SYMLINK_MODE)
    if not stat.S_ISREG(info.st_mode):
        return None
    mode = EXECUTABLE_MODE if info.st_mode & 0o111 else "100644"
    blob = hasher(path) if hasher is not None else blob_id(full.read_bytes())
    return FileEntry(path, blob, mode)


class _DiskReads:
    root: Path

    def prefetch(self, entries: list[FileEntry]) -> None:
        return None  # reading a file from disk on demand is as fast as it gets

    def read(self, entry: FileEntry) -> bytes:
        full = self.root / entry.path
        try:
            if entry.is_symlink:
                return os.readlink(full).encode()
            return full.read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read {entry.path}: {exc.strerror}") from exc


class WorkTreeSnapshot(_DiskReads):
    """The files on disk in a git working tree (tracked, modified and untracked)."""

    def __init__(self, root: Path, commit: str | None) -> None:
        self.root = root
        self.label = "working tree"
        self.commit = commit
        self._listing: _Listing | None = None
        self._known: dict[str, FileEntry | None] = {}
        self._dirty: set[str] = set()
        self._untracked: set[str] = set()
        self._uses_filters: bool | None = None

    def _git_hasher(self) -> Any:
        """With eol conversion or clean filters, only git knows the blob id a modified
        file will have once committed; without them, hashing here is the same and faster."""
        if self._uses_filters is None:
            attributes = any(p.endswith(".gitattributes") for p in self._known)
            try:
                autocrlf = _git(self.root, "config", "--get", "core.autocrlf").strip()
            except SourceError:
                autocrlf = b""
            self._uses_filters = attributes or autocrlf not in (b"", b"false")
        if not self._uses_filters:
            return None
        return lambda path: _git(self.root, "hash-object", "--", path).decode().strip()

    @property
    def untracked(self) -> set[str]:
        self._load()
        return self._untracked

    def _load(self) -> _Listing:
        if self._listing is not None:
            return self._listing
        index, changed_raw, untracked_raw = _git_many(
            self.root,
            ("ls-files", "-s", "-z"),
            ("diff-files", "--name-only", "-z"),
            ("ls-files", "-o", "-z", "--exclude-standard"),
        )
        changed = set(changed_raw.decode("utf-8", "surrogateescape").split("\0"))
        untracked = untracked_raw.decode("utf-8", "surrogateescape").split("\0")
        for record in index.decode("utf-8", "surrogateescape").split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            mode, blob, _stage = meta.split(" ")
            if mode == "160000":
                continue  # submodule
            if path in changed:
                self._dirty.add(path)
                self._known[path] = None
            else:
                self._known[path] = FileEntry(path, blob, mode)
        for path in untracked:
            if path and path.split("/", 1)[0] not in _SKIP_DIRS:
                self._dirty.add(path)
                self._untracked.add(path)
                self._known[path] = None
        self._listing = _Listing(self._known)
        return self._listing

    def _entry(self, path: str) -> FileEntry | None:
        self._load()
        entry = self._known.get(path)
        if entry is None and path in self._dirty:
            entry = _disk_entry(self.root, path, self._git_hasher())
            if entry is None:
                self._dirty.discard(path)  # deleted in the working tree
            self._known[path] = entry
        return entry

    def files_under(self, directory: str) -> list[FileEntry]:
        out = []
        for path in self._load().paths_under(directory):
            entry = self._entry(path)
            if entry is not None:
                out.append(entry)
        return out

    def lookup(self, path: str) -> FileEntry | None:
        return self._entry(path)


class DirectorySnapshot(_DiskReads):
    """A plain directory that is not a git repository: every file is hashed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = f"directory {root}"
        self.commit: str | None = None
        found: dict[str, None] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
            rel = os.path.relpath(dirpath, root)
            for filename in filenames:
                found[filename if rel == "." else f"{rel}/{filename}".replace(os.sep, "/")] = None
            for dirname in list(dirnames):
                if (Path(dirpath) / dirname).is_symlink():
                    found[dirname if rel == "." else f"{rel}/{dirname}"] = None
        self._entries: dict[str, FileEntry | None] = {}
        self._listing = _Listing(found)

    def lookup(self, path: str) -> FileEntry | None:
        if path not in self._entries:
            self._entries[path] = _disk_entry(self.root, path)
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
        self._listing = _Listing(self._entries)

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

    def read_blob(self, blob: str) -> bytes:
        """Any blob of the repository's history, by id (files of an older version)."""
        if not self.is_git:
            raise SourceError(f"{self.root} is not a git repository")
        try:
            return _git(self.root, "cat-file", "blob", blob)
        except SourceError:
            raise SourceError(f"blob {blob} is not in {self.root}'s git history") from None

    def default_owner(self) -> str:
        """The repository's identity for ownership stamps: its origin URL (credentials
        removed), else its absolute path."""
        if self.is_git:
            try:
                url = _git(self.root, "config", "--get", "remote.origin.url").decode().strip()
            except SourceError:
                url = ""
            if url:
                return normalize_remote(url)
        return str(self.root.resolve())

    def head(self) -> str | None:
        try:
            return _git(self.root, "rev-parse", "--verify", "-q", "HEAD").decode().strip()
        except SourceError:
            return None  # a repository with no commit yet

    def resolve(self, ref: str) -> str:
        if not self.is_git:
            raise SourceError(f"{self.root} is not a git repository; --ref needs one")
        try:
            return (
                _git(self.root, "rev-parse", "--verify", "-q", ref + "^{commit}").decode().strip()
            )
        except SourceError:
            raise SourceError(f"unknown git ref {ref!r} in {self.root}") from None

    def fingerprint(self, ref: str | None, watch: list[str] | None = None) -> str | None:
        """A cheap identity of the files at ``ref``: equal fingerprints, equal files.

        For the working tree: HEAD, git's index, the tracked files git sees modified (by
        their stat data), and the stat data of ``watch`` (the directories of the selection,
        whose mtimes change when files appear or vanish, and its untracked files). None
        when it cannot be trusted: no watch list yet, or a file changed a moment ago.
        """
        if ref is not None:
            return "commit:" + self.resolve(ref)
        if not self.is_git or watch is None:
            return None
        try:
            head, changed = _git_many(
                self.root,
                ("rev-parse", "--absolute-git-dir", "HEAD"),
                ("diff-files", "--name-only", "-z"),
            )
        except SourceError:
            return None  # e.g. no commit yet
        git_dir, _, head_sha = head.decode().strip().partition("\n")
        digest = hashlib.sha256(head_sha.encode())
        fresh_after = (time.time() - RACY_SECONDS) * 1e9
        paths = [os.path.join(git_dir, "index"), os.path.join(git_dir, "info", "exclude")]
        paths += [
            str(self.root / p) for p in changed.decode("utf-8", "surrogateescape").split("\0") if p
        ]
        paths += [str(self.root / p) if p else str(self.root) for p in watch]
        for path in paths:
            try:
                info = os.lstat(path)
            except OSError:
                digest.update(f"{path}:missing\n".encode())
                continue
            if info.st_mtime_ns > fresh_after:
                return None
            digest.update(
                f"{path}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}:{info.st_mode}:"
                f"{info.st_ino}\n".encode()
            )
        return "worktree:" + digest.hexdigest()

    def watch_list(
        self, snapshot: object, root: str, references: frozenset[str]
    ) -> list[str] | None:
        """What ``fingerprint`` must stat for a working-tree plan to stay valid: every
        directory of the selection and of referenced files, and the untracked files there."""
        if not isinstance(snapshot, WorkTreeSnapshot):
            return None
        dirs: set[str] = set()
        ignores: list[str] = []

        def walk(top: str) -> None:
            for dirpath, dirnames, filenames in os.walk(self.root / top if top else self.root):
                dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
                rel = os.path.relpath(dirpath, self.root)
                rel = "" if rel == "." else rel.replace(os.sep, "/")
                dirs.add(rel)
                if ".gitignore" in filenames:
                    ignores.append(posixpath.join(rel, ".gitignore"))

        walk(root)
        outside = {posixpath.dirname(p) for p in references}
        for parent in sorted(outside):
            if parent not in dirs:
                walk(parent)  # a build context elsewhere: all of it, empty folders too
        for parent in list(dirs):  # ancestors: a new .gitignore there changes what counts
            while parent:
                parent = posixpath.dirname(parent)
                ignores.append(posixpath.join(parent, ".gitignore"))
        prefixes = tuple(d + "/" for d in dirs if d)
        untracked = [p for p in snapshot.untracked if "" in dirs or p.startswith(prefixes)]
        return sorted(dirs) + sorted(set(ignores)) + sorted(untracked)

    def snapshot(self, ref: str | None) -> WorkTreeSnapshot | RefSnapshot | DirectorySnapshot:
        if ref is None:
            if not self.is_git:
                return DirectorySnapshot(self.root)
            if self._kept is not None:
                snapshot: WorkTreeSnapshot = self._kept.snapshot()
                return snapshot
            return WorkTreeSnapshot(self.root, self.head())
        return RefSnapshot(self.root, self.resolve(ref), ref)
