"""A read-only view of a repository's files at one moment (working tree or commit).

Adapters implement ``Snapshot``; the core only reads through it, so loading desired
state is the same code for the working tree, any git ref and a plain directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SYMLINK_MODE = "120000"
EXECUTABLE_MODE = "100755"


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str  # posix, relative to the repository root
    blob_id: str  # git blob id of the content (for a symlink: of its target text)
    mode: str = "100644"

    @property
    def is_symlink(self) -> bool:
        return self.mode == SYMLINK_MODE


class Snapshot(Protocol):
    @property
    def commit(self) -> str | None:
        """The commit the files come from (HEAD for a working tree), None outside git."""

    @property
    def label(self) -> str:
        """Human name of the source: 'working tree' or the ref as given."""

    def files_under(self, directory: str) -> list[FileEntry]:
        """Every file below ``directory`` ("" for the whole repository), sorted by path."""

    def lookup(self, path: str) -> FileEntry | None:
        """The file at ``path``, or None."""

    def read(self, entry: FileEntry) -> bytes:
        """Content of a file (for a symlink, its target text)."""

    def prefetch(self, entries: list[FileEntry]) -> None:
        """A hint that these files will be read: fetch them in one go where that is faster."""
