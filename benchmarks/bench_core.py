"""Core performance figures of the reconciler on a synthetic repository.

Run from the project root:

    .venv/bin/python benchmarks/bench_core.py [--count N] [--runs R]

It builds a git repository of N environments (each an ``environment.yml`` plus a
``conda.yml``) in a temporary directory and measures:

* parse baseline: reading and parsing all 2N YAML files with PyYAML's C loader in a fresh
  interpreter (the floor any reconciler run has to pay when nothing is cached; listing
  the files and starting the interpreter are not timed);
* apply: ``reconciler apply --no-cache`` into an empty registry as a whole process,
  against the parse baseline, and the apply step alone (N creates inside one registry
  batch) in a fresh interpreter;
* cold plan: ``reconciler plan`` with the parse cache deleted (registry already in step),
  as a whole process, against the parse baseline;
* no-op plan: repeated ``reconciler plan`` (working tree, and ``--ref HEAD``) as whole
  processes, against ``git ls-tree -r HEAD`` as a whole process.

This is a measurement, not a test: it exits 0 whatever the figures, and non-zero only
when a reconciler run itself fails (wrong exit code), which it reports with its stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RECONCILER = str(BIN / "reconciler") if (BIN / "reconciler").exists() else "reconciler"

TARGET_APPLY_SECONDS = 3.0
TARGET_APPLY_RATIO = 2.5  # apply, whole process, against the parse baseline
TARGET_COLD_RATIO = 2.0
TARGET_NOOP_RATIO = 4.0  # no-op plan of the working tree, against git ls-tree -r HEAD
TARGET_REF_RATIO = 3.0  # no-op plan --ref HEAD, against git ls-tree -r HEAD

GIT_IDENTITY = (
    "-c",
    "user.name=bench",
    "-c",
    "user.email=bench@example.invalid",
    "-c",
    "commit.gpgsign=false",
)


class BenchError(Exception):
    pass


# -- repository --------------------------------------------------------------------------


def environment_yaml(i: int) -> str:
    name = f"env-{i:05d}"
    return (
        "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\n"
        f"name: {name}\n"
        f"description: Benchmark environment {i} for tabular training jobs.\n"
        f"image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:20240709.v{i % 7}\n"
        "conda_file: conda.yml\n"
        "tags:\n"
        f"  team: team-{i % 12:02d}\n"
        f"  tier: {('bronze', 'silver', 'gold')[i % 3]}\n"
    )


def conda_yaml(i: int) -> str:
    # azureml-mlflow's (minor, patch) pair is unique per i, so every digest differs.
    return (
        f"name: env-{i:05d}\n"
        "channels:\n"
        "  - conda-forge\n"
        "dependencies:\n"
        f"  - python=3.{10 + i % 3}\n"
        "  - pip=24.0\n"
        "  - pip:\n"
        f"      - numpy==1.26.{i % 5}\n"
        f"      - pandas==2.2.{i % 3}\n"
        f"      - scikit-learn==1.{3 + i % 3}.0\n"
        f"      - azureml-mlflow==1.{i % 60}.{i // 60}\n"
    )


def make_repo(repo: Path, count: int) -> None:
    envs = repo / "environments"
    envs.mkdir(parents=True)
    for i in range(count):
        directory = envs / f"env-{i:05d}"
        directory.mkdir()
        with open(directory / "environment.yml", "w", encoding="utf-8") as handle:
            handle.write(environment_yaml(i))
        with open(directory / "conda.yml", "w", encoding="utf-8") as handle:
            handle.write(conda_yaml(i))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, *GIT_IDENTITY, "commit", "-q", "-m", f"{count} benchmark environments")


def project_revision() -> str:
    """The commit of the project under test, so the figures can be attributed."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True
    )
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", "reconciler"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
    )
    # -P: no current directory on sys.path, so the package found is the one the
    # `reconciler` executable imports (PYTHONPATH, then the installed/editable package).
    where = subprocess.run(
        [sys.executable, "-P", "-c", "import reconciler; print(reconciler.__file__)"],
        capture_output=True,
        text=True,
    )
    revision = head.stdout.strip() + (" + uncommitted changes" if dirty.stdout else "")
    return f"{revision} (package imported from {where.stdout.strip() or '?'})"


