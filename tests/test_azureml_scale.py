"""The Azure ML backend at scale, through the real SDK and azure-core over HTTPS to the
emulator: one listing per environment, concurrent reads backing off together on
throttling, the incremental view and what it may (hide drift) and may not (cause a
wrong write) do, and Azure ML registries that see their archived environments."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.azureml import AzureMLRegistry
from reconciler.adapters.azureml_errors import RetryPolicy, Throttle
from reconciler.emulator.server import RunningEmulator, client_settings, start
from tests.azure_support import Workspace
from tests.conftest import Cli, GitRepo, image_env
from tests.test_reconcile import actions, seed

VERSIONS = "GET {ws}/environments/*/versions"


def many(repo: GitRepo, count: int) -> list[str]:
    names = [f"env{i:03d}" for i in range(count)]
    for name in names:
        repo.write(f"environments/{name}.yml", image_env(name, description=f"about {name}"))
    repo.commit(f"{count} environments")
    return names


def by_pattern(workspace: Workspace, method: str, suffix: str) -> int:
    counts = workspace.counters()["by_pattern"]
    return sum(
        n
        for pattern, n in counts.items()
        if pattern.startswith(method) and pattern.endswith(suffix)
    )


# -- reads: one listing per environment, in parallel --------------------------------------


def test_a_full_read_lists_each_environment_once(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    seed(repo)
    assert cli("apply", "--registry", workspace.url)[0] == 0
    workspace.counters(reset=True)
    code, plan = cli.json("plan", "--refresh", "--registry", workspace.url)
    assert code == 0 and len(plan["in_sync"]) == 4
    assert plan["registry"]["read"]["view"] == "full"
    counts = workspace.counters()
    # 4 containers on pages of 2, then one versions listing each (one page: 1 version)
    assert by_pattern(workspace, "GET", "/environments") == 2
    assert by_pattern(workspace, "GET", "/environments/{}/versions") == 4
    assert counts["total"] == 6


def test_a_new_version_costs_at_most_three_calls(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    names = many(repo, 6)
    code, out, err = cli("apply", "--registry", workspace.url)
    assert code == 0, out + err
    per_version = [
        line for line in workspace.requests("/versions/1") if "/environments/env" in line
    ]
    for name in names:
        calls = [line for line in per_version if f"/environments/{name}/" in line]
        # read first (404), create (201), the build record (200)
        assert [c.rsplit(" ", 1)[-1] for c in calls] == ["404", "201", "200"], calls


def test_build_contexts_upload_once_per_distinct_context(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    for name in ("serve-a", "serve-b", "serve-c"):
        repo.write(f"environments/{name}/env.yml", f"name: {name}\nbuild:\n  path: ../ctx\n")
    repo.write("environments/ctx/Dockerfile", "FROM busybox:1.36\n")
    repo.commit("three environments, one context")
    seen = len(workspace.running.emulator.requests)
    code, out, err = cli("apply", "--registry", workspace.url)
    assert code == 0, out + err
    uploads = [
        line
        for line in workspace.running.emulator.requests[seen:]
        if line.startswith("PUT /emulatorstore/") and "/LocalUpload/" in line
    ]
    # one upload (201; a metadata write on the same blob answers 200)
    dockerfiles = [line for line in uploads if "/Dockerfile -> 201" in line]
    assert len(dockerfiles) == 1, uploads
    client = workspace.client()
    paths = {client.environments.get(n, "1").build.path for n in ("serve-a", "serve-b", "serve-c")}
    assert len(paths) == 1
    assert cli("plan", "--refresh", "--registry", workspace.url)[0] == 0


def test_reads_run_concurrently(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = AzureMLRegistry(workspace.url, tmp_path, None, RetryPolicy(3, 0.01))
    from tests.test_registry_contract import write

    for i in range(12):
        registry.put_version(f"par{i}", "1", write())
    active = 0
    peak = 0
    guard = threading.Lock()
    versions = registry._versions

    def counted(name: str) -> Any:
        nonlocal active, peak
        with guard:
            active += 1
            peak = max(peak, active)
        try:
            time.sleep(0.05)  # long enough for the others to start
            return versions(name)
        finally:
            with guard:
                active -= 1

    monkeypatch.setattr(registry, "_versions", counted)
    state = registry.read_state()
    assert len(state.containers) == 12
    assert peak > 1


# -- throttling ---------------------------------------------------------------------------


def test_a_429_storm_with_retry_after_is_waited_out_beyond_the_attempts(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    seed(repo)
    assert cli("apply", "--registry", workspace.url)[0] == 0
    # 8 throttled answers: far more than the 3 attempts a failing call gets
    workspace.fault(status=429, count=8, match=VERSIONS, retry_after=1)
    code, out, err = cli("plan", "--refresh", "--registry", workspace.url)
    assert code == 0, out + err
    throttled = [line for line in workspace.requests("/versions") if line.endswith("-> 429")]
    assert len(throttled) == 8
    assert "throttled 8 call(s)" in err
    # backing off together: the four concurrent listings were held side by side, so the
    # run was held about 2 s (two rounds of 1 s), not 8 s (one refusal after another)
    held = float(err.split("waited ")[1].split("s ")[0])
    assert 1.0 <= held < 6.0


def test_calls_back_off_together_against_a_rate_limit(
    limited: RunningEmulator, tmp_path: Path
) -> None:
    from tests.test_registry_contract import write

    url = "azureml://subscriptions/s/resourceGroups/r/workspaces/limited"
    registry = AzureMLRegistry(url, tmp_path, None, RetryPolicy(2, 0.01))
    for i in range(30):
        registry.put_version(f"lim{i:02d}", "1", write())
    fresh = AzureMLRegistry(url, tmp_path, None, RetryPolicy(2, 0.01), refresh=True)
    state = fresh.read_state()
    assert len(state.containers) == 30  # nothing failed, with 2 attempts a call
    assert registry.throttle.throttled + fresh.throttle.throttled > 0
    assert registry.throttle.held + fresh.throttle.held >= 1.0
    statuses = [line.rsplit(" ", 1)[-1] for line in limited.emulator.requests]
    answered = sum(1 for s in statuses if s in ("200", "201", "404"))
    # held together, the calls do not hammer: fewer refusals than answers
    assert statuses.count("429") < answered


def test_throttle_holds_every_thread_until_retry_after() -> None:
    throttle = Throttle()
    throttle.hold(0.3)
    woke: list[float] = []
    started = time.monotonic()

    def wait_then_wake() -> None:
        throttle.wait()
        woke.append(time.monotonic())

    threads = [threading.Thread(target=wait_then_wake) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(woke) == 4 and min(woke) - started >= 0.29
    throttle.hold(0.1)  # overlapping holds count once on the wall clock
    assert 0.3 <= throttle.held < 0.5 and throttle.throttled == 2


# -- the incremental view -------------------------------------------------------------------


def cache_file(repo: GitRepo) -> Path:
    files = list((repo.root / ".reconciler" / "azureml").glob("*.json"))
    assert len(files) == 1, files
    return files[0]


def test_an_unchanged_registry_is_read_with_the_container_listing_only(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    seed(repo)
    assert cli("apply", "--registry", workspace.url)[0] == 0
    for directory in (repo.root / ".reconciler", repo.root / ".reconciler" / "azureml"):
        rules = (directory / ".gitignore").read_text().splitlines()
        assert [r for r in rules if not r.startswith("#")] == ["*"], directory
    assert repo.git("status", "--porcelain") == ""  # nothing of it shows in git
    workspace.counters(reset=True)
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert code == 0 and len(plan["in_sync"]) == 4
    read = plan["registry"]["read"]
    assert read["view"] == "incremental" and read["read"] == 0 and read["containers"] == 4
    counts = workspace.counters()
    assert counts["total"] == 2  # two pages of containers; no version listing
    code, out, _ = cli("plan", "--registry", workspace.url, "--markdown", "-")
    assert "Registry read incrementally: 0 of 4 environment(s)" in out
    # a new version out of band moves the container's listing: that one is read again
    client = workspace.client()
    env = client.environments.get("base", "1")
    env.version = "7"
    env.image = "busybox:1.37"
    client.environments.create_or_update(env)
    workspace.counters(reset=True)
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert plan["registry"]["read"]["read"] == 1
    assert by_pattern(workspace, "GET", "/environments/{}/versions") == 1
    assert actions(plan) == [("new_version", "base", "8")]
    # --no-cache: no kept view at all
    code, plan = cli.json("plan", "--no-cache", "--registry", workspace.url)
    assert plan["registry"]["read"]["view"] == "full"


def test_a_hand_archived_container_is_seen_without_a_refresh(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    seed(repo)
    assert cli("apply", "--registry", workspace.url)[0] == 0
    workspace.client().environments.archive("pydata")
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert plan["registry"]["read"]["view"] == "incremental"
    drift = [(d["name"], d["action"]) for d in plan["drift"]]
    assert drift == [("pydata", "restore")]


def test_a_stale_entry_never_causes_a_wrong_write(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    """Behind the cache's back, someone takes `base` out of the reconciler's hands (its
    ownership stamp removed). git then drops `base`: the incremental plan, which cannot
    see the tag edit, proposes to archive it; apply plans again on a full read under the
    lock and archives nothing it does not own."""
    seed(repo)
    assert cli("apply", "--registry", workspace.url)[0] == 0
    client = workspace.client()
    env = client.environments.get("base", "1")
    env.tags = {k: v for k, v in env.tags.items() if not k.startswith("reconciler.")}
    client.environments.create_or_update(env)
    repo.remove("environments/base.yml")
    repo.commit("drop base")
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert plan["registry"]["read"]["view"] == "incremental"
    assert ("archive", "base", None) in actions(plan)  # the stale view
    code, result = cli.json("apply", "--registry", workspace.url)
    assert code == 0, result
    assert [c["name"] for c in result["applied"]] == []
    assert not any(
        line.startswith("PUT") and line.endswith("/environments/base -> 200")
        for line in workspace.requests()
    )
    code, rows = cli.json("list", "--include-archived", "--registry", workspace.url)
    assert {r["name"]: r["archived"] for r in rows}["base"] is False


def test_a_metadata_write_keeps_a_version_archived_behind_the_cache(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    seed(repo)
    assert cli("apply", "--registry", workspace.url)[0] == 0
    workspace.client().environments.archive("pydata", "1")  # by hand, unseen by the cache
    repo.write(
        "environments/pydata/env.yml",
        "name: pydata\nimage: busybox:1.36\nconda_file: conda.yml\ntags:\n  team: new\n",
    )
    repo.commit("retag pydata")
    code, out, err = cli("apply", "--registry", workspace.url)
    assert code == 0, out + err
    registry = AzureMLRegistry(workspace.url, repo.root / "locks", None, RetryPolicy(2, 0.01))
    found = registry.get_version("pydata", "1")
    assert found is not None
    assert found.tags["team"] == "new"
    assert found.archived  # the write re-sent the resource as read: still archived


def test_a_corrupt_or_foreign_cache_is_ignored(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    seed(repo)
    assert cli("apply", "--registry", workspace.url)[0] == 0
    path = cache_file(repo)
    path.write_text("{not json")
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert code == 0 and plan["registry"]["read"]["view"] == "full"
    data = json.loads(cache_file(repo).read_text())
    data["endpoint"] = "https://elsewhere.example/"
    path.write_text(json.dumps(data))
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert code == 0 and plan["registry"]["read"]["view"] == "full"


# -- Azure ML registries: archive, restore, re-add --------------------------------------------


def test_a_registry_archives_restores_and_re_adds(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    url = f"azureml://registries/{workspace.name}"
    repo.write("environments/base.yml", image_env("base", description="Base image"))
    repo.write("environments/keep.yml", image_env("keep"))
    repo.commit("seed")
    assert cli("apply", "--registry", url)[0] == 0
    repo.remove("environments/base.yml")
    repo.commit("remove base")
    code, plan = cli.json("plan", "--registry", url)
    assert actions(plan) == [("archive", "base", None)]
    assert cli("apply", "--registry", url)[0] == 0
    for flags in ((), ("--refresh",)):
        code, plan = cli.json("plan", *flags, "--registry", url)
        assert code == 0 and plan["changes"] == [] and plan["drift"] == [], plan
    code, rows = cli.json("list", "--registry", url, "--include-archived")
    assert {r["name"]: r["archived"] for r in rows} == {"base": True, "keep": False}
    # re-added: restored, not created again (the archived container is seen)
    repo.write("environments/base.yml", image_env("base", description="Base image"))
    repo.commit("bring base back")
    code, plan = cli.json("plan", "--registry", url)
    assert actions(plan) == [("restore", "base", None)]
    assert cli("apply", "--registry", url)[0] == 0
    code, plan = cli.json("plan", "--refresh", "--registry", url)
    assert code == 0 and plan["changes"] == [] and plan["drift"] == []
    code, rows = cli.json("list", "--registry", url)
    assert {r["name"] for r in rows} == {"base", "keep"}
    registry = AzureMLRegistry(url, repo.root / "locks", None, RetryPolicy(2, 0.01))
    container = registry.get_container("base")
    assert container is not None and not container.archived
    assert [v.version for v in container.versions] == ["1"]


def test_a_registry_sees_a_hand_archived_version(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    url = f"azureml://registries/{workspace.name}"
    repo.write("environments/base.yml", image_env("base"))
    repo.commit("seed")
    assert cli("apply", "--registry", url)[0] == 0
    registry = AzureMLRegistry(url, repo.root / "locks", None, RetryPolicy(2, 0.01))
    registry.set_version_archived("base", "1", True)
    code, plan = cli.json("plan", "--refresh", "--registry", url)
    assert code == 0, plan
    assert [(d["name"], d["action"]) for d in plan["drift"]] == [("base", "restore")]


@pytest.fixture
def limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    """An emulator of its own that throttles beyond 20 requests a second."""
    running = start(tmp_path / "limited" / "registry.db", rate_limit=20)
    for name, value in client_settings(running).items():
        monkeypatch.setenv(name, value)
    yield running
    running.stop()


def test_drift_and_self_heal_read_everything(repo: GitRepo, cli: Cli, workspace: Workspace) -> None:
    seed(repo)
    assert cli("apply", "--registry", workspace.url)[0] == 0
    client = workspace.client()
    env = client.environments.get("pydata", "1")
    env.tags = {**env.tags, "team": "edited-in-the-portal"}
    client.environments.create_or_update(env)
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert code == 0 and plan["drift"] == []  # hidden by the incremental view
    code, out, err = cli("drift", "--registry", workspace.url, "--ref", "HEAD")
    assert code == 2, out + err
    assert "pydata" in out
    code, out, err = cli("apply", "--self-heal", "--registry", workspace.url)
    assert code == 0, out + err
    assert workspace.client().environments.get("pydata", "1").tags["team"] == "ds"
    code, plan = cli.json("plan", "--refresh", "--registry", workspace.url)
    assert code == 0 and plan["drift"] == [] and plan["changes"] == []
