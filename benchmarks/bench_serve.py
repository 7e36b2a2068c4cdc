"""`reconciler serve` at scale: idle cost, endpoint latency, webhook-triggered reconciles.

Run from the project root:

    .venv/bin/python benchmarks/bench_serve.py [--count N] [--idle S] [--requests R] [--edits E]

It builds the repository of bench_core.py (N environments), makes a bare repository its
remote, applies once, and starts ``reconciler serve`` (interval 1 h, debounce 20 ms) on a
free loopback port. Then:

* idle: the CPU time the serve process used (utime + stime from /proc) over S seconds of
  doing nothing, as a share of one core;
* latency: R sequential GETs each of /healthz (the floor: no work), /metrics,
  /api/status and / (the dashboard) over one kept-alive connection;
* webhook: E times, an author's clone changes one environment's description, pushes it to
  the bare remote and POSTs a signed push event; timed from the POST to the new
  description being visible through a separate SQLite connection (debounce, fetch and
  apply of the fetched branch inside). The drift report that follows a push is waited for
  before the next one and its duration printed;
* watch, for comparison: ``reconciler watch --debounce 20`` on the same working tree,
  the same edit made in place, timed from the write to the registry update.

A measurement, not a test: it prints figures and exits 0 unless a process fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_core import RECONCILER, environment_yaml, make_repo

from reconciler.serve.webhook import signature

SECRET = "bench-secret"
DEBOUNCE_MS = 20
TARGET_IDLE_PERCENT = 1.0
TARGET_LATENCY_MS = 50.0
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=GIT_ENV
    )
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class Process:
    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(
            target=lambda: self.lines.extend(iter(self.popen.stdout.readline, ""))  # type: ignore[union-attr]
        )
        self.reader.start()

    def wait_for(self, needle: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if needle in line:
                    return line.strip()
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"no line with {needle!r}: {self.lines}")
            time.sleep(0.02)

    def stop(self) -> int:
        self.popen.send_signal(signal.SIGINT)
        code = self.popen.wait(60)
        self.reader.join(5)
        return code


def described(conn: sqlite3.Connection, description: str) -> bool:
    row = conn.execute(
        "SELECT description FROM versions WHERE name='env-00007' AND version='1'"
    ).fetchone()
    return row is not None and row[0] == description


def until(check: Callable[[], bool], timeout: float = 60, pause: float = 0.001) -> None:
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise SystemExit("timed out waiting for the registry")
        time.sleep(pause)


def observed(port: int) -> int:
    """Cycles whose results the HTTP surface shows (its work after a cycle is done)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/api/status")
        cycles: int = json.loads(connection.getresponse().read())["health"]["cycles"]
        return cycles
    finally:
        connection.close()


def drift_reports(process: Process) -> list[str]:
    return [line for line in process.lines if "(drift report)" in line]


