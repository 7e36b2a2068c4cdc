"""Directories the reconciler keeps its own state in ignore themselves, as
``.pytest_cache`` and ``.mypy_cache`` do: a ``.gitignore`` holding ``*`` goes in when the
directory is made, so ``git add -A`` never commits a cache, a lock or a database."""

from __future__ import annotations

from pathlib import Path

# Directories that are the reconciler's by name: they get the file even when they exist
# already (made by an older version, or by hand).
OWN_NAMES = frozenset({".reconciler", ".azureml-emulator"})
IGNORE_ALL = "# made by reconciler: local state, never committed\n*\n"


def own_directory(path: Path) -> Path:
    """Make ``path`` (with its parents) if needed; a directory made here, or one named
    like the reconciler's own, gets the self-ignoring ``.gitignore``. A directory the
    user made for other things is left as it is."""
    marker = path / ".gitignore"
    if path.is_dir():
        if path.name in OWN_NAMES and not marker.exists():
            _write(marker)
        return path
    path.mkdir(parents=True, exist_ok=True)
    _write(marker)
    return path


def _write(marker: Path) -> None:
    try:
        with open(marker, "x", encoding="utf-8") as out:
            out.write(IGNORE_ALL)
    except FileExistsError:
        pass  # another process made it first
