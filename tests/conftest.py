"""Shared fixtures: real git repositories in temporary directories, real SQLite files."""

from __future__ import annotations

import contextlib
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
                with contextlib.suppress(FileNotFoundError):  # git's own files come and go
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


# -- markers: choose tests by what they need (pyproject.toml registers them) ----------------

# Fixtures that mean a test needs a real service.
_SERVICE_FIXTURES = {"docker_env": "docker", "emulator": "azure", "workspace": "azure"}
# Modules whose every test starts real services or many processes.
_MODULE_MARKS = {
    "test_azureml_cli": ("azure", "slow"),
    "test_azureml_faults": ("azure", "slow"),
    "test_emulator": ("azure",),
    "test_builds": ("docker", "slow"),
    "test_drift_builds": ("docker", "slow"),
    "test_crash": ("slow",),
    "test_concurrency": ("slow",),
    "test_faults": ("slow",),
    "test_hostile": ("slow",),
    "test_properties": ("slow",),
    "test_incremental": ("slow",),
    "test_watch": ("slow",),
    "test_reconcile_loop": ("slow",),
    "test_corpus": ("slow",),
    "test_bootstrap": ("slow",),
    "test_release": ("slow",),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        marks = {mark for fixture, mark in _SERVICE_FIXTURES.items() if fixture in names}
        python_module = item.module if isinstance(item, pytest.Function) else None
        module = python_module.__name__.rpartition(".")[2] if python_module else ""
        marks.update(_MODULE_MARKS.get(module, ()))
        if marks & {"docker", "azure", "browser"}:
            marks.add("slow")  # a service to start is never the fast path
        for mark in sorted(marks):
            item.add_marker(getattr(pytest.mark, mark))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI every test runs: a skipped test fails the run (a missing service, a missing
    corpus), so that nothing goes untested unnoticed."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and session.exitstatus == 0:
        if reporter is not None:
            reporter.write_line(f"error: {skipped} test(s) skipped; in CI every test must run")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