def git(repo: Path, *args: str) -> None:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")


# -- running -----------------------------------------------------------------------------


def run_timed(argv: list[str], cwd: Path, expect: int | None, what: str) -> float:
    """Wall time of one whole process; stdout discarded, exit code checked."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if expect is not None and done.returncode != expect:
        raise BenchError(
            f"{what}: `{' '.join(argv)}` exited {done.returncode}, expected {expect}\n"
            f"stderr:\n{done.stderr.decode('utf-8', 'replace')}"
        )
    return elapsed


def run_inline(script: str, *args: str) -> dict[str, float]:
    """Run a small script in a fresh interpreter; it prints one JSON object. (-P: import
    the package the `reconciler` executable imports, not one shadowed by the cwd.)"""
    done = subprocess.run(
        [sys.executable, "-P", "-c", textwrap.dedent(script), *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BenchError(f"inline script failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


PARSE_BASELINE = """
    import json, os, sys, time
    import yaml

    root = sys.argv[1]
    files = []
    for name in sorted(os.listdir(root)):
        files.append(os.path.join(root, name, "environment.yml"))
        files.append(os.path.join(root, name, "conda.yml"))
    start = time.perf_counter()
    for f in files:
        with open(f, "rb") as handle:
            yaml.load(handle.read(), Loader=yaml.CSafeLoader)
    elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed, "files": len(files)}))
"""

APPLY_ONLY = """
    import json, sys, time
    from argparse import Namespace
    from pathlib import Path

    from reconciler.cli.wiring import engine_for
    from reconciler.core.plan.types import Action
    from reconciler.engine.apply import execute
    from reconciler.settings import load_settings

    repo, database = Path(sys.argv[1]), Path(sys.argv[2])
    settings = load_settings(repo, {"registry": f"sqlite:///{database}", "cache": False})
    engine = engine_for(settings, Namespace())
    plan = engine.plan()
    if plan.has_errors:
        sys.exit("the plan has errors: " + repr(plan.diagnostics[:3]))
    creates = sum(1 for c in plan.changes if c.action is Action.CREATE)
    registry = engine.registry
    registry.conn  # create the empty database (schema) before timing
    start = time.perf_counter()
    with registry.batch():
        for change in plan.changes:
            execute(registry, change)
    elapsed = time.perf_counter() - start
    registry.close()
    print(json.dumps({"seconds": elapsed, "changes": len(plan.changes), "creates": creates}))
