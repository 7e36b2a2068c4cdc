"""Saved plans over every action kind, each step a fresh `python -m reconciler` process
against the SQLite registry read back from disk: `plan --out`, then `apply FILE`, then a
plan that finds nothing left to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import GitRepo, image_env
from tests.processes import reconciler_env


def run(repo: GitRepo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=repo.root,
        capture_output=True,
        text=True,
        env=reconciler_env(),
        timeout=120,
    )


def save_and_apply(repo: GitRepo, plan_file: Path, actions: set[tuple[str, str]]) -> None:
    """Save the plan, check it holds exactly ``actions`` (name, action), apply it, and
    check the registry then matches git."""
    saved = run(repo, "plan", "--out", str(plan_file))
    assert saved.returncode == 2, saved.stderr
    assert "Traceback" not in saved.stderr
    data = json.loads(plan_file.read_text(encoding="utf-8"))
    planned = {(c["name"], c["action"]) for c in data["apply"]["changes"]}
    assert planned == actions
    assert {(c["name"], c["action"]) for c in data["plan"]["changes"]} == actions
    applied = run(repo, "apply", str(plan_file))
    assert applied.returncode == 0, applied.stderr
    again = run(repo, "plan")
    assert again.returncode == 0, again.stdout + again.stderr


def test_saved_plans_of_every_action_kind_apply_from_fresh_processes(
    repo: GitRepo, tmp_path: Path
) -> None:
    # an empty registry: creates only
    repo.write("environments/a.yml", image_env("a", "busybox:1.36"))
    repo.write("environments/b.yml", image_env("b", "busybox:1.36"))
    repo.write("environments/c.yml", image_env("c", "busybox:1.36", description="first"))
    repo.write("environments/d.yml", image_env("d", "busybox:1.36"))
    repo.commit("seed")
    save_and_apply(
        repo,
        tmp_path / "1.json",
        {("a", "create"), ("b", "create"), ("c", "create"), ("d", "create")},
    )

    # after an apply: archive one, change another, create a third, edit a description
    repo.remove("environments/a.yml")
    repo.write("environments/b.yml", image_env("b", "busybox:1.37"))
    repo.write("environments/c.yml", image_env("c", "busybox:1.36", description="second"))
    repo.write("environments/e.yml", image_env("e", "busybox:1.36"))
    repo.commit("archive, new version, metadata, create")
    save_and_apply(
        repo,
        tmp_path / "2.json",
        {("a", "archive"), ("b", "new_version"), ("c", "update_metadata"), ("e", "create")},
    )

    # the archived one comes back with other content; another goes
    repo.write("environments/a.yml", image_env("a", "busybox:1.38"))
    repo.remove("environments/d.yml")
    repo.commit("restore and archive")
    save_and_apply(
        repo, tmp_path / "3.json", {("a", "restore"), ("a", "new_version"), ("d", "archive")}
    )

    listing = run(repo, "list", "--include-archived", "--json")
    rows = {r["name"]: (r["latest_version"], r["archived"]) for r in json.loads(listing.stdout)}
    assert rows == {
        "a": ("2", False),
        "b": ("2", False),
        "c": ("1", False),
        "d": ("1", True),
        "e": ("1", False),
    }
