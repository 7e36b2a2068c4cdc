"""Which files of a repository are environment candidates."""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

YAML_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which files are candidates: a directory plus include/exclude globs relative to it."""

    path: str = "environments"
    include: tuple[str, ...] = ("**/*.yml", "**/*.yaml", "*.yml", "*.yaml")
    exclude: tuple[str, ...] = ()

    @property
    def root(self) -> str:
        return _root(self.path)

    def matches(self, repo_path: str) -> bool:
        root = _root(self.path)
        rel = repo_path[len(root) + 1 :] if root else repo_path
        if not rel.endswith(YAML_SUFFIXES):
            return False
        if globs(self.include)(rel) is None:
            return False
        return not self.exclude or globs(self.exclude)(rel) is None

    def owns(self, repo_path: str) -> bool:
        """Is a stamped source path within this selection (for archive decisions)?"""
        root = self.root
        inside = not root or repo_path == root or repo_path.startswith(root + "/")
        return inside and self.matches(repo_path)


@lru_cache(maxsize=64)
def _root(path: str) -> str:
    cleaned = posixpath.normpath(path.strip("/")) if path.strip("/") else ""
    return "" if cleaned == "." else cleaned


@lru_cache(maxsize=64)
def globs(patterns: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    """A match of any of ``patterns`` (as fnmatch.fnmatchcase reads each): one regular
    expression for them all, compiled once (selections test every path of a repository)."""
    if not patterns:
        return lambda text: None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns)).match
