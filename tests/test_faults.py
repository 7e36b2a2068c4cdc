"""Backend faults: a busy SQLite database, a full disk, a Docker Engine that stops
answering mid-build, an OCI registry that is down. Each gives a clear error (no
traceback), loses nothing, and the next run heals."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GitRepo, image_env
from tests.crash_support import Row, check_consistent, comparable, reconciler, rows, run
from tests.crash_support import child_env as _env
from tests.docker_support import DockerEnv
from tests.socket_proxy import SocketProxy

HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


@contextlib.contextmanager
def write_transaction_held(db: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holds a write transaction on the registry."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    try:
        yield holder
    finally:
        holder.wait(timeout=seconds + 30)


def _applied(tmp_path: Path, count: int = 3) -> tuple[GitRepo, Path]:
    root = tmp_path / "repo"
    root.mkdir()
    repo = GitRepo(root)
    for i in range(count):
        repo.write(f"environments/e{i}.yml", image_env(f"e{i}", image=f"busybox:{i}"))
    repo.commit("first")
    db = tmp_path / "registry.db"
    assert run(root, db, "apply").returncode == 0
    for i in range(count, count + 30):  # the next apply writes a lot
        repo.write(
            f"environments/e{i}.yml", image_env(f"e{i}", description="x" * 2000, image="busybox")
        )
    repo.write("environments/e0.yml", image_env("e0", image="busybox:changed"))
    repo.commit("more")
    return repo, db


def _heals(repo: GitRepo, db: Path, before: list[Row]) -> None:
    healed = run(repo.root, db, "apply")
    assert healed.returncode == 0, healed.stdout + healed.stderr
    check_consistent(before, db)
    assert len(rows(db)) == len(before) + 31
    assert run(repo.root, db, "plan").returncode == 0


def test_a_brief_write_transaction_elsewhere_is_waited_for(tmp_path: Path) -> None:
    repo, db = _applied(tmp_path)
    before = rows(db)
    with write_transaction_held(db, 2.0):
        done = run(repo.root, db, "apply")
    assert done.returncode == 0, done.stdout + done.stderr
    check_consistent(before, db)
    assert len(rows(db)) == len(before) + 31


def test_a_long_write_transaction_elsewhere_is_a_clear_error(tmp_path: Path) -> None:
    repo, db = _applied(tmp_path)
    before, state = rows(db), comparable(db)
    with write_transaction_held(db, 14.0):  # longer than the 10 s busy timeout
        done = run(repo.root, db, "apply")
    assert done.returncode == 1
    assert "the database is busy" in done.stderr and "Traceback" not in done.stderr
    assert comparable(db) == state  # nothing half-written
    _heals(repo, db, before)


def _file_size_limit(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_while_writing_is_a_clear_error(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes writes past 48 KiB fail as a full disk would (EFBIG; Python
    ignores SIGXFSZ): the registry's write-ahead log cannot grow enough to commit."""
    repo, db = _applied(tmp_path)
    before, state = rows(db), comparable(db)
    done = subprocess.run(
        reconciler(repo.root, db, "apply"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: _file_size_limit(48 * 1024),
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: cannot commit to the registry" in done.stderr
    assert "Traceback" not in done.stderr
    assert comparable(db) == state
    _heals(repo, db, before)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a real ENOSPC (needs root, as in CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path, leave: int = 0) -> Path:
    """Fill the disk, then give back ``leave`` bytes."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_no_space_left_on_the_registry_disk(tmp_path: Path, tiny_disk: Path) -> None:
    repo, first = _applied(tmp_path)
    db = tiny_disk / "registry.db"
    conn = sqlite3.connect(first)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    db.write_bytes(first.read_bytes())
    before, state = rows(db), comparable(db)
    filler = _fill(tiny_disk, leave=64 * 1024)  # room to open, not to write it all
    done = run(repo.root, db, "apply")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "disk is full" in done.stderr or "disk I/O error" in done.stderr, done.stderr
    filler.unlink()
    assert comparable(db) == state
    _heals(repo, db, before)


def test_no_space_left_for_the_report(tmp_path: Path, tiny_disk: Path) -> None:
    """The registry is written; the report printed to a full disk fails clearly."""
    repo, db = _applied(tmp_path)
    before = rows(db)
    _fill(tiny_disk)
    with open(tiny_disk / "report.txt", "w") as report:
        done = subprocess.run(
            reconciler(repo.root, db, "apply"),
            env=_env(),
            stdout=report,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "error: cannot write the output: No space left on device" in done.stderr
    check_consistent(before, db)
    assert len(rows(db)) == len(before) + 31  # the registry itself was written
    started = time.monotonic()
    assert run(repo.root, db, "plan").returncode == 0
    assert time.monotonic() - started < 30


# -- the build services ------------------------------------------------------------------


def _building_repo(tmp_path: Path, seconds: int = 0) -> GitRepo:
    from tests.docker_support import BUSYBOX_IMAGE

    root = tmp_path / "repo"
    root.mkdir()
    repo = GitRepo(root)
    repo.write("environments/slow/env.yml", "name: slow\nbuild:\n  path: ctx\n")
    token = uuid.uuid4().hex  # never in the engine's layer cache
    repo.write(
        "environments/slow/ctx/Dockerfile",
        f"FROM {BUSYBOX_IMAGE}\nRUN echo {token} && sleep {seconds}\n",
    )
    repo.commit("slow")
    return repo


def _show(repo: GitRepo, db: Path, target: str) -> dict[str, Any]:
    shown = run(repo.root, db, "show", target, "--json")
    assert shown.returncode == 0, shown.stderr
    document: dict[str, Any] = json.loads(shown.stdout)
    return document


def test_docker_engine_gone_mid_build(tmp_path: Path, docker_env: DockerEnv) -> None:
    repo = _building_repo(tmp_path, seconds=5)
    db = tmp_path / "registry.db"
    proxy = SocketProxy(Path(tempfile.mkdtemp(dir="/tmp")) / "d.sock", docker_env.docker_host[7:])
    image_registry = docker_env.fresh_image_registry()
    apply = subprocess.Popen(
        reconciler(repo.root, db, "apply", "--image-registry", image_registry),
        env={**_env(), "DOCKER_HOST": proxy.docker_host},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert apply.stderr is not None
    while "building" not in (line := apply.stderr.readline()):
        assert line, "the build never started"
    time.sleep(1.0)  # inside `RUN sleep 5`
    proxy.cut()
    out, err = apply.communicate(timeout=120)
    assert apply.returncode == 1, out + err
    assert "Traceback" not in err and "stopped answering" in err
    record = _show(repo, db, "slow:1")["build"]
    assert record["status"] == "failed" and "stopped answering" in record["message"]
    assert record["next_attempt_at"] is None  # not the environment's fault: no backoff
    # the engine is back: the next run builds it
    healed = run(repo.root, db, "apply", "--image-registry", image_registry)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert _show(repo, db, "slow:1")["build"]["status"] == "succeeded"


@contextlib.contextmanager
def private_registry(tmp_path: Path, port: int) -> Iterator[str]:
    """A distribution registry of this test's own (the shared one is never stopped)."""
    config = tmp_path / f"registry-{port}.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'registry-data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the private registry did not start"
                time.sleep(0.1)
        yield f"127.0.0.1:{port}/faults"
    finally:
        process.terminate()
        process.wait(timeout=20)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_oci_registry_down_then_back(tmp_path: Path, docker_env: DockerEnv) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    repo = _building_repo(tmp_path)
    db = tmp_path / "registry.db"
    port = _free_port()
    image_registry = f"127.0.0.1:{port}/faults"
    down = run(repo.root, db, "apply", "--image-registry", image_registry)  # nothing listens
    assert down.returncode == 1 and "Traceback" not in down.stderr
    record = _show(repo, db, "slow:1")["build"]
    assert record["status"] == "failed" and "is unreachable" in record["message"]
    assert record["next_attempt_at"] is None
    assert _show(repo, db, "slow:1")["version"] == "1"  # registered all the same
    with private_registry(tmp_path, port) as back:
        assert back == image_registry
        healed = run(repo.root, db, "apply", "--image-registry", image_registry)
        assert healed.returncode == 0, healed.stdout + healed.stderr
        record = _show(repo, db, "slow:1")["build"]
        assert record["status"] == "succeeded" and record["image"].startswith(image_registry)
