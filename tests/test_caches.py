"""The caches are used (a no-op plan parses nothing) and never change an answer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.gitsource import walk_directories
from reconciler.core.desired import load as desired_module
from reconciler.engine import plan as plan_verb
from tests.conftest import CONDA, Cli, GitRepo, conda_env, image_env


def seed(repo: GitRepo) -> None:
    repo.write("environments/a.yml", image_env("a"))
    repo.write("environments/b/env.yml", conda_env("b"))
    repo.write("environments/b/conda.yml", CONDA)
    repo.commit("seed")


def forbid(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{name} was called: the cache missed")

    monkeypatch.setattr(target, name, refuse)


def test_unchanged_plan_is_answered_from_the_plan_cache(
    repo: GitRepo, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(repo)
    cli("apply")
    repo.age()
    first = cli.json("plan")
    forbid(monkeypatch, plan_verb, "read")
    assert cli.json("plan") == first


def test_fresh_files_are_not_trusted_by_the_plan_cache(
    repo: GitRepo, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(repo)
    cli("apply")
    cli.json("plan")  # files written just now: this plan is not cached
    forbid(monkeypatch, plan_verb, "read")
    with pytest.raises(AssertionError, match="cache missed"):
        cli.json("plan")


def test_ref_plans_are_cached_by_commit(
    repo: GitRepo, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(repo)
    cli("apply")
    first = cli.json("plan", "--ref", "HEAD")
    forbid(monkeypatch, plan_verb, "read")
    assert cli.json("plan", "--ref", "HEAD") == first


def test_parse_cache_survives_a_registry_change(
    repo: GitRepo, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(repo)
    cli("apply")
    cli("plan")
    from reconciler.adapters.sqlite_registry import SqliteRegistry
    from reconciler.core.spec.model import VersionWrite

    SqliteRegistry(repo.registry_db).put_version(
        "hand", "1", VersionWrite({"image": "x"}, "", None, {})
    )
    forbid(monkeypatch, desired_module, "_parse_candidate")
    code, plan = cli.json("plan")  # plan cache misses (registry changed), parse cache hits
    assert code == 0 and plan["changes"] == []


def test_edits_invalidate_the_caches(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.age()
    assert cli.json("plan")[1]["changes"] == []
    repo.write("environments/b/conda.yml", CONDA.replace("3.11", "3.12"))  # not committed
    code, plan = cli.json("plan")
    assert code == 2 and [c["action"] for c in plan["changes"]] == ["new_version"]
    repo.age()
    assert cli.json("plan")[0] == 2  # cached now
    repo.write("environments/new.yml", image_env("new"))  # untracked
    repo.age(30)
    code, plan = cli.json("plan")
    assert sorted(c["name"] for c in plan["changes"]) == ["b", "new"]


def test_edit_of_an_untracked_file_invalidates_the_plan_cache(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.write("environments/new.yml", image_env("new"))
    repo.age()
    assert [c["name"] for c in cli.json("plan")[1]["changes"]] == ["new"]
    repo.write("environments/new.yml", image_env("renamed"))
    repo.age(30)
    assert [c["name"] for c in cli.json("plan")[1]["changes"]] == ["renamed"]


def test_staged_change_invalidates_the_plan_cache(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.write("environments/a.yml", image_env("a", image="busybox:9"))
    repo.git("add", "-A")
    repo.age()
    assert [c["action"] for c in cli.json("plan")[1]["changes"]] == ["new_version"]
    repo.git("reset", "-q", "--hard")
    repo.age(30)
    assert cli.json("plan")[1]["changes"] == []


def test_new_ignore_rule_invalidates_the_plan_cache(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    cli("apply")
    repo.write("environments/new.yml", image_env("new"))
    repo.age()
    assert [c["name"] for c in cli.json("plan")[1]["changes"]] == ["new"]
    exclude = repo.root / ".git" / "info" / "exclude"
    exclude.write_text(exclude.read_text() + "environments/new.yml\n")
    repo.age(30)
    assert cli.json("plan")[1]["changes"] == []


def test_new_file_in_an_outside_build_context_invalidates(repo: GitRepo, cli: Cli) -> None:
    repo.write("environments/e.yml", "name: e\nbuild:\n  path: ../docker/ctx\n")
    repo.write("docker/ctx/Dockerfile", "FROM x\n")
    (repo.root / "docker/ctx/sub").mkdir()
    repo.commit("outside context")
    cli("apply")
    repo.age()
    assert cli.json("plan")[1]["changes"] == []
    repo.write("docker/ctx/sub/new.txt", "x\n")
    repo.age(30)
    assert [c["action"] for c in cli.json("plan")[1]["changes"]] == ["new_version"]


def _walked(root: Path, top: str) -> set[tuple[str, bool]]:
    """What os.walk sees: the reference the watch list's own walk must agree with."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root / top if top else root):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".reconciler")]
        rel = os.path.relpath(dirpath, root)
        out.add(("" if rel == "." else rel.replace(os.sep, "/"), ".gitignore" in filenames))
    return out


@pytest.mark.parametrize("top", ["", "environments", "missing"])
def test_the_watch_list_walks_the_directories_os_walk_would(
    repo: GitRepo, tmp_path: Path, top: str
) -> None:
    seed(repo)
    (repo.root / "environments/b/empty/deeper").mkdir(parents=True)
    repo.write("environments/b/.gitignore", "*.tmp\n")
    (repo.root / "environments/odd/.gitignore").mkdir(parents=True)  # a folder of that name
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (repo.root / "environments/link").symlink_to(outside)  # never followed
    (repo.root / "environments/.reconciler/cache").mkdir(parents=True)  # the tool's own
    found = set(walk_directories(str(repo.root), top))
    assert found == _walked(repo.root, top)
    if top != "missing":
        assert ("environments/b", True) in found and ("environments/odd", False) in found
        assert ("environments/b/empty/deeper", False) in found
        assert not any(rel.startswith(("environments/link", ".git")) for rel, _ in found)
