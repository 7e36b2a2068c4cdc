"""A copy of the project's working tree as a fresh git repository (what a clean clone of
the current work would hold), and the environment to run its scripts in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GIT_ENV, GitRepo

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# scripts/release/test-installed runs the suite against an installed wheel, from a tree
# without the reconciler/ package: nothing there to install editable or build.
needs_source = pytest.mark.skipif(
    not (PROJECT / "reconciler").is_dir(),
    reason="the suite runs against an installed wheel: no source tree to build or install",
)


def copy_of_the_project(dest: Path) -> GitRepo:
    """Tracked and new (not ignored) files of the working tree, committed in a new
    repository at dest: no .venv, no caches, no tags."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    dest.mkdir(parents=True)
    for name in filter(None, listed.split("\0")):
        source = PROJECT / name
        if source.is_file():  # tracked files deleted in the working tree are skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    repo = GitRepo(dest)
    repo.commit("copy of the working tree")
    return repo


def script_env(**extra: str) -> dict[str, str]:
    """The caller's environment without this virtual environment's activation."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(GIT_ENV)
    env.update(extra)
    return env


def run(
    command: list[str], cwd: Path, timeout: float = 900, /, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env=script_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def locked_versions(root: Path = PROJECT) -> dict[str, str]:
    with (root / "uv.lock").open("rb") as file:
        lock: dict[str, Any] = tomllib.load(file)
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}
