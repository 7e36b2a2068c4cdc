"""A repository whose next apply does a bit of everything (creates, new versions, metadata
updates, archives, a restore, builds), a registry snapshot to start each trial from, and
the checks a registry must pass after a crash: nothing lost, no duplicates, provenance on
every version."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.adapters.sqlite_registry import WRITE_DELAY_VARIABLE, WRITE_LOG_VARIABLE
from reconciler.core.spec.model import (
    STAMP_CONTENT_DIGEST,
    STAMP_MANAGED_BY,
    STAMP_OWNER,
    STAMP_SOURCE_COMMIT,
    STAMP_SOURCE_PATH,
)
from tests.conftest import GIT_ENV, GitRepo
from tests.docker_support import BUSYBOX_IMAGE, CONDA_IMAGE

PROVENANCE = (
    STAMP_MANAGED_BY,
    STAMP_OWNER,
    STAMP_SOURCE_PATH,
    STAMP_SOURCE_COMMIT,
    STAMP_CONTENT_DIGEST,
)
CONDA = "channels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip:\n    - numpy=={v}\n"
DOCKERFILE = f"FROM {BUSYBOX_IMAGE}\nCOPY requirements.txt /app/requirements.txt\n"


def _image(name: str, image: str = BUSYBOX_IMAGE, description: str = "") -> str:
    text = f"name: {name}\nimage: {image}\n"
    return text + (f"description: {description}\n" if description else "")


def write_history(repo: GitRepo) -> None:
    """Three commits: the registry is applied at the second; the third is what a trial
    applies."""
    repo.write("environments/base.yml", _image("base"))
    repo.write(
        "environments/pydata/env.yml", f"name: pydata\nimage: {CONDA_IMAGE}\nconda_file: c.yml\n"
    )
    repo.write("environments/pydata/c.yml", CONDA.format(v="1.26.4"))
    repo.write("environments/served/env.yml", "name: served\nbuild:\n  path: ctx\n")
    repo.write("environments/served/ctx/Dockerfile", DOCKERFILE)
    repo.write("environments/served/ctx/requirements.txt", "flask==3.0.0\n")
    repo.write("environments/meta.yml", _image("meta") + "tags:\n  team: a\n")
    for i in range(4):
        repo.write(f"environments/retired-{i}.yml", _image(f"retired-{i}", description=str(i)))
    repo.write("environments/returning.yml", _image("returning", description="back"))
    repo.commit("first")
    repo.remove("environments/returning.yml")
    repo.commit("returning leaves")


def move_git(repo: GitRepo) -> None:
    for i in range(6):
        repo.write(f"environments/new-{i}.yml", _image(f"new-{i}", description=f"new {i}"))
    repo.write("environments/plain-conda.yml", _image("plain-conda", image=CONDA_IMAGE))
    repo.write("environments/pydata/c.yml", CONDA.format(v="2.0.1"))
    repo.write("environments/served/ctx/requirements.txt", "flask==3.0.3\n")
    repo.write("environments/meta.yml", _image("meta") + "tags:\n  team: b\n")
    for i in range(4):
        repo.remove(f"environments/retired-{i}.yml")
    repo.write("environments/returning.yml", _image("returning", description="back"))
    repo.commit("everything moves")


def child_env(delay: float = 0.0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env.update(GIT_ENV)
    if delay:
        env[WRITE_DELAY_VARIABLE] = str(delay)
    return env


def reconciler(repo: Path, db: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "reconciler",
        args[0],
        "--repo",
        str(repo),
        "--registry",
        f"sqlite:///{db}",
        *args[1:],
    ]


def run(
    repo: Path, db: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        reconciler(repo, db, *args),
        env={**child_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Killed:
    seconds: float
    finished: bool  # the apply was over before the signal
    code: int
    writes: int  # registry writes begun before the kill (or in all)
    first_write: float | None  # seconds from the start to the first write


def apply_and_kill(
    repo: Path, db: Path, after: float, delay: float, *args: str, at_write: int | None = None
) -> Killed:
    """Run an apply and SIGKILL it ``after`` seconds, or, with ``at_write``, as that write
    begins (during its delay: before it reaches the registry). A number of writes is a
    moment of the apply itself, which a busy machine does not move."""
    log = db.with_name(db.name + ".writes")
    log.unlink(missing_ok=True)
    env = child_env(delay)
    env[WRITE_LOG_VARIABLE] = str(log)

    def writes() -> int:
        try:
            return log.read_text().count("\n")
        except FileNotFoundError:
            return 0

    process = subprocess.Popen(
        reconciler(repo, db, "apply", *args),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = time.monotonic()
    first_write: float | None = None
    finished = True
    deadline = started + after
    while process.poll() is None:
        seen = writes()
        if first_write is None and seen:
            first_write = time.monotonic() - started
        if (seen >= at_write) if at_write is not None else time.monotonic() >= deadline:
            process.send_signal(signal.SIGKILL)
            finished = False
            break
        time.sleep(0.002)
    process.wait(timeout=30)
    return Killed(time.monotonic() - started, finished, process.returncode, writes(), first_write)


def copy_registry(template: Path, target: Path) -> None:
    shutil.copyfile(template, target)


# -- reading a registry as plain rows --------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    version: str
    digest: str
    archived: bool
    tags: dict[str, str]
    seq: int


def rows(db: Path) -> list[Row]:
    import json

    conn = sqlite3.connect(db)
    try:
        found = conn.execute(
            "SELECT name, version, digest, archived, tags, seq FROM versions ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    return [Row(n, v, d, bool(a), json.loads(t), s) for n, v, d, a, t, s in found]


def containers(db: Path) -> dict[str, bool]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT name, archived FROM containers").fetchall())
    finally:
        conn.close()


def build_statuses(db: Path) -> dict[tuple[str, str], str]:
    conn = sqlite3.connect(db)
    try:
        return {(n, v): s for n, v, s in conn.execute("SELECT name, version, status FROM builds")}
    finally:
        conn.close()


def generation(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
    finally:
        conn.close()


def check_consistent(before: list[Row], db: Path) -> list[Row]:
    """Nothing lost, no duplicate content under one name from this run, provenance on
    every version. Returns the rows."""
    after = rows(db)
    by_key = {(r.name, r.version): r for r in after}
    assert len(by_key) == len(after), "a (name, version) appears twice"
    for old in before:
        kept = by_key.get((old.name, old.version))
        assert kept is not None, f"lost {old.name}:{old.version}"
        assert kept.digest == old.digest and kept.seq == old.seq
    first_new = max((r.seq for r in before), default=0)
    created = [(r.name, r.digest) for r in after if r.seq > first_new]
    assert len(created) == len(set(created)), f"duplicate versions: {created}"
    for row in after:
        missing = [stamp for stamp in PROVENANCE if not row.tags.get(stamp)]
        assert not missing, f"{row.name}:{row.version} lacks {missing}"
        assert row.tags[STAMP_CONTENT_DIGEST] == row.digest
    return after


def comparable(db: Path) -> tuple[Any, ...]:
    """The registry without timestamps and image locations: what convergence compares."""
    return (
        sorted((r.name, r.version, r.digest, r.archived, sorted(r.tags.items())) for r in rows(db)),
        sorted(containers(db).items()),
        sorted(build_statuses(db).items()),
    )
