"""What scanning the repository for consumers of environments costs a plan.

Run from the project root:

    .venv/bin/python benchmarks/bench_consumers.py [--count N] [--consumers M]

It builds a git repository of N environments (as ``bench_core.py`` does) and M consumer
files (pipelines pinning, following and naming environments in every form; one in ten a
Python script), applies it, and then measures whole ``reconciler plan`` processes, the
same repository with the scan switched off (``[consumers] enabled = false``) as the floor:

* cold plan (parse cache deleted): with the scan / without; target <= 1.30;
* no-op plan (answered from the plan cache): with the scan / without; target <= 1.05
  (nothing measurable: the medians of interleaved runs, within noise).

This is a measurement, not a test: it exits 0 whatever the figures, and non-zero only
when a reconciler run itself fails (wrong exit code).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import (
    GIT_IDENTITY,
    RECONCILER,
    BenchError,
    fmt,
    git,
    make_repo,
    project_revision,
    run_timed,
)

TARGET_COLD_RATIO = 1.30
TARGET_NOOP_RATIO = 1.05
OFF = "[consumers]\nenabled = false\n"


def pipeline_yaml(i: int, count: int) -> str:
    a, b, c = i % count, (i * 7 + 3) % count, (i * 13 + 5) % count
    return (
        "$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json\n"
        "type: pipeline\n"
        f"display_name: benchmark pipeline {i}\n"
        "settings:\n"
        "  default_compute: azureml:cpu-cluster\n"
        "jobs:\n"
        "  prep:\n"
        "    type: command\n"
        "    command: python prep.py\n"
        f"    environment: azureml:env-{a:05d}:1  # pinned\n"
        "  train:\n"
        "    type: command\n"
        "    component: azureml:train-component:3\n"
        f'    environment: "azureml:env-{b:05d}@latest"\n'
        f"  score: {{type: command, environment: 'azureml://registries/shared/environments/"
        f"env-{c:05d}/versions/1'}}\n"
    )


def script_py(i: int, count: int) -> str:
    return (
        "from azure.ai.ml import command\n\n"
        f'job = command(command="python train.py", environment="azureml:env-{i % count:05d}:1")\n'
    )


def settle(repo: Path) -> None:
    """Wait for the `git gc --auto` a big commit starts in the background (it packs and
    removes loose objects under a clone's feet), then switch automatic gc off."""
    deadline = time.time() + 600
    while (repo / ".git" / "gc.pid").exists() and time.time() < deadline:
        time.sleep(0.5)
    git(repo, "config", "gc.auto", "0")
    git(repo, "config", "maintenance.auto", "false")


def make_consumers(repo: Path, count: int, consumers: int) -> None:
    settle(repo)
    for i in range(consumers):
        team = repo / "pipelines" / f"team-{i % 50:02d}"
        team.mkdir(parents=True, exist_ok=True)
        if i % 10 == 9:
            (team / f"submit-{i:05d}.py").write_text(script_py(i, count))
        else:
            (team / f"job-{i:05d}.yml").write_text(pipeline_yaml(i, count))
    git(repo, "add", "-A")
    git(repo, *GIT_IDENTITY, "commit", "-q", "-m", f"{consumers} consumer files")
    settle(repo)


def clone_without_scan(repo: Path, off: Path) -> None:
    """A clone of the same commit with the scan switched off (in a settings file git
    ignores), with its own registry: each keeps its own plan cache."""
    git(repo.parent, "clone", "-q", str(repo), str(off))
    (off / ".git" / "info" / "exclude").write_text("reconciler.toml\n")
    (off / "reconciler.toml").write_text(OFF)
    old = time.time() - 10  # older than the plan cache's racy window
    for path in (off, off / "reconciler.toml"):
        os.utime(path, (old, old))


def median(values: list[float]) -> float:
    return statistics.median(values)


def cold(repo: Path) -> float:
    shutil.rmtree(repo / ".reconciler" / "cache", ignore_errors=True)
    return run_timed([RECONCILER, "plan", "--repo", str(repo)], repo, 0, "cold plan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000, help="environments (default 10000)")
    parser.add_argument("--consumers", type=int, default=10000, help="consumer files")
    parser.add_argument("--cold-runs", type=int, default=5, help="cold plans of each kind")
    parser.add_argument("--runs", type=int, default=15, help="no-op plans of each kind")
    args = parser.parse_args()
    if min(args.count, args.consumers, args.cold_runs, args.runs) < 1:
        parser.error("counts must be at least 1")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    tmp = Path(tempfile.mkdtemp(prefix="consumer-scan-bench-"))
    os.environ["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    try:
        return measure(tmp / "repo", args)
    except BenchError as exc:
        print(f"\nABORTED: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(repo: Path, args: argparse.Namespace) -> int:
    n, m = args.count, args.consumers
    print(f"consumer scan benchmark: {n} environments, {m} consumer files, {os.cpu_count()} CPUs")
    print(f"  project revision: {project_revision()}")
    print(f"  load average at start: {os.getloadavg()[0]:.1f} (other work skews every figure)")
    start = time.perf_counter()
    make_repo(repo, n)
    make_consumers(repo, n, m)
    off = repo.parent / "repo-without-scan"
    clone_without_scan(repo, off)
    repos = {True: repo, False: off}
    print(f"generate + git commit + clone: {fmt(time.perf_counter() - start)}")
    for where in repos.values():
        run_timed([RECONCILER, "apply", "--repo", str(where)], where, 0, "apply")
        cold(where)  # warm-up (bytecode, OS file cache)

    colds: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.cold_runs):
        for on in (False, True):
            colds[on].append(cold(repos[on]))
    cold_on, cold_off = median(colds[True]), median(colds[False])
    cold_ratio = cold_on / cold_off
    print(
        f"cold plan without the scan: {fmt(cold_off)}  [{', '.join(map(fmt, colds[False]))}]\n"
        f"cold plan with the scan:    {fmt(cold_on)}  [{', '.join(map(fmt, colds[True]))}]\n"
        f"  ratio {cold_ratio:.2f} (target <= {TARGET_COLD_RATIO:.2f}); the scan adds "
        f"{fmt(cold_on - cold_off)}"
    )

    noops: dict[bool, list[float]] = {True: [], False: []}
    for where in repos.values():  # fill each plan cache, then time both interleaved
        run_timed([RECONCILER, "plan", "--repo", str(where)], where, 0, "warm-up no-op plan")
    for _ in range(args.runs):
        for on in (False, True):
            where = repos[on]
            noops[on].append(
                run_timed([RECONCILER, "plan", "--repo", str(where)], where, 0, "no-op plan")
            )
    noop_on, noop_off = median(noops[True]), median(noops[False])
    noop_ratio = noop_on / noop_off
    print(
        f"no-op plan without the scan (median of {args.runs}): {fmt(noop_off)} "
        f"[min {fmt(min(noops[False]))}, max {fmt(max(noops[False]))}]\n"
        f"no-op plan with the scan (median of {args.runs}):    {fmt(noop_on)} "
        f"[min {fmt(min(noops[True]))}, max {fmt(max(noops[True]))}]\n"
        f"  ratio {noop_ratio:.2f} (target <= {TARGET_NOOP_RATIO:.2f}); difference "
        f"{fmt(noop_on - noop_off)}"
    )
    if noop_on > 0.5 * cold_on:
        print("  WARNING: the no-op plan is not answered from the plan cache")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")
    print()
    print(f"{'figure':<32} {'value':>8} {'target':>8}  ok")
    for label, value, target in (
        ("cold plan with / without scan", cold_ratio, TARGET_COLD_RATIO),
        ("no-op plan with / without scan", noop_ratio, TARGET_NOOP_RATIO),
    ):
        print(
            f"{label:<32} {value:>8.2f} {'<= ' + format(target, '.2f'):>8}  "
            f"{'yes' if value <= target else 'NO'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
