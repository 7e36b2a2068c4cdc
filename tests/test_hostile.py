"""Malformed and malicious repositories (tests/hostile/cases.toml): every case gives
diagnostics naming the file, line and rule, exits 1, prints no traceback, stays within
1 GiB of address space and a time limit, and writes nothing to the registry."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, GitRepo, image_env
from tests.hostile_support import (
    MEMORY_LIMIT,
    TIME_LIMIT,
    install_case,
    load_manifest,
    registry_fingerprint,
    run_limited,
)

MANIFEST = load_manifest()


def _errors(document: dict[str, Any]) -> set[tuple[str, str, int | None]]:
    return {
        (d["path"], d["rule"], d["line"])
        for d in document["diagnostics"]
        if d["severity"] == "error"
    }


def _expected(spec: dict[str, Any]) -> set[tuple[str, str, int | None]]:
    return {(e["path"], e["rule"], e.get("line")) for e in spec["expect"]}


def _json(run_out: str, where: str) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(run_out)
    except json.JSONDecodeError:
        raise AssertionError(f"{where}: not JSON: {run_out[-1000:]!r}") from None
    return document


@pytest.mark.parametrize("case", sorted(MANIFEST))
def test_hostile_case_is_diagnosed_and_writes_nothing(
    case: str, repo: GitRepo, cli: Cli, tmp_path: Path
) -> None:
    spec = MANIFEST[case]
    # a registry with a managed environment in it: the one thing a hostile change could harm
    repo.write("environments/keeper.yml", image_env("keeper"))
    repo.commit("keeper")
    assert cli("apply")[0] == 0
    before = registry_fingerprint(repo.registry_db)
    install_case(repo, case, spec)
    expected = _expected(spec)
    assert expected, f"{case}: the manifest lists no expected diagnostic"

    started = time.monotonic()
    runs = [
        run_limited(repo.root, "validate"),
        run_limited(repo.root, "plan", "--json"),
        run_limited(repo.root, "apply", "--json"),
    ]
    elapsed = time.monotonic() - started
    for run in runs:
        assert run.code == 1, run.describe()  # a crash by signal would be negative
        assert "Traceback" not in run.err + run.out, run.describe()
        assert "MemoryError" not in run.err, run.describe()
    assert elapsed < 5 * TIME_LIMIT
    text = runs[0].out
    for path, rule, line in expected:
        where = f"{path}:{line}" if line else path
        assert where in text and f"[{rule}]" in text, f"{case}: {where} [{rule}] not in\n{text}"
    plan = _json(runs[1].out, "plan")
    assert expected <= _errors(plan), _errors(plan)
    assert plan["has_errors"]
    assert not any(c["action"] == "archive" for c in plan["changes"])
    applied = _json(runs[2].out, "apply")
    assert applied["applied"] == [] and "nothing was written" in applied["error"]
    assert expected <= _errors(applied["plan"])

    # zero registry writes: same file, same rows, same events
    assert registry_fingerprint(repo.registry_db) == before
    keeper = [c for c in plan["in_sync"] if c["name"] == "keeper"]
    assert keeper, "the managed environment is still planned as in sync"


def test_manifest_and_case_folders_agree() -> None:
    """Every folder under tests/hostile/ is a case in the manifest (none forgotten)."""
    root = Path(__file__).resolve().parent / "hostile"
    folders = {p.name for p in root.iterdir() if p.is_dir()}
    assert folders <= set(MANIFEST), folders - set(MANIFEST)
    assert len(MANIFEST) >= 30


def test_limits_are_real() -> None:
    """The memory limit bites: the same runner refuses to allocate 2 GiB."""
    import subprocess
    import sys

    from tests.hostile_support import _limits

    done = subprocess.run(
        [sys.executable, "-c", "bytearray(2 << 30)"],
        capture_output=True,
        preexec_fn=_limits,
        check=False,
        timeout=30,
    )
    assert done.returncode == 1 and b"MemoryError" in done.stderr
    assert MEMORY_LIMIT == 1 << 30
