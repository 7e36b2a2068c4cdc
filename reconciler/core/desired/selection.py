"""Which files of a repository are environment candidates."""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass

YAML_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which files are candidates: a directory plus include/exclude globs relative to it."""

    path: str = "environments"
    include: tuple[str, ...] = ("**/*.yml", "**/*.yaml", "*.yml", "*.yaml")
    exclude: tuple[str, ...] = ()

    @property
    def root(self) -> str:
        cleaned = posixpath.normpath(self.path.strip("/")) if self.path.strip("/") else ""
        return "" if cleaned == "." else cleaned

    def matches(self, repo_path: str) -> bool:
        root = self.root
        rel = repo_path[len(root) + 1 :] if root else repo_path
        if not rel.endswith(YAML_SUFFIXES):
            return False
        if not any(fnmatch.fnmatchcase(rel, pattern) for pattern in self.include):
            return False
        return not any(fnmatch.fnmatchcase(rel, pattern) for pattern in self.exclude)

    def owns(self, repo_path: str) -> bool:
        """Is a stamped source path within this selection (for archive decisions)?"""
        root = self.root
        inside = not root or repo_path == root or repo_path.startswith(root + "/")
        return inside and self.matches(repo_path)
