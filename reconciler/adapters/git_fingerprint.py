"""Cheap identities of a repository's files, for caches that must never answer for files
that changed: the commit a ref names, or the working tree's state by stat data.

Kept free of heavy imports: a replayed `plan` (cli/replay.py) loads this module and
little else.
"""

from __future__ import annotations

import marshal
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hashlib import _Hash as Digest

# A file changed less than this long ago may change again within the same timestamp tick
# (git's "racy clean" problem): a fingerprint that includes one is not trusted.
RACY_SECONDS = 2.0
MISSING = (0, 0, 0, 0, 0)  # a real file never has mode 0
# git checks the tracked files with one thread per 500 of them (up to 20), and this
# process stats the watch list meanwhile: niced, git's threads leave this one a core
# rather than a twenty-first share of two.
GIT_NICE = 10


class _Git:
    """A read-only git command started at once and read later. posix_spawn, not
    subprocess: importing subprocess costs more than this whole module's work."""

    def __init__(self, root: str, *args: str, nice: int = 0) -> None:
        out, write = os.pipe()
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            self.pid = os.posix_spawnp(
                "git",
                ["git", "-C", root, *args],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, write, 1),
                    (os.POSIX_SPAWN_DUP2, devnull, 2),
                ],
            )
        except OSError:
            os.close(out)
            raise
        finally:
            os.close(write)
            os.close(devnull)
        self._out = out
        if nice:
            # Before git starts its threads, which inherit it. Only speed is at stake, so
            # a sandbox that refuses it changes nothing else.
            try:
                os.setpriority(os.PRIO_PROCESS, self.pid, nice)
            except OSError:
                return

    def cancel(self) -> None:
        """Stop it (its answer is not needed after all) and reap it."""
        # Not yet reaped, so the pid is still this child's. 9 is SIGKILL: importing
        # `signal` would import enum.
        os.kill(self.pid, 9)
        self.output()

    def output(self) -> bytes | None:
        """What it printed (None: it failed)."""
        chunks = []
        try:
            while chunk := os.read(self._out, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(self._out)
        _, status = os.waitpid(self.pid, 0)
        return b"".join(chunks) if os.waitstatus_to_exitcode(status) == 0 else None


def git_output(root: str, *args: str) -> bytes | None:
    """The output of a read-only git command in ``root`` (None: it failed)."""
    try:
        return _Git(root, *args).output()
    except OSError:
        return None


def commit_of(root: str, ref: str) -> str | None:
    """The commit ``ref`` names in the repository at ``root`` (None: no such commit)."""
    return CommitCheck(root, ref).commit()


class CommitCheck:
    """The commit a ref names, asked at once and read later."""

    def __init__(self, root: str, ref: str) -> None:
        try:
            self._git: _Git | None = _Git(root, "rev-parse", "--verify", "-q", ref + "^{commit}")
        except OSError:
            self._git = None

    def commit(self) -> str | None:
        """The commit (None: no such commit)."""
        git, self._git = self._git, None
        out = None if git is None else git.output()
        return None if out is None else out.decode().strip()

    def cancel(self) -> None:
        """Stop git (the answer is not needed after all)."""
        git, self._git = self._git, None
        if git is not None:
            git.cancel()


def git_dirs(root: str) -> tuple[str, str] | None:
    """The repository's git directory and common directory (they differ in a linked
    worktree), read from ``.git`` as git does; git itself answers when the environment
    points elsewhere (GIT_DIR and the like)."""
    if any(name.startswith("GIT_") and "DIR" in name for name in os.environ):
        return _asked_git_dirs(root)
    dot_git = os.path.join(root, ".git")
    try:
        if os.path.isdir(dot_git):
            git_dir = dot_git
        else:
            with open(dot_git, "rb") as handle:
                text = handle.read().decode("utf-8", "surrogateescape").strip()
            if not text.startswith("gitdir: "):
                return None
            git_dir = os.path.join(root, text[len("gitdir: ") :])
        try:
            with open(os.path.join(git_dir, "commondir"), "rb") as handle:
                common = handle.read().decode("utf-8", "surrogateescape").strip()
            return git_dir, os.path.normpath(os.path.join(git_dir, common))
        except FileNotFoundError:
            return git_dir, git_dir
    except OSError:
        return None


def control_files(git_dir: str, common: str, head: bytes) -> list[str]:
    """The files besides the working tree that git's view of it depends on: its index,
    HEAD and the ref it names (``head``: HEAD's bytes), refs, configs and excludes (the
    repository's, the user's and the system's)."""
    join = os.path.join
    home = os.path.expanduser("~")
    xdg = os.environ.get("XDG_CONFIG_HOME") or join(home, ".config")
    paths = [
        join(git_dir, "index"),
        join(git_dir, "HEAD"),
        join(git_dir, "config.worktree"),
        join(common, "config"),
        join(common, "packed-refs"),
        join(common, "reftable", "tables.list"),
        join(common, "info", "exclude"),
        join(home, ".gitconfig"),
        join(xdg, "git", "config"),
        join(xdg, "git", "ignore"),
        "/etc/gitconfig",
    ]
    if head.startswith(b"ref: "):
        name = head[5:].strip().decode("utf-8", "surrogateescape")
        paths += [join(git_dir, name), join(common, name)]
    return paths


def _asked_git_dirs(root: str) -> tuple[str, str] | None:
    out = git_output(root, "rev-parse", "--absolute-git-dir", "--git-common-dir")
    if out is None:
        return None
    git_dir, _, common = out.decode("utf-8", "surrogateescape").strip().partition("\n")
    return git_dir, os.path.join(root, common)  # relative to root when git prints it so


def worktree_fingerprint(root: str, watch: list[str]) -> str | None:
    """Equal fingerprints, equal files: HEAD and the ref it names, git's index, excludes
    and config, the tracked files git sees modified (by their stat data), and the stat data
    of ``watch`` (paths relative to ``root``: the directories whose mtimes change when a
    file appears or vanishes, .gitignore files, untracked files). None when it cannot be
    trusted: not a git repository, or a file changed a moment ago."""
    return WorktreeCheck(root).fingerprint(watch)


class WorktreeCheck:
    """A working-tree fingerprint in two halves: git starts listing the modified tracked
    files at once, and ``fingerprint`` stats the watch list while it runs, so the two
    halves use two cores. A caller with other work to do first (cli/replay.py) starts the
    check early and lets git run meanwhile."""

    def __init__(self, root: str) -> None:
        self.root = root
        try:
            self._modified: _Git | None = _Git(
                root, "diff-files", "--name-only", "-z", nice=GIT_NICE
            )
        except OSError:
            self._modified = None

    def cancel(self) -> None:
        """Stop git (the fingerprint is not needed after all)."""
        modified, self._modified = self._modified, None
        if modified is not None:
            modified.cancel()

    def fingerprint(self, watch: list[str]) -> str | None:
        """See worktree_fingerprint."""
        modified, self._modified = self._modified, None
        if modified is None:
            return None
        try:
            digest = _stat_digest(self.root, watch)  # all but git's answer, while git runs
        finally:
            changed = modified.output()
        if digest is None or changed is None:
            return None
        files = [p for p in changed.decode("utf-8", "surrogateescape").split("\0") if p]
        if files:
            more = _stat_all([os.path.join(self.root, p) for p in files], None)
            if more is None:
                return None
            digest.update("\0".join(files).encode("utf-8", "surrogateescape"))
            _add_numbers(digest, more)
        return "worktree:" + digest.hexdigest()


def _stat_digest(root: str, watch: list[str]) -> Digest | None:
    """A running digest of HEAD, git's control files and the watch list's stat data
    (None: not a repository, or something changed a moment ago)."""
    try:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        # Relative to an open directory: tens of thousands of paths, no joining.
        seen = _stat_all(watch, top)
    finally:
        os.close(top)
    dirs = git_dirs(root)
    if seen is None or dirs is None:
        return None
    git_dir, common = dirs
    join = os.path.join
    try:
        with open(join(git_dir, "HEAD"), "rb") as handle:
            head = handle.read()
    except OSError:
        return None
    control = control_files(git_dir, common, head)
    stats = _stat_all(control, None)
    if stats is None:
        return None
    import hashlib  # here, not above: a replay's check runs it while git works

    digest = hashlib.sha256(head)
    digest.update("\0".join(control).encode("utf-8", "surrogateescape"))
    _add_numbers(digest, seen)
    _add_numbers(digest, stats)
    return digest


def _add_numbers(digest: Digest, numbers: list[int]) -> None:
    # marshal: fast, exact for any int, and no import (array's pulls in collections).
    # Format 2 has no back-references, so equal numbers give equal bytes.
    digest.update(marshal.dumps(numbers, 2))


def _stat_all(paths: list[str], directory: int | None) -> list[int] | None:
    """Stat data of every path ("": the directory itself), flattened (None: one changed a
    moment ago)."""
    fresh_after = (time.time() - RACY_SECONDS) * 1e9
    numbers: list[int] = []
    add, stat = numbers.extend, os.stat
    for path in paths:
        try:
            info = stat(path or ".", dir_fd=directory, follow_symlinks=False)
        except OSError:
            add(MISSING)
            continue
        if info.st_mtime_ns > fresh_after:
            return None
        add((info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode, info.st_ino))
    return numbers
