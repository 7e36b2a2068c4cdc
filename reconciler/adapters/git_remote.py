"""Keeping a clone up to date with its remote, for `serve`: fetch the tracked branch into
its remote-tracking ref (what `serve` reconciles), and, when the working tree is what is
reconciled (`--watch`), fast-forward it. Never a merge or a reset: a working tree that has
moved away from the remote is an error to report, not something to overwrite."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.adapters.worktree import run_git
from reconciler.ports import SourceError

FETCH_TIMEOUT = 120.0


def _git(root: Path, *args: str, timeout: float = FETCH_TIMEOUT) -> str:
    return run_git(root, *args, timeout=timeout).decode("utf-8", "replace").strip()


def current_branch(root: Path) -> str | None:
    """The checked-out branch, or None on a detached HEAD (or outside a repository)."""
    try:
        name = _git(root, "symbolic-ref", "--quiet", "--short", "HEAD", timeout=10)
    except SourceError:
        return None
    return name or None


def has_remote(root: Path, remote: str) -> bool:
    if not remote:
        return False
    try:
        return remote in _git(root, "remote", timeout=10).split()
    except SourceError:
        return False


@dataclass
class RemoteSync:
    """Fetch ``branch`` from ``remote`` into ``tracking_ref``; with ``fast_forward``, move
    the checked-out branch to it too."""

    root: Path
    remote: str
    branch: str
    fast_forward: bool = False

    @property
    def tracking_ref(self) -> str:
        return f"refs/remotes/{self.remote}/{self.branch}"

    def sync(self) -> str:
        """The fetched commit. SourceError when the remote cannot be reached or the working
        tree cannot be fast-forwarded."""
        refspec = f"+refs/heads/{self.branch}:{self.tracking_ref}"
        _git(self.root, "fetch", "--quiet", "--no-tags", self.remote, refspec)
        fetched = _git(self.root, "rev-parse", self.tracking_ref, timeout=10)
        if self.fast_forward:
            head = _git(self.root, "rev-parse", "HEAD", timeout=10)
            if fetched != head:
                _git(self.root, "merge", "--ff-only", "--quiet", fetched)
        return fetched