"""


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


@dataclass
class Figure:
    label: str
    value: str
    target: str
    ok: bool | None  # None: informational


def noop_phase(
    repo: Path, extra: list[str], runs: int, label: str
) -> tuple[list[float], list[float]]:
    """Interleaved runs of a no-op plan and of git ls-tree, after one warm-up of each."""
    plan_argv = [RECONCILER, "plan", "--repo", str(repo), *extra]
    git_argv = ["git", "ls-tree", "-r", "HEAD"]
    run_timed(plan_argv, repo, 0, f"warm-up {label}")
    run_timed(git_argv, repo, 0, "warm-up git ls-tree")
    plans, gits = [], []
    for _ in range(runs):
        plans.append(run_timed(plan_argv, repo, 0, label))
        gits.append(run_timed(git_argv, repo, 0, "git ls-tree -r HEAD"))
    return plans, gits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000, help="environments (default 10000)")
    parser.add_argument("--runs", type=int, default=15, help="no-op plan repetitions")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold plan repetitions")
    parser.add_argument("--apply-runs", type=int, default=3, help="whole-process applies")
    parser.add_argument("--baseline-runs", type=int, default=3, help="parse baseline runs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repository")
    parser.add_argument(
        "--as-is-env",
        action="store_true",
        help="run child interpreters with the environment unchanged (by default they get a "
        "bytecode cache in the temporary directory even if PYTHONDONTWRITEBYTECODE is set)",
    )
    args = parser.parse_args()
    runs = (args.runs, args.cold_runs, args.baseline_runs, args.apply_runs)
    if args.count < 1 or min(runs) < 1:
        parser.error("--count and the run counts must be at least 1")
    if shutil.which(RECONCILER) is None:
        print(f"error: cannot find the reconciler executable {RECONCILER}", file=sys.stderr)
        return 1

    n = args.count
    tmp = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    try:
        return measure(tmp, n, args)
    except BenchError as exc:
        print(f"\nABORTED: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def measure(tmp: Path, n: int, args: argparse.Namespace) -> int:
    repo = tmp / "repo"
    figures: list[Figure] = []
    print(f"reconciler benchmark: N={n} environments ({2 * n} YAML files), {os.cpu_count()} CPUs")
    print(f"  python {sys.version.split()[0]}, reconciler {RECONCILER}")

    if args.as_is_env:
        bytecode = "environment as is"
    else:
        # An installed CLI runs from cached bytecode. With PYTHONDONTWRITEBYTECODE set (and
        # an editable install) every run would compile its modules from source again, which
        # is no property of the reconciler; keep a bytecode cache in the temporary directory
        # instead, so the project tree is not written to.
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        bytecode = f"bytecode cached in {tmp / 'pycache'} (--as-is-env to disable)"
    print(f"  child interpreters: {bytecode}")
    print(f"  project revision: {project_revision()}")

    # Warm-up on a tiny repository: fills the bytecode cache and the OS file cache for
    # the interpreter, the reconciler and its dependencies (and checks the CLI works).
    small = tmp / "warm-up"
    make_repo(small, 2)
    run_timed([RECONCILER, "plan", "--repo", str(small)], small, 2, "warm-up plan")
    run_timed([RECONCILER, "apply", "--repo", str(small)], small, 0, "warm-up apply")
    run_timed([RECONCILER, "plan", "--repo", str(small)], small, 0, "warm-up plan")
    run_timed([RECONCILER, "plan", "--repo", str(small), "--ref", "HEAD"], small, 0, "warm-up")

    start = time.perf_counter()
    make_repo(repo, n)
    print(f"generate + git commit: {fmt(time.perf_counter() - start)}  ({repo})")

    # -- parse baseline
    baselines = []
    for _ in range(args.baseline_runs):
        result = run_inline(PARSE_BASELINE, str(repo / "environments"))
        if result["files"] != 2 * n:
            raise BenchError(f"parse baseline saw {result['files']} files, expected {2 * n}")
        baselines.append(result["seconds"])
    baseline = median(baselines)
    print(
        f"parse baseline (CSafeLoader, {2 * n} files, fresh process, median of "
        f"{len(baselines)}): {fmt(baseline)}  [{', '.join(fmt(b) for b in baselines)}]"
    )

    # -- apply into an empty registry, whole process (the registry emptied before each)
    apply_argv = [RECONCILER, "apply", "--repo", str(repo), "--no-cache"]
    applies = []
    for _ in range(args.apply_runs):
        shutil.rmtree(repo / ".reconciler", ignore_errors=True)
        applies.append(run_timed(apply_argv, repo, 0, "apply"))
    apply_process = median(applies)
    apply_ratio = apply_process / baseline
    print(
        f"reconciler apply --no-cache (whole process, empty registry, median of "
        f"{len(applies)}): {fmt(apply_process)}  [{', '.join(fmt(a) for a in applies)}]"
    )
    print(
        f"  parse baseline {fmt(baseline)}; ratio {apply_ratio:.2f} "
        f"(target <= {TARGET_APPLY_RATIO:g})"
    )
    figures.append(Figure("apply, whole process (info)", fmt(apply_process), "-", None))
    figures.append(
        Figure(
            "apply, whole process / parse baseline",
            f"{apply_ratio:.2f}",
            f"<= {TARGET_APPLY_RATIO:g}",
            apply_ratio <= TARGET_APPLY_RATIO,
        )
    )

    # -- apply step alone, in a fresh process against a fresh empty SQLite file
    result = run_inline(APPLY_ONLY, str(repo), str(tmp / "apply-only" / "registry.db"))
    if result["creates"] != n or result["changes"] != n:
        raise BenchError(
            f"apply-only plan had {result['changes']} changes ({result['creates']} creates), "
            f"expected {n} creates"
        )
    apply_only = result["seconds"]
    ok = apply_only <= TARGET_APPLY_SECONDS
    print(f"apply {n} creates: {apply_only:.2f} s (target <= {TARGET_APPLY_SECONDS:g} s)")
    figures.append(
        Figure(
            f"apply {n} creates (in-process)", fmt(apply_only), f"<= {TARGET_APPLY_SECONDS:g} s", ok
        )
    )

    # -- cold plan: parse cache gone, registry in step
    cache = repo / ".reconciler" / "cache"
    colds = []
    for _ in range(args.cold_runs):
        shutil.rmtree(cache, ignore_errors=True)
        colds.append(run_timed([RECONCILER, "plan", "--repo", str(repo)], repo, 0, "cold plan"))
    cold = median(colds)
    cold_ratio = cold / baseline
    print(
        f"cold plan (cache deleted, whole process, median of {len(colds)}): {fmt(cold)}  "
        f"[{', '.join(fmt(c) for c in colds)}]"
    )
    print(
        f"  parse baseline {fmt(baseline)}; ratio {cold_ratio:.2f} "
        f"(target <= {TARGET_COLD_RATIO:g})"
    )
    figures.append(Figure("cold plan (info)", fmt(cold), "-", None))
    figures.append(Figure("parse baseline (info)", fmt(baseline), "-", None))
    figures.append(
        Figure(
            "cold plan / parse baseline",
            f"{cold_ratio:.2f}",
            f"<= {TARGET_COLD_RATIO:g}",
            cold_ratio <= TARGET_COLD_RATIO,
        )
    )

    # -- repeated no-op plans against git ls-tree
    phases = (
        ([], "no-op plan", TARGET_NOOP_RATIO),
        (["--ref", "HEAD"], "no-op plan --ref HEAD", TARGET_REF_RATIO),
    )
    for extra, label, target in phases:
        plans, gits = noop_phase(repo, extra, args.runs, label)
        plan_med, git_med = median(plans), median(gits)
        ratio = plan_med / git_med
        print(
            f"{label} (median of {len(plans)}): {fmt(plan_med)} "
            f"[min {fmt(min(plans))}, max {fmt(max(plans))}]; git ls-tree -r HEAD: "
            f"{fmt(git_med)}; ratio {ratio:.2f} (target <= {target:g})"
        )
        if plan_med > 0.5 * cold:
            print(
                f"  WARNING: {label} takes {plan_med / cold:.0%} of a cold plan: the plan "
                "cache (and perhaps the parse cache) is not being hit"
            )
        figures.append(Figure(f"{label} (info)", fmt(plan_med), "-", None))
        figures.append(Figure("  git ls-tree -r HEAD (info)", fmt(git_med), "-", None))
        figures.append(
            Figure(
                f"{label} / git ls-tree",
                f"{ratio:.2f}",
                f"<= {target:g}",
                ratio <= target,
            )
        )

    # -- summary
    print(f"\nSUMMARY (N={n})")
    width = max(len(f.label) for f in figures)
    print(f"{'figure':<{width}}  {'value':>10}  {'target':>8}  result")
    for f in figures:
        verdict = "-" if f.ok is None else ("PASS" if f.ok else "MISS")
        print(f"{f.label:<{width}}  {f.value:>10}  {f.target:>8}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
