"""Shared fixtures: real git repositories in temporary directories, real SQLite files."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.invalid",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    for key in list(os.environ):
        if key.startswith("RECONCILER_") and not key.startswith("RECONCILER_TEST_"):
            monkeypatch.delenv(key)


class GitRepo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **GIT_ENV},
        )
        return done.stdout.strip()

    def write(self, path: str, content: str) -> Path:
        full = self.root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(content)
        return full

    def remove(self, path: str) -> None:
        (self.root / path).unlink()

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def age(self, seconds: float = 60.0) -> None:
        """Backdate every file and directory (and git's index), as if written a while ago:
        a plan cache does not trust files changed within the last moments."""
        stamp = time.time() - seconds
        for path in [self.root, *self.root.rglob("*")]:
            if not path.is_symlink():
                os.utime(path, (stamp, stamp))

    @property
    def registry_db(self) -> Path:
        return self.root / ".reconciler" / "registry.db"


class Cli:
    """Runs the real command line in-process against one repository."""

    def __init__(self, repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
        self.repo = repo
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*args[:1], "--repo", str(self.repo.root), *args[1:]])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> tuple[int, Any]:
        code, out, err = self(*args, "--json")
        try:
            return code, json.loads(out)
        except json.JSONDecodeError:
            raise AssertionError(f"not JSON (exit {code}): {out!r} {err!r}") from None


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[GitRepo]:
    root = tmp_path / "repo"
    root.mkdir()
    yield GitRepo(root)


@pytest.fixture
def cli(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(repo, capsys)


def image_env(name: str, image: str = "busybox:1.36", **extra: str) -> str:
    lines = [f"name: {name}", f"image: {image}"]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


CONDA = """channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip:
      - numpy==1.26.4
"""


def conda_env(name: str, conda_path: str = "conda.yml", tags: str = "") -> str:
    text = f"name: {name}\nimage: busybox:1.36\nconda_file: {conda_path}\n"
    if tags:
        text += "tags:\n" + "".join(f"  {line}\n" for line in tags.splitlines())
    return text


@pytest.fixture(scope="session")
def docker_env() -> object:
    from tests.docker_support import docker_env_or_skip

    return docker_env_or_skip()


from tests.azure_support import emulator, workspace  # noqa: E402, F401  (Azure ML emulator)


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """Long-running reconciler processes a test starts; killed when it ends."""
    running: list[Any] = []
    yield running
    for process in running:
        process.kill()
