"""Several reconcilers on one registry at once: the registry lock serialises them, each
plans inside the lock, and a lock held by a killed process is free again at once."""

from __future__ import annotations

import fcntl
import itertools
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import GitRepo, image_env
from tests.crash_support import child_env, reconciler, rows, run
from tests.docker_support import BUSYBOX_IMAGE, DockerEnv


def _start(repo: Path, db: Path, *args: str, delay: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        reconciler(repo, db, *args),
        env=child_env(delay),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_holder(lock: Path, pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock.exists() and lock.read_text().strip() == f"pid {pid}":
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never took the lock {lock}")


def _repo(tmp_path: Path, name: str, image: str) -> GitRepo:
    root = tmp_path / name
    root.mkdir()
    repo = GitRepo(root)
    repo.git("remote", "add", "origin", "https://example.com/team/envs.git")  # one owner
    for i in range(8):
        repo.write(f"environments/e{i}.yml", image_env(f"e{i}", image=image))
    repo.commit("eight")
    return repo


def test_concurrent_applies_are_serialised(tmp_path: Path) -> None:
    """Two clones at different commits and two more applies race on one registry. Each
    plans under the lock, so the later one numbers its versions after the earlier one's:
    without the lock both would claim version 2 and one would hit a version conflict."""
    db = tmp_path / "shared.db"
    first, second = _repo(tmp_path, "a", "busybox:1"), _repo(tmp_path, "b", "busybox:1")
    assert run(first.root, db, "apply").returncode == 0
    for i in range(8):
        first.write(f"environments/e{i}.yml", image_env(f"e{i}", image="busybox:2"))
        second.write(f"environments/e{i}.yml", image_env(f"e{i}", image="busybox:3"))
    first.commit("two")
    second.commit("three")
    racers = [
        _start(repo.root, db, "apply", "--lock-timeout", "120", delay=0.05)
        for repo in (first, second, first, second)
    ]
    results = [process.communicate(timeout=180) for process in racers]
    for process, (out, err) in zip(racers, results, strict=True):
        assert process.returncode == 0, out + err
        assert "Traceback" not in err
    found = rows(db)
    for i in range(8):
        mine = [r for r in found if r.name == f"e{i}"]
        # numbered 1..n without gaps, each version a change from the one before: every
        # apply planned against what the previous one had written
        assert [r.version for r in mine] == [str(n) for n in range(1, len(mine) + 1)]
        assert all(a.digest != b.digest for a, b in itertools.pairwise(mine))
        assert 3 <= len(mine) <= 5
    assert run(first.root, db, "plan").returncode in (0, 2)


def test_a_waiting_apply_times_out_naming_the_holder(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "r", "busybox:1")
    db = tmp_path / "r.db"
    holder = _start(repo.root, db, "apply", delay=0.25)  # 8 creates, 8 records: about 4 s
    try:
        _wait_for_holder(tmp_path / "r.db.lock", holder.pid)
        waiter = run(repo.root, db, "apply", "--lock-timeout", "0.5")
        assert waiter.returncode == 1
        assert f"locked by another reconciler (pid {holder.pid})" in waiter.stderr
        assert "Traceback" not in waiter.stderr
    finally:
        out, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, out + err
    assert len(rows(db)) == 8


def test_a_lock_left_by_a_killed_apply_is_free_again(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "r", "busybox:1")
    db = tmp_path / "r.db"
    lock = tmp_path / "r.db.lock"
    holder = _start(repo.root, db, "apply", delay=2.0)
    _wait_for_holder(lock, holder.pid)
    # while it lives, the lock is taken
    fd = os.open(lock, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("the lock should be held")
        except BlockingIOError:
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        # the stale pid is still written in the file, but the kernel released the flock
        assert lock.read_text().strip() == f"pid {holder.pid}"
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    started = time.monotonic()
    after = run(repo.root, db, "apply", "--lock-timeout", "2")
    assert after.returncode == 0, after.stdout + after.stderr
    assert time.monotonic() - started < 10
    assert sorted(r.name for r in rows(db)) == [f"e{i}" for i in range(8)]
    assert run(repo.root, db, "plan").returncode == 0


def test_build_waits_for_apply_and_does_not_interleave(
    tmp_path: Path, docker_env: DockerEnv
) -> None:
    repo = _repo(tmp_path, "r", BUSYBOX_IMAGE)
    db = tmp_path / "r.db"
    registry = docker_env.fresh_image_registry()
    holder = _start(repo.root, db, "apply", "--image-registry", registry, delay=0.2)
    try:
        _wait_for_holder(tmp_path / "r.db.lock", holder.pid)
        build = ("build", "e0", "--image-registry", registry)
        refused = run(repo.root, db, *build, env={"RECONCILER_LOCK_TIMEOUT": "0.2"})
        assert refused.returncode == 1 and f"(pid {holder.pid})" in refused.stderr
        waited = run(repo.root, db, *build, env={"RECONCILER_LOCK_TIMEOUT": "120"})
    finally:
        out, err = holder.communicate(timeout=120)
    assert holder.returncode == 0, out + err
    # the build ran after the apply had registered e0 (else: "no environment 'e0'")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "e0:1" in waited.stdout
