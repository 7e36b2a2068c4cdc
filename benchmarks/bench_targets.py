"""Planning several targets: one git read shared by all of them.

Run from the project root:

    .venv/bin/python benchmarks/bench_targets.py [--count N] [--runs R]

It builds a git repository of N environments (as bench_core.py does), applies it to one
SQLite registry and, with three `[targets]` (dev, test after dev, prod after test), to
three SQLite registries, then measures `reconciler plan --no-cache` as a whole process:

* one target: the floor, measured in the same run;
* three targets: every target's plan, the promotion gate of test and prod included.

Parsing and content digests are done once per run and shared by the targets, so the
three-target plan should cost at most 1.5x the one-target plan (what is repeated per
target is reading its registry and planning against it). A warm no-op plan (caches on)
is shown for both as well.

This is a measurement, not a test: it exits 0 whatever the figures, and non-zero only
when a reconciler run itself fails (wrong exit code).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import (  # benchmarks/ is not a package: found through sys.path
    GIT_IDENTITY,
    RECONCILER,
    BenchError,
    git,
    make_repo,
    project_revision,
    run_timed,
)

TARGET_RATIO = 1.5

TARGETS = """
[targets.dev]
registry = "sqlite:///.reconciler/dev.db"

[targets.test]
registry = "sqlite:///.reconciler/test.db"
after = ["dev"]

[targets.prod]
registry = "sqlite:///.reconciler/prod.db"
after = ["test"]
"""


def median_plan(repo: Path, runs: int, *extra: str) -> float:
    times = [
        run_timed([RECONCILER, "plan", *extra], repo, 0, f"plan {' '.join(extra)}")
        for _ in range(runs)
    ]
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"reconciler {project_revision()}")
    print(f"{args.count} environments, median of {args.runs} run(s)")
    with tempfile.TemporaryDirectory(prefix="bench-targets-") as tmp:
        one, three = Path(tmp) / "one", Path(tmp) / "three"
        make_repo(one, args.count)
        make_repo(three, args.count)
        (three / "reconciler.toml").write_text(TARGETS)
        git(three, "add", "-A")
        git(three, *GIT_IDENTITY, "commit", "-q", "-m", "three targets")
        try:
            run_timed([RECONCILER, "apply", "--no-cache"], one, 0, "apply, one target")
            run_timed([RECONCILER, "apply", "--no-cache"], three, 0, "apply, three targets")
            single = median_plan(one, args.runs, "--no-cache")
            several = median_plan(three, args.runs, "--no-cache")
            single_warm = median_plan(one, args.runs)
            several_warm = median_plan(three, args.runs)
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    ratio = several / single
    verdict = "ok" if ratio <= TARGET_RATIO else "over target"
    print(f"plan --no-cache, one target:     {single:7.3f} s (floor)")
    print(
        f"plan --no-cache, three targets:  {several:7.3f} s  ratio {ratio:.2f}x "
        f"(target <= {TARGET_RATIO}x): {verdict}"
    )
    print(f"plan (caches on), one target:    {single_warm:7.3f} s")
    print(f"plan (caches on), three targets: {several_warm:7.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
