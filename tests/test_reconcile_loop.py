"""`reconciler reconcile --interval` / `--once` as a real process: status file, drift
report every cycle, backoff on a locked registry, clean stops."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.adapters.locking import file_lock
from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.spec.model import VersionWrite
from tests.conftest import GitRepo, image_env
from tests.processes import Running, reconciler_env, wait_for

REPORTS = ("drift-report.json", "drift-report.md", "drift-report.html")


def seed(repo: GitRepo) -> None:
    repo.write("environments/a.yml", image_env("a", description="first"))
    repo.commit("seed")


def status(repo: GitRepo) -> dict[str, Any]:
    path = repo.root / ".reconciler" / "status.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def reconcile(repo: GitRepo, started: list[Running], *extra: str) -> Running:
    process = Running("reconcile", "--repo", str(repo.root), *extra, cwd=repo.root)
    started.append(process)
    return process


def run_once(repo: GitRepo, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "reconcile",
            "--once",
            "--repo",
            str(repo.root),
            *extra,
        ],
        cwd=repo.root,
        capture_output=True,
        text=True,
        env=reconciler_env(),
        timeout=60,
    )


def test_every_cycle_applies_writes_the_report_and_the_status(
    repo: GitRepo, started: list[Running]
) -> None:
    seed(repo)
    process = reconcile(repo, started, "--interval", "1s")
    process.wait_line("reconcile 1 (start): applied 1 (a:1 create)")
    first = wait_for(lambda: (s := status(repo)).get("state") == "waiting" and s, what="status")
    assert first["pid"] == process.pid
    assert first["interval_seconds"] == 1.0
    run = first["last_run"]
    assert run["result"] == "applied" and run["counts"]["applied"] == 1
    assert run["applied"] == ["a:1 create"] and run["error"] is None
    gap = (moment(first["next_run_at"]) - moment(run["ended_at"])).total_seconds()
    assert 0.85 <= gap <= 1.15  # the interval, ±10% jitter
    report = repo.root / "drift-report" / "drift-report.json"
    assert json.loads(report.read_text())["in_sync"] is True
    generated = {json.loads(report.read_text())["generated_at"]}

    repo.write("environments/a.yml", image_env("a", description="second"))
    line = process.wait_line("(interval): applied 1 (a:1 update_metadata)", timeout=5)
    assert line
    later = wait_for(
        lambda: (s := status(repo)).get("last_run", {}).get("number", 0) >= 3 and s,
        what="a third cycle",
    )
    assert later["last_run"]["result"] == "in_sync"
    assert later["consecutive_failures"] == 0
    time.sleep(1.2)
    generated.add(json.loads(report.read_text())["generated_at"])
    assert len(generated) >= 2  # the report is made anew every cycle
    for name in REPORTS:
        assert (repo.root / "drift-report" / name).stat().st_size > 0

    code = process.stop(signal.SIGTERM)
    assert code == 0 and process.lines[-1] == "stopped", process.output()
    assert not any("Traceback" in line for line in process.errors)
    final = status(repo)
    assert final["state"] == "stopped" and final["next_run_at"] is None
    leftovers = [p.name for p in (repo.root / "drift-report").iterdir() if p.suffix == ".tmp"]
    assert leftovers == []


def test_a_locked_registry_backs_off_then_recovers(repo: GitRepo, started: list[Running]) -> None:
    seed(repo)
    lock = repo.registry_db.with_name("registry.db.lock")
    with file_lock(lock, 5, "registry"):
        process = reconcile(repo, started, "--interval", "30s", "--lock-timeout", "0.1")
        wait_for(
            lambda: (
                status(repo).get("consecutive_failures", 0) >= 2
                and status(repo)["state"] == "waiting"
            ),
            timeout=10,
            what="two failed cycles",
        )
        failing = status(repo)
        run = failing["last_run"]
        assert run["result"] == "error" and run["transient"] is True
        assert "locked by another reconciler" in run["error"]
        # second failure: 2 s ±10%, far below the 30 s interval
        gap = (moment(failing["next_run_at"]) - moment(run["ended_at"])).total_seconds()
        assert 0.8 <= gap <= 3.2, failing
        lines = process.reconciles()
        assert (
            "retry in 0.9" in lines[0] or "retry in 1.0" in lines[0] or "retry in 1.1" in lines[0]
        )
    wait_for(
        lambda: (
            (s := status(repo)).get("last_run", {}).get("result") == "applied"
            and s["state"] == "waiting"
        ),
        timeout=10,
        what="recovery",
    )
    healthy = status(repo)
    assert healthy["consecutive_failures"] == 0
    gap = (moment(healthy["next_run_at"]) - moment(healthy["last_run"]["ended_at"])).total_seconds()
    assert 26 <= gap <= 34  # back to the interval, ±10%
    stopping = time.monotonic()
    assert process.stop(signal.SIGINT) == 0, process.output()
    assert time.monotonic() - stopping < 3  # the 30 s wait is cut short
    assert status(repo)["state"] == "stopped"


def test_once_exit_codes_follow_the_result(repo: GitRepo) -> None:
    seed(repo)
    done = run_once(repo)
    assert done.returncode == 0, done.stderr
    assert "reconcile 1 (start): applied 1 (a:1 create)" in done.stdout
    assert status(repo)["state"] == "stopped"
    assert status(repo)["last_run"]["result"] == "applied"

    registry = SqliteRegistry(repo.registry_db)
    try:  # a hand edit in the registry: out-of-band drift, not repaired without --self-heal
        current = registry.get_version("a", "1")
        assert current is not None and current.content is not None
        registry.put_version(
            "a",
            "1",
            VersionWrite(current.content, current.digest or "", "edited by hand", current.tags),
        )
    finally:
        registry.close()
    done = run_once(repo)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "drift in 1 environment(s)" in done.stdout
    assert status(repo)["last_run"]["result"] == "drift"
    assert status(repo)["last_run"]["counts"]["drift"] == 1

    done = run_once(repo, "--self-heal")
    assert done.returncode == 0, done.stdout + done.stderr

    repo.write("environments/a.yml", "name: a\nimage: [\n")
    done = run_once(repo, "--status-file", "ops/status.json")
    assert done.returncode == 1
    assert "invalid: 1 error(s), registry left as is" in done.stdout
    ops = json.loads((repo.root / "ops" / "status.json").read_text())
    assert ops["last_run"]["result"] == "error"
    assert ops["last_run"]["errors"][0].startswith("environments/a.yml:")
    report = json.loads((repo.root / "drift-report" / "drift-report.json").read_text())
    assert report["has_errors"] is True  # the report is still written: it shows the errors


def test_reconcile_needs_an_interval_or_once(repo: GitRepo) -> None:
    seed(repo)
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "reconcile", "--repo", str(repo.root)],
        capture_output=True,
        text=True,
        env=reconciler_env(),
    )
    assert done.returncode == 1 and "--interval" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "reconcile", "--interval", "soon"],
        capture_output=True,
        text=True,
        env=reconciler_env(),
        cwd=Path(repo.root),
    )
    assert done.returncode == 1 and "not a duration" in done.stderr
