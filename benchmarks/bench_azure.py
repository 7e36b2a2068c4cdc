"""The Azure ML backend at scale, against ``reconciler emulator`` over HTTPS on loopback.

Run from the project root:

    .venv/bin/python benchmarks/bench_azure.py [--environments 1000] [--latency-ms 50]
        [--rate-limit 50] [--large 10000] [--skip-large] [--skip-throttled]

For N environments (an image and a conda file each) in a real git repository, each
command run as a user runs it (``python -m reconciler``, its own process), the emulator
counting the requests it serves:

* ``apply`` of N creates;
* ``plan --refresh``: a full read that changes nothing;
* ``plan``: the incremental view, nothing changed since the last run;

first with ``--latency-ms`` (the service's round trip), then with ``--rate-limit`` as
well (429 with Retry-After beyond it; the run reports how long it waited), then the same
at ``--large`` environments with no added latency. The floor each figure is measured
against in the same run: the emulator's raw keep-alive GET throughput, and the time and
requests an ideal client would need (its sequential round trips divided by the
concurrency). Targets are printed beside the figures; this is a measurement, not a test:
it exits 0 whatever the figures, and non-zero only when a command fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_emulator import EmulatorProcess, emulator, keep_alive

URL = "azureml://subscriptions/bench/resourceGroups/bench/workspaces/bench"
PAGE = 100  # the emulator's (and the service's) listing page


@dataclass
class Figure:
    label: str
    seconds: float
    requests: int
    by_method: dict[str, int]
    throttled: int
    waited: float | None
    code: int

    def line(self, budget_requests: float | None, budget_seconds: float | None) -> str:
        checks = []
        if budget_requests is not None:
            ok = self.requests <= budget_requests
            checks.append(f"requests <= {budget_requests:.0f}: {'yes' if ok else 'NO'}")
        if budget_seconds is not None:
            ok = self.seconds <= budget_seconds
            checks.append(f"time <= {budget_seconds:.0f}s: {'yes' if ok else 'NO'}")
        methods = " ".join(f"{k} {v}" for k, v in sorted(self.by_method.items()))
        waited = "" if self.waited is None else f", waited {self.waited:.1f}s on throttling"
        throttled = f", {self.throttled} throttled (429){waited}" if self.throttled else waited
        return (
            f"  {self.label:<26} {self.seconds:7.1f} s  {self.requests:6d} requests "
            f"({methods}){throttled}  exit {self.code}\n    {'; '.join(checks)}"
        )


def make_repo(root: Path, count: int) -> None:
    root.mkdir(parents=True)
    env_dir = root / "environments"
    env_dir.mkdir()
    for i in range(count):
        folder = env_dir / f"env-{i:05d}"
        folder.mkdir()
        (folder / "env.yml").write_text(
            f"name: env-{i:05d}\nimage: busybox:1.36\nconda_file: conda.yml\n"
            f"description: environment {i}\ntags:\n  team: bench\n"
        )
        (folder / "conda.yml").write_text(
            f"channels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - pip\n"
            f"  - pip:\n    - package-{i}==1.0\n"
        )
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "environments"], cwd=root, check=True)


def counters(running: EmulatorProcess, reset: bool) -> dict[str, Any]:
    found: dict[str, Any] = running.control("DELETE" if reset else "GET", "counters")
    return found


def run(running: EmulatorProcess, repo: Path, label: str, *args: str) -> Figure:
    env = dict(
        os.environ,
        RECONCILER_AZUREML_ENDPOINT=running.endpoint,
        RECONCILER_AZUREML_TOKEN=running.token,
        REQUESTS_CA_BUNDLE=running.ca,
    )
    counters(running, reset=True)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args, "--repo", str(repo), "--registry", URL],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    counts = counters(running, reset=False)
    if done.returncode not in (0, 2):
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"{label}: exit {done.returncode}")
    waited = None
    for line in done.stderr.splitlines():  # the CLI's report of throttling
        if "waited" in line and "throttl" in line:
            waited = float(line.split("waited ")[1].split("s")[0])
    return Figure(
        label,
        seconds,
        int(counts["total"]),
        dict(counts.get("by_method") or {}),
        int((counts.get("by_status") or {}).get("429") or 0),
        waited,
        done.returncode,
    )


REFRESH = ["plan", "--refresh"]  # a client without incremental reads: ["plan"]


def scenario(work: Path, count: int, *options: str, budgets: bool) -> list[Figure]:
    repo = work / f"repo-{count}-{'-'.join(options) or 'plain'}".replace("--", "")
    make_repo(repo, count)
    data = work / f"emulator-{repo.name}"
    data.mkdir()
    with emulator(data, *options) as running:
        figures = [
            run(running, repo, "apply (creates)", "apply"),
            run(running, repo, "plan --refresh (no-op)", *REFRESH),
            run(running, repo, "plan (incremental no-op)", "plan"),
        ]
    pages = -(-count // PAGE)
    limits: list[tuple[float | None, float | None]] = [
        (3 * count + 2 * pages + 10, 60.0),
        (count + pages + 10, 10.0),
        (pages + 10, 2.0),
    ]
    print(f"\nN = {count}, emulator {' '.join(options) or '(no added latency)'}:")
    for figure, (requests, seconds) in zip(figures, limits, strict=True):
        print(figure.line(requests if budgets else None, seconds if budgets else None))
    if figures[0].requests:
        print(f"  apply: {figures[0].requests / count:.2f} requests per environment")
    return figures


def raw_throughput(work: Path) -> None:
    data = work / "emulator-raw"
    data.mkdir()
    with emulator(data) as running:
        from bench_emulator import seed

        seed(running, 1)
        durations = keep_alive(running, 500)
    rate = len(durations) / sum(durations)
    print(f"\nRaw keep-alive GET throughput of the emulator: {rate:.0f} requests/s (goal >= 300)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--environments", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--rate-limit", type=int, default=50)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-throttled", action="store_true")
    parser.add_argument(
        "--no-refresh-flag",
        action="store_true",
        help="for a reconciler without `plan --refresh` (every plan a full read)",
    )
    args = parser.parse_args()
    if args.no_refresh_flag:
        REFRESH[:] = ["plan"]
    with tempfile.TemporaryDirectory(prefix="bench-azure-") as temporary:
        work = Path(temporary)
        raw_throughput(work)
        latency = ("--latency-ms", str(args.latency_ms))
        scenario(work, args.environments, *latency, budgets=True)
        if not args.skip_throttled:
            limited = (*latency, "--rate-limit", str(args.rate_limit))
            figures = scenario(work, args.environments, *limited, budgets=False)
            floors = ", ".join(
                f"{f.label}: {(f.requests - f.throttled) / args.rate_limit:.0f}s" for f in figures
            )
            print(f"  floor at {args.rate_limit} requests/s (answered requests / rate): {floors}")
            print(
                "  throttled runs: "
                + ", ".join(f"{f.label}: {f.throttled} x 429" for f in figures)
                + "; zero failures (every command exited 0 or 2)"
            )
        if not args.skip_large:
            scenario(work, args.large, budgets=False)
    print("\n" + json.dumps({"environments": args.environments, "latency_ms": args.latency_ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
