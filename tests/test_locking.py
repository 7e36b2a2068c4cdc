"""watch, reconcile --interval and apply on one registry at once: they all go through
Engine.apply, which takes the registry lock and reads git and the registry inside it, so
none of them ever acts on a stale view and their writes never interleave."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time

from reconciler.adapters.locking import file_lock
from reconciler.adapters.sqlite_registry import SqliteRegistry
from tests.conftest import CONDA, GitRepo, conda_env
from tests.processes import Running, reconciler_env, wait_for

EDITS = 8


def conda(i: int) -> str:
    return CONDA.replace("1.26.4", f"1.26.{i}")


def save(repo: GitRepo, path: str, text: str) -> None:
    """Write a file whole (aside, then renamed, as most editors save): what is tested here
    is the registry lock, and a reader that opens a file halfway through a plain write
    sees half of it."""
    full = repo.root / path
    aside = full.with_name(f".{full.name}.saving")
    aside.write_text(text)
    aside.replace(full)


def test_watch_reconcile_and_apply_never_interleave(repo: GitRepo, started: list[Running]) -> None:
    repo.write("environments/a/env.yml", conda_env("a"))
    repo.write("environments/a/conda.yml", conda(0))
    repo.commit("seed")
    root = str(repo.root)
    watch = Running("watch", "--repo", root, "--debounce", "20", cwd=repo.root)
    started.append(watch)
    loop = Running("reconcile", "--repo", root, "--interval", "1s", cwd=repo.root)
    started.append(loop)
    watch.wait_line("reconcile 1 (start)")
    loop.wait_line("reconcile 1 (start)")

    # Edits every 60 ms, each followed by an apply started at once: up to a handful of
    # reconcilers read the file at different moments and race for the next version.
    applies = []
    for i in range(1, EDITS + 1):
        save(repo, "environments/a/conda.yml", conda(i))  # build-relevant: a new version
        applies.append(
            subprocess.Popen(
                [sys.executable, "-m", "reconciler", "apply", "--repo", root],
                cwd=repo.root,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=reconciler_env(),
            )
        )
        time.sleep(0.06)
    outputs = [(p.wait(60), p.communicate()[0]) for p in applies]

    plan = [sys.executable, "-m", "reconciler", "plan", "--repo", root]
    wait_for(
        lambda: subprocess.run(plan, capture_output=True, env=reconciler_env()).returncode == 0,
        timeout=15,
        what="the registry equal to git",
    )
    assert watch.stop(signal.SIGTERM) == 0, watch.output()
    assert loop.stop(signal.SIGTERM) == 0, loop.output()

    for code, output in outputs:
        assert code == 0, output
    for process in (watch, loop):
        for line in process.reconciles():
            assert "error" not in line and "failed" not in line, process.output()
        assert not any("Traceback" in line for line in process.errors)

    registry = SqliteRegistry(repo.registry_db)
    try:
        versions = registry.get_container("a")
        events = registry.history("a")
    finally:
        registry.close()
    assert versions is not None
    numbers = [v.version for v in versions.versions]
    assert numbers == [str(n) for n in range(1, len(numbers) + 1)]
    digests = [v.digest for v in versions.versions]
    assert all(a != b for a, b in itertools.pairwise(digests)), digests
    written = {f"numpy==1.26.{i}" for i in range(EDITS + 1)}
    for v in versions.versions:
        assert v.content is not None
        assert v.content["conda"]["dependencies"][1]["pip"][0] in written
    newest = versions.versions[-1]
    assert newest.content is not None
    assert newest.content["conda"]["dependencies"][1]["pip"][0] == f"numpy==1.26.{EDITS}"
    creates = [e for e in events if e["action"] == "create"]
    assert len(creates) == len(numbers)  # each version written once, by one reconciler


def versions_of(repo: GitRepo, name: str) -> list[str]:
    """The numpy pin of every version, oldest first."""
    registry = SqliteRegistry(repo.registry_db)
    try:
        container = registry.get_container(name)
    finally:
        registry.close()
    assert container is not None
    pins = []
    for version in container.versions:
        assert version.content is not None
        pins.append(version.content["conda"]["dependencies"][1]["pip"][0])
    return pins


def test_reconcilers_queue_on_the_lock_and_plan_inside_it(
    repo: GitRepo, started: list[Running]
) -> None:
    """While the test holds the registry lock, the file holds content 1 and then content 2.
    A reconciler that read git before taking the lock would register content 1; those that
    plan inside the lock all see content 2: one registers it, the others find it in sync."""
    repo.write("environments/a/env.yml", conda_env("a"))
    repo.write("environments/a/conda.yml", conda(0))
    repo.commit("seed")
    root = str(repo.root)
    apply = [sys.executable, "-m", "reconciler", "apply", "--repo", root]
    assert subprocess.run(apply, capture_output=True, env=reconciler_env()).returncode == 0
    lock = repo.registry_db.with_name("registry.db.lock")
    with file_lock(lock, 5, "registry"):
        repo.write("environments/a/conda.yml", conda(1))
        watch = Running("watch", "--repo", root, "--debounce", "20", cwd=repo.root)
        loop = Running("reconcile", "--repo", root, "--interval", "1h", cwd=repo.root)
        started.extend([watch, loop])
        one_off = subprocess.Popen(
            apply, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=reconciler_env()
        )
        time.sleep(1.5)  # all three started and are waiting for the lock
        assert watch.reconciles() == [] and loop.reconciles() == [] and one_off.poll() is None
        repo.write("environments/a/conda.yml", conda(2))
    assert one_off.wait(30) == 0, one_off.communicate()[0]
    watch.wait_line("reconcile 1 (start)")
    loop.wait_line("reconcile 1 (start)")
    assert versions_of(repo, "a") == ["numpy==1.26.0", "numpy==1.26.2"]
    lines = [watch.reconciles()[0], loop.reconciles()[0], one_off.communicate()[0]]
    # the one that won the lock wrote version 2 (watch and reconcile lines say
    # "a:2 new_version", apply's output "new_version a:2"): exactly one of them
    assert sum("new_version" in line and "a:2" in line for line in lines) == 1, lines
    assert watch.stop(signal.SIGTERM) == 0 and loop.stop(signal.SIGTERM) == 0
