"""The working tree as git sees it: listed with git's own index (``git ls-files``), so
unchanged files keep the blob ids git already knows and only modified or untracked files
are hashed. Shared by the git source and the kept listing (worktree_index.py)."""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import subprocess
from bisect import bisect_left
from pathlib import Path
from typing import Any

from reconciler.core.desired.snapshot import EXECUTABLE_MODE, SYMLINK_MODE, FileEntry
from reconciler.core.spec.secrets import mask_text
from reconciler.ports import SourceError

SKIP_DIRS = frozenset({".git", ".reconciler"})


def blob_id(content: bytes) -> str:
    """The id git gives this content as a blob."""
    header = f"blob {len(content)}\0".encode()
    return hashlib.sha1(header + content, usedforsecurity=False).hexdigest()


def run_git(root: Path, *args: str, timeout: float | None = None) -> bytes:
    """What a git command printed; SourceError with git's last word (credentials in a
    remote's URL masked) when it fails or gives no answer within ``timeout`` seconds."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, check=False, timeout=timeout
        )
    except FileNotFoundError as exc:
        raise SourceError("git is not installed") from exc
    except subprocess.TimeoutExpired:
        raise SourceError(f"git {args[0]}: no answer within {timeout:g} s") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = message[-1] if message else "failed"
        raise SourceError(mask_text(f"git {' '.join(args)}: {why}"))
    return done.stdout


def run_git_many(root: Path, *commands: tuple[str, ...]) -> list[bytes]:
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
        out = run_git(start, "rev-parse", "--show-toplevel")
    except SourceError:
        return None
    return Path(out.decode().strip())


class Listing:
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


def disk_entry(root: Path, path: str, hasher: Any = None) -> FileEntry | None:
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


class DiskReads:
    root: Path
    # Files are read straight from disk, through no shared handle: a process forked from
    # this one may read them itself (the parse workers do).
    reads_from_disk = True

    def prefetch(self, entries: list[FileEntry]) -> None:
        return None  # reading a file from disk on demand is as fast as it gets

    def read(self, entry: FileEntry) -> bytes:
        full = os.path.join(self.root, entry.path)  # plain strings: 20,000 reads on a cold run
        try:
            if entry.is_symlink:
                return os.readlink(full).encode()
            with open(full, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise SourceError(f"cannot read {entry.path}: {exc.strerror}") from exc


class WorkTreeSnapshot(DiskReads):
    """The files on disk in a git working tree (tracked, modified and untracked)."""

    def __init__(self, root: Path, commit: str | None) -> None:
        self.root = root
        self.label = "working tree"
        self.commit = commit
        self._listing: Listing | None = None
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
                autocrlf = run_git(self.root, "config", "--get", "core.autocrlf").strip()
            except SourceError:
                autocrlf = b""
            self._uses_filters = attributes or autocrlf not in (b"", b"false")
        if not self._uses_filters:
            return None
        return lambda path: run_git(self.root, "hash-object", "--", path).decode().strip()

    def listed_paths(self) -> list[str]:
        """Every path git lists here (tracked and untracked), deleted ones included."""
        return list(self._load().paths_under(""))

    @property
    def untracked(self) -> set[str]:
        self._load()
        return self._untracked

    def _load(self) -> Listing:
        if self._listing is not None:
            return self._listing
        index, changed_raw, untracked_raw = run_git_many(
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
            if path and path.split("/", 1)[0] not in SKIP_DIRS:
                self._dirty.add(path)
                self._untracked.add(path)
                self._known[path] = None
        self._listing = Listing(self._known)
        return self._listing

    def _entry(self, path: str) -> FileEntry | None:
        self._load()
        entry = self._known.get(path)
        if entry is None and path in self._dirty:
            entry = disk_entry(self.root, path, self._git_hasher())
            if entry is None:
                self._dirty.discard(path)  # deleted in the working tree
            self._known[path] = entry
        return entry

    def files_under(self, directory: str) -> list[FileEntry]:
        paths = self._load().paths_under(directory)
        known, dirty = self._known, self._dirty
        out = []
        for path in paths:
            entry = known.get(path)
            if entry is None and path in dirty:
                entry = self._entry(path)
            if entry is not None:
                out.append(entry)
        return out

    def lookup(self, path: str) -> FileEntry | None:
        return self._entry(path)


def head(root: Path) -> str | None:
    """HEAD's commit, None in a repository with no commit yet."""
    try:
        return run_git(root, "rev-parse", "--verify", "-q", "HEAD").decode().strip()
    except SourceError:
        return None
