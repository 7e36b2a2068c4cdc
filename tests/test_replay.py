"""A `plan` whose inputs are all unchanged is replayed: the same output and exit code,
without importing the command line's parser, the planner or the registry adapter. Any
changed input (files, registry, settings, environment, options) plans again."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.spec.model import VersionWrite
from tests.conftest import CONDA, Cli, GitRepo, conda_env, image_env


def seed(repo: GitRepo) -> None:
    repo.write("environments/a.yml", image_env("a"))
    repo.write("environments/b/env.yml", conda_env("b"))
    repo.write("environments/b/conda.yml", CONDA)
    repo.commit("seed")


PLAN = (sys.executable, "-X", "importtime", "-m", "reconciler", "plan")


class Run:
    """One whole `reconciler plan` process, and whether it was a replay."""

    def __init__(self, repo: GitRepo, args: tuple[str, ...], env: dict[str, str]) -> None:
        done = subprocess.run(
            [*PLAN, "--repo", str(repo.root), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=repo.root,
        )
        self.code = done.returncode
        self.out = done.stdout
        # -X importtime writes to the stderr file itself, past any Python stream
        self.replayed = "reconciler.cli.replay" in done.stderr and (
            "reconciler.cli.app" not in done.stderr
        )
        self.imported = {
            line.rpartition("|")[2].strip()
            for line in done.stderr.splitlines()
            if line.startswith("import time:")
        }
        self.err = "\n".join(
            line for line in done.stderr.splitlines() if not line.startswith("import time:")
        )


PlanRun = Callable[..., Run]


@pytest.fixture
def plan(repo: GitRepo) -> PlanRun:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    base.pop("CI", None)

    def run(*args: str, **env: str) -> Run:
        return Run(repo, args, {**base, **env})

    return run


def settle(repo: GitRepo) -> None:
    """Files written more than a moment ago (a fresh one is never trusted by a cache)."""
    repo.age(30)


def test_an_unchanged_plan_is_replayed(repo: GitRepo, cli: Cli, plan: PlanRun) -> None:
    seed(repo)
    cli("apply")
    settle(repo)
    for args in ((), ("--json",), ("--ref", "HEAD"), ("--ref=HEAD", "--no-color")):
        first = plan(*args)
        second = plan(*args)
        assert first.code == 0 and not first.replayed, (args, first.err)
        assert second.replayed, (args, second.err)
        assert (second.code, second.out) == (first.code, first.out)
        assert first.out.strip(), args
        # The registry's files were not written since: their stamp proves the token.
        assert "sqlite3" not in second.imported and "sqlite3" in first.imported, args


def test_pending_changes_are_replayed_with_their_exit_code(
    repo: GitRepo, cli: Cli, plan: PlanRun
) -> None:
    seed(repo)
    plan()  # makes the state directory: the repository's root changed a moment ago
    settle(repo)
    first = plan()
    second = plan()
    assert first.code == 2 and second.code == 2 and second.replayed
    assert second.out == first.out and "+ create" in first.out


def test_every_changed_input_plans_again(repo: GitRepo, cli: Cli, plan: PlanRun) -> None:
    seed(repo)
    cli("apply")
    settle(repo)
    plan()
    assert plan().replayed

    # a tracked file edited in place (its directory's mtime does not change)
    path = repo.root / "environments/b/conda.yml"
    path.write_text(CONDA.replace("3.11", "3.12"))
    settle(repo)
    run = plan()
    assert not run.replayed and run.code == 2 and "new_version" in run.out
    assert plan().replayed

    # a new untracked file in an existing directory
    repo.write("environments/b/extra.yml", image_env("extra"))
    settle(repo)
    run = plan()
    assert not run.replayed and "extra" in run.out

    # the registry written by someone else
    plan()
    assert plan().replayed
    assert "sqlite3" not in plan().imported  # proven by the registry files' stamp
    registry = SqliteRegistry(repo.registry_db)
    registry.put_version("hand-made", "1", VersionWrite({"image": "x"}, "", None, {}))
    registry.close()
    run = plan()
    assert not run.replayed
    # a write that leaves the files' size and mtime as they were (the same tick): the
    # stamp's ctime tells
    settle(repo)
    plan()
    run = plan()
    assert run.replayed and "sqlite3" not in run.imported
    before = {p: os.stat(p) for p in repo.registry_db.parent.glob("registry.db*")}
    with contextlib.closing(sqlite3.connect(repo.registry_db)) as conn, conn:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
    for path, info in before.items():
        if path.exists():
            os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    after = os.stat(repo.registry_db)
    was = before[repo.registry_db]
    assert (after.st_size, after.st_mtime_ns) == (was.st_size, was.st_mtime_ns)
    wal = repo.registry_db.with_name("registry.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # nothing left in the log
    run = plan()
    assert not run.replayed

    # the settings file
    assert plan().replayed
    (repo.root / "reconciler.toml").write_text('[reconciler]\npath = "nowhere"\n')
    settle(repo)
    run = plan()
    assert not run.replayed and "nowhere" in run.out + run.err

    # the environment
    (repo.root / "reconciler.toml").unlink()
    settle(repo)
    plan()
    assert plan().replayed
    run = plan(RECONCILER_PATH="elsewhere")
    assert not run.replayed and "elsewhere" in run.out + run.err

    # a commit moves HEAD: the answer names the commit it planned
    repo.git("add", "-A")
    repo.commit("more")
    settle(repo)
    head = repo.git("rev-parse", "HEAD").strip()[:12]
    run = plan()
    assert not run.replayed and head in run.out


def test_a_run_that_said_something_on_stderr_is_not_recorded(
    repo: GitRepo, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.cli import commands

    seed(repo)
    cli("apply")
    settle(repo)
    monkeypatch.setattr(
        commands, "_note_throttling", lambda registry: print("slow", file=sys.stderr)
    )
    code, out, err = cli("plan")
    assert code == 0 and err == "slow\n"
    assert not list((repo.root / ".reconciler" / "cache").glob("replay-*"))
    monkeypatch.undo()
    cli("plan")
    assert list((repo.root / ".reconciler" / "cache").glob("replay-*"))


def test_a_damaged_answer_is_planned_again(repo: GitRepo, cli: Cli, plan: PlanRun) -> None:
    seed(repo)
    cli("apply")
    settle(repo)
    first = plan()
    (answer,) = (repo.root / ".reconciler" / "cache").glob("replay-*")
    answer.write_bytes(answer.read_bytes()[:20])
    run = plan()
    assert not run.replayed and (run.code, run.out) == (first.code, first.out)
    assert plan().replayed


def test_options_a_replay_cannot_check_always_plan(repo: GitRepo, cli: Cli, plan: PlanRun) -> None:
    seed(repo)
    cli("apply")
    settle(repo)
    for args in (("--no-cache",), ("--markdown", "-"), ("--refresh",)):
        plan(*args)
        assert not plan(*args).replayed, args


def test_an_answer_lives_in_the_ignored_cache(repo: GitRepo, cli: Cli, plan: PlanRun) -> None:
    seed(repo)
    cli("apply")
    settle(repo)
    plan()
    assert list(Path(repo.root, ".reconciler", "cache").glob("replay-*.marshal"))
    assert repo.git("status", "--porcelain").strip() == ""


def test_a_replay_writes_to_a_text_only_stdout(
    repo: GitRepo, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from reconciler.cli import main

    seed(repo)
    cli("apply")
    settle(repo)
    first = cli("plan")
    assert list((repo.root / ".reconciler" / "cache").glob("replay-*"))
    stream = io.StringIO()  # no .buffer
    monkeypatch.setattr(sys, "stdout", stream)

    def planned(*args: object) -> int:
        raise AssertionError("planned again: not replayed")

    monkeypatch.setattr("reconciler.cli.app.main", planned)
    assert main(["plan", "--repo", str(repo.root)]) == first[0]
    assert stream.getvalue() == first[1]
