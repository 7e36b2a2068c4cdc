"""Crash consistency: SIGKILL `reconciler apply` at random moments, then apply again.

Each trial starts from the same registry snapshot and the same git change (creates, new
versions, a metadata update, archives, a restore, and in the second suite image builds).
Every write is slowed by the adapter's test hook, which also logs each write as it
begins, so that a kill lands at a chosen write (or before the first one). After
the kill the registry must have lost nothing, hold no duplicate and no unstamped version;
after the next apply it must equal the registry of an apply that was never interrupted,
and the next plan must be a no-op.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import GitRepo
from tests.crash_support import (
    apply_and_kill,
    check_consistent,
    comparable,
    copy_registry,
    generation,
    move_git,
    rows,
    run,
    write_history,
)
from tests.docker_support import DockerEnv

SEED = random.randrange(1 << 30)


def _prepare(tmp_path: Path) -> tuple[GitRepo, Path]:
    """A repository one commit ahead of a registry snapshot (the template)."""
    root = tmp_path / "repo"
    root.mkdir()
    repo = GitRepo(root)
    write_history(repo)
    template = tmp_path / "template.db"
    repo.git("checkout", "-q", "HEAD~1")  # `returning` exists here...
    assert run(root, template, "apply").returncode == 0
    repo.git("checkout", "-q", "main")  # ...and is archived here
    assert run(root, template, "apply").returncode == 0
    move_git(repo)
    return repo, template


def _trials(
    repo: GitRepo, template: Path, tmp_path: Path, count: int, delay: float, *args: str
) -> Counter[str]:
    rng = random.Random(SEED)
    reference = tmp_path / "reference.db"
    copy_registry(template, reference)
    reference_args = [a.replace("{trial}", "reference") for a in args]
    clock = apply_and_kill(repo.root, reference, 600, delay, *reference_args)
    assert clock.finished and clock.code == 0, "the uninterrupted apply failed"
    assert clock.writes and clock.first_write is not None, "the apply wrote nothing"
    assert run(repo.root, reference, "plan", *reference_args).returncode == 0
    expected = comparable(reference)
    before = rows(template)
    start_generation = generation(template)
    outcomes: Counter[str] = Counter()
    for trial in range(count):
        db = tmp_path / f"trial-{trial}.db"
        copy_registry(template, db)
        trial_args = [a.replace("{trial}", str(trial)) for a in args]
        # Kill points spread evenly over the apply's writes, each at a random place in its
        # stretch: 0 is a time before the first write, writes + 1 lets the apply finish.
        point = int((trial + rng.random()) * (clock.writes + 2) / count)
        if point == 0:
            after = rng.uniform(0.05, 1.0) * clock.first_write
            killed = apply_and_kill(repo.root, db, after, delay, *trial_args)
        elif point > clock.writes:
            killed = apply_and_kill(repo.root, db, 600, delay, *trial_args)
        else:
            killed = apply_and_kill(repo.root, db, 600, delay, *trial_args, at_write=point)
        check_consistent(before, db)  # right after the kill
        if killed.finished:
            outcomes["finished before the kill"] += 1
        elif generation(db) == start_generation:
            outcomes["killed before the registry changed"] += 1
        elif comparable(db) == expected:
            outcomes["killed after the last change"] += 1
        else:
            outcomes["killed between changes and builds"] += 1
        again = run(repo.root, db, "apply", *trial_args)
        assert again.returncode == 0, f"seed {SEED} trial {trial}: {again.stdout}{again.stderr}"
        check_consistent(before, db)
        assert comparable(db) == expected, f"seed {SEED} trial {trial}: did not converge"
        plan = run(repo.root, db, "plan", *trial_args)
        assert plan.returncode == 0, f"seed {SEED} trial {trial}: {plan.stdout}"
        db.unlink()
    print(f"crash trials (seed {SEED}): {dict(outcomes)}")
    return outcomes


def test_killed_applies_lose_nothing_and_converge(tmp_path: Path) -> None:
    repo, template = _prepare(tmp_path)
    outcomes = _trials(repo, template, tmp_path, 40, 0.02)
    assert sum(outcomes.values()) == 40
    # kill points are spread over the writes: make sure both sides of the commit were hit
    assert outcomes["killed before the registry changed"] >= 3, outcomes
    assert outcomes["killed between changes and builds"] >= 3, outcomes


def test_killed_applies_with_builds_lose_nothing_and_converge(
    tmp_path: Path, docker_env: DockerEnv
) -> None:
    repo, template = _prepare(tmp_path)
    prefix = docker_env.fresh_image_registry()
    # a fresh image repository per trial, so that every trial builds
    outcomes = _trials(repo, template, tmp_path, 12, 0.02, "--image-registry", prefix + "-{trial}")
    assert outcomes["killed between changes and builds"] >= 3, outcomes


@pytest.mark.parametrize("stage", ["lock", "batch"])
def test_a_kill_leaves_no_partial_batch(tmp_path: Path, stage: str) -> None:
    """The registry writes of one apply are one SQLite transaction: a kill before the
    commit leaves the registry exactly as it was."""
    repo, template = _prepare(tmp_path)
    db = tmp_path / "db.db"
    copy_registry(template, db)
    # Writes at 0.2 s each: the kill lands as the batch's eighth write begins, long before
    # its commit (or, for "lock", while the apply starts).
    at_write = 8 if stage == "batch" else None
    killed = apply_and_kill(repo.root, db, 0.3, 0.2, at_write=at_write)
    assert not killed.finished and (at_write is None or killed.writes >= at_write)
    assert comparable(db) == comparable(template)