def edited(index: int, description: str) -> str:
    return environment_yaml(index).replace(
        f"description: Benchmark environment {index} for tabular training jobs.",
        f"description: {description}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measured")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="reconciler-bench-serve-"))
    try:
        return measure(tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(tmp: Path, args: argparse.Namespace) -> int:
    print(
        f"serve benchmark: N={args.count} environments, idle {args.idle:g} s, "
        f"{args.requests} requests per endpoint, {args.edits} edits, {os.cpu_count()} CPUs"
    )
    repo = tmp / "repo"
    make_repo(repo, args.count)
    git(repo, "branch", "-M", "main")
    git(tmp, "clone", "--quiet", "--bare", str(repo), str(tmp / "remote.git"))
    git(repo, "remote", "add", "origin", str(tmp / "remote.git"))
    git(repo, "fetch", "--quiet", "origin")
    git(repo, "branch", "--quiet", "--set-upstream-to=origin/main")
    git(tmp, "clone", "--quiet", str(tmp / "remote.git"), str(tmp / "author"))
    subprocess.run(
        [RECONCILER, "apply", "--repo", str(repo)], check=True, capture_output=True, env=GIT_ENV
    )
    port = free_port()
    serve = Process(
        [
            RECONCILER,
            "serve",
            "--repo",
            str(repo),
            "--listen",
            f"127.0.0.1:{port}",
            "--interval",
            "1h",
            "--debounce",
            str(DEBOUNCE_MS),
        ],
        env={**GIT_ENV, "RECONCILER_WEBHOOK_SECRET": SECRET},
    )
    try:
        print(f"serve started: {serve.wait_for('reconcile 1 (start)')}")
        time.sleep(2)  # let the first cycle's tail (report, render) settle
        # -- idle -------------------------------------------------------------------------
        before, wall = cpu_seconds(serve.popen.pid), time.perf_counter()
        time.sleep(args.idle)
        used, wall = cpu_seconds(serve.popen.pid) - before, time.perf_counter() - wall
        percent = 100 * used / wall
        verdict = "PASS" if percent < TARGET_IDLE_PERCENT else "MISS"
        print(
            f"idle: {used * 1000:.0f} ms CPU over {wall:.1f} s = {percent:.3f}% of a core "
            f"(target < {TARGET_IDLE_PERCENT:g}%: {verdict})"
        )
        # -- latency ----------------------------------------------------------------------
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        floor = None
        for path in ("/healthz", "/metrics", "/api/status", "/"):
            times, size = [], 0
            for _ in range(args.requests):
                start = time.perf_counter()
                connection.request("GET", path)
                response = connection.getresponse()
                size = len(response.read())
                times.append((time.perf_counter() - start) * 1000)
                assert response.status == 200, (path, response.status)
            p50, p95 = statistics.median(times), percentile(times, 0.95)
            floor = floor or p50
            note = "" if path == "/healthz" else f", {p50 / floor:.1f}x the floor"
            target = (
                ""
                if path in ("/healthz", "/")
                else f" (target < {TARGET_LATENCY_MS:g} ms: "
                f"{'PASS' if p95 < TARGET_LATENCY_MS else 'MISS'})"
            )
            print(
                f"GET {path:12} {size / 1024:8.1f} KiB: p50 {p50:6.2f} ms, p95 {p95:6.2f} ms"
                f"{note}{target}"
            )
        connection.close()
        # -- webhook-triggered reconciles -------------------------------------------------
        conn = sqlite3.connect(repo / ".reconciler" / "registry.db", isolation_level=None)
        target = tmp / "author" / "environments" / "env-00007" / "environment.yml"
        webhook, push_times = [], []
        for edit in range(args.edits):
            description = f"Pushed {edit} at {time.time()}"
            target.write_text(edited(7, description))
            git(tmp / "author", "commit", "--quiet", "-am", f"edit {edit}")
            start = time.perf_counter()
            git(tmp / "author", "push", "--quiet", "origin", "main")
            push_times.append((time.perf_counter() - start) * 1000)
            head = git(tmp / "author", "rev-parse", "HEAD")
            body = json.dumps({"ref": "refs/heads/main", "after": head}).encode()
            hook = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            start = time.perf_counter()
            hook.request(
                "POST",
                "/hooks/github",
                body,
                {
                    "X-GitHub-Event": "push",
                    "X-Hub-Signature-256": signature(SECRET.encode(), body),
                    "Content-Type": "application/json",
                },
            )
            assert hook.getresponse().status == 202
            until(lambda d=description: described(conn, d))  # type: ignore[misc]
            webhook.append((time.perf_counter() - start) * 1000)
            hook.close()
            # The push cycle applies only; the drift report follows once triggers are quiet.
            # Each push is measured against an idle service, as a real one finds it.
            reports = edit + 1
            until(lambda n=reports: len(drift_reports(serve)) >= n, 600)  # type: ignore[misc]
            number = int(drift_reports(serve)[-1].split(" reconcile ")[1].split()[0])
            until(lambda n=number: observed(port) >= n, 600, 0.1)  # type: ignore[misc]
        last = [line for line in serve.lines if "(push " in line][-1].strip()
        report = drift_reports(serve)[-1].strip()
    finally:
        print(f"serve exit code after SIGINT: {serve.stop()}")
    print(f"last webhook reconcile: {last}")
    print(f"the drift report after it: {report}")
    # -- watch, for comparison ------------------------------------------------------------
    watch = Process(
        [RECONCILER, "watch", "--repo", str(repo), "--debounce", str(DEBOUNCE_MS)], env=GIT_ENV
    )
    watched = []
    try:
        watch.wait_for("reconcile 1 (start)")
        target = repo / "environments" / "env-00007" / "environment.yml"
        for edit in range(args.edits):
            description = f"Watched {edit} at {time.time()}"
            target.write_text(edited(7, description))
            start = time.perf_counter()
            until(lambda d=description: described(conn, d))  # type: ignore[misc]
            watched.append((time.perf_counter() - start) * 1000)
            time.sleep(0.3)
    finally:
        watch.stop()
        conn.close()
    w50, w95 = statistics.median(webhook), percentile(webhook, 0.95)
    f50, f95 = statistics.median(watched), percentile(watched, 0.95)
    print(
        f"webhook POST -> registry updated (push to a bare remote, fetch, "
        f"apply; debounce {DEBOUNCE_MS} ms): p50 {w50:.0f} ms, p95 {w95:.0f} ms "
        f"(the push itself, not timed: p50 {statistics.median(push_times):.0f} ms)"
    )
    print(
        f"watch write -> registry updated (debounce {DEBOUNCE_MS} ms): p50 {f50:.0f} ms, "
        f"p95 {f95:.0f} ms; webhook / watch p50: {w50 / f50:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
