"""Retention (`keep_versions`): older versions of managed environments are archived with
the archive stamp, never the latest or what git pins, within the archive guard."""

from __future__ import annotations

from typing import Any

from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.spec.model import STAMP_ARCHIVED
from tests.conftest import Cli, GitRepo, image_env


def states(repo: GitRepo, name: str) -> dict[str, tuple[bool, bool]]:
    """version -> (archived, carries the archive stamp)."""
    registry = SqliteRegistry(repo.registry_db)
    try:
        container = registry.get_container(name)
    finally:
        registry.close()
    assert container is not None
    return {v.version: (v.archived, STAMP_ARCHIVED in v.tags) for v in container.versions}


def release(repo: GitRepo, cli: Cli, name: str, image: str, extra: str = "") -> dict[str, Any]:
    repo.write(f"environments/{name}.yml", image_env(name, image) + extra)
    repo.commit(f"{name} {image}")
    result: dict[str, Any]
    code, result = cli.json("apply")
    assert code == 0, result
    return result


def test_keeps_the_newest_versions_and_stamps_the_archived(repo: GitRepo, cli: Cli) -> None:
    repo.write("reconciler.toml", "[policy]\nkeep_versions = 2\n")
    for tag in ("1.30", "1.31"):
        release(repo, cli, "a", f"busybox:{tag}")
    assert states(repo, "a") == {"1": (False, False), "2": (False, False)}
    code, plan = cli.json("plan")
    assert code == 0  # two versions, two kept: nothing to do
    repo.write("environments/a.yml", image_env("a", "busybox:1.32"))
    repo.commit("a 1.32")
    code, plan = cli.json("plan")
    assert code == 2
    actions = [(c["action"], c["version"], c["reason"]) for c in plan["changes"]]
    # the new version counts: after apply, 3 and 2 are the newest two
    assert actions == [
        ("new_version", "3", "build-relevant content changed"),
        ("archive", "1", "retention: keep the newest 2 version(s)"),
    ]
    assert cli("apply")[0] == 0
    assert states(repo, "a") == {"1": (True, True), "2": (False, False), "3": (False, False)}
    assert cli("plan")[0] == 0  # converged
    code, out, err = cli("drift")
    assert code == 0, out  # an archive stamped by the reconciler is not drift


def test_never_the_latest_nor_the_version_git_pins(repo: GitRepo, cli: Cli) -> None:
    for tag in ("1.30", "1.31", "1.32"):
        release(repo, cli, "a", f"busybox:{tag}")
    # git goes back to version 1's content, pinned: it stays active whatever the count
    repo.write("reconciler.toml", "[policy]\nkeep_versions = 1\n")
    release(repo, cli, "a", "busybox:1.30", 'version: "1"\n')
    assert states(repo, "a") == {
        "1": (False, False),  # pinned by git
        "2": (True, True),
        "3": (False, False),  # the latest (most recently created)
    }
    assert cli("plan")[0] == 0


def test_retention_counts_against_the_archive_guard(repo: GitRepo, cli: Cli) -> None:
    for tag in ("1.30", "1.31", "1.32", "1.33"):
        release(repo, cli, "a", f"busybox:{tag}")
    release(repo, cli, "b", "busybox:1.30")
    repo.write(
        "reconciler.toml",
        "[reconciler]\narchive_limit_count = 2\narchive_limit_fraction = 0.0\n"
        "[policy]\nkeep_versions = 1\n",
    )
    repo.remove("environments/b.yml")  # one environment archive takes one of the two slots
    repo.commit("limits; b removed")
    code, plan = cli.json("plan")
    assert code == 2
    archives = [(c["name"], c["version"]) for c in plan["changes"] if c["action"] == "archive"]
    assert archives == [("a", "1"), ("b", None)]  # the oldest version of a first
    [deferred] = [d for d in plan["diagnostics"] if d["rule"] == "retention-deferred"]
    assert deferred["severity"] == "warning" and deferred["message"].startswith("2 of 3")
    assert cli("apply")[0] == 0
    assert cli("apply")[0] == 0  # the next applies continue
    assert states(repo, "a") == {
        "1": (True, True),
        "2": (True, True),
        "3": (True, True),
        "4": (False, False),
    }
    code, plan = cli.json("plan")
    assert code == 0 and not plan["changes"]


def test_an_override_keeps_more_for_some_environments(repo: GitRepo, cli: Cli) -> None:
    repo.write(
        "reconciler.toml",
        '[policy]\nkeep_versions = 1\n[policy.environments."gold-*"]\nkeep_versions = 0\n',
    )
    for tag in ("1.30", "1.31"):
        release(repo, cli, "gold-a", f"busybox:{tag}")
        release(repo, cli, "b", f"busybox:{tag}")
    assert states(repo, "gold-a") == {"1": (False, False), "2": (False, False)}
    assert states(repo, "b") == {"1": (True, True), "2": (False, False)}
