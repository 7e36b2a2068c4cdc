"""Targets on real backends: an SQLite dev registry, a workspace and an Azure ML registry on
the HTTPS emulator through the real SDK; and the promotion gate with real image builds
(Docker Engine and an OCI registry)."""

from __future__ import annotations

import json
from typing import Any

from tests.azure_support import Workspace
from tests.conftest import CONDA, Cli, GitRepo, conda_env, image_env
from tests.docker_support import BUSYBOX_IMAGE, DockerEnv


def sections(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["target"]: s for s in document["targets"]}


def test_dev_sqlite_then_a_workspace_then_an_azure_ml_registry(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    dev = repo.root.parent / "dev.db"
    repo.write(
        "reconciler.toml",
        f"""
[targets.dev]
registry = "sqlite:///{dev}"

[targets.test]
registry = "{workspace.url}"
after = ["dev"]

[targets.prod]
registry = "azureml://registries/{workspace.name}"
after = ["test"]
include = ["serving-*"]
""",
    )
    repo.write("environments/train/env.yml", conda_env("train"))
    repo.write("environments/train/conda.yml", CONDA)
    repo.write("environments/serving-api.yml", image_env("serving-api", description="api"))
    repo.commit("seed")

    code, applied = cli.json("apply")
    assert code == 0, applied
    by_target = sections(applied)
    assert sorted(c["name"] for c in by_target["test"]["applied"]) == ["serving-api", "train"]
    assert [c["name"] for c in by_target["prod"]["applied"]] == ["serving-api"]
    requests = workspace.running.emulator.requests
    assert any("/registries/" in line and "serving-api" in line for line in requests)

    repo.write("environments/serving-api.yml", image_env("serving-api", "busybox:1.37"))
    repo.commit("api on 1.37")
    code, out, err = cli("apply", "--target", "prod")  # test does not have it yet
    assert code == 0, out + err
    assert "deferred new_version serving-api: waiting for test: not registered" in out
    code, applied = cli.json("apply")
    assert code == 0
    assert [c["version"] for c in sections(applied)["prod"]["applied"]] == ["2"]
    code, shown = cli.json("show", "serving-api:2", "--target", "prod")
    assert code == 0
    assert shown["tags"]["reconciler.promoted-from"] == "test:serving-api:2"
    code, in_dev = cli.json("show", "serving-api:2", "--target", "dev")
    assert shown["digest"] == in_dev["digest"]
    code, status = cli.json("status")
    assert code == 0 and status["in_sync"] is True


def _build_targets(repo: GitRepo, images: str, prod_images: str | None = None) -> None:
    where = repo.root.parent
    repo.write(
        "reconciler.toml",
        f"""
image_registry = "{images}"

[targets.dev]
registry = "sqlite:///{where}/dev.db"

[targets.prod]
registry = "sqlite:///{where}/prod.db"
after = ["dev"]
"""
        + (f'image_registry = "{prod_images}"\n' if prod_images else ""),
    )


def test_a_failed_build_in_dev_holds_prod(repo: GitRepo, cli: Cli, docker_env: DockerEnv) -> None:
    _build_targets(repo, docker_env.fresh_image_registry())
    repo.write("environments/broken/env.yml", "name: broken\nbuild:\n  path: ctx\n")
    repo.write(
        "environments/broken/ctx/Dockerfile", f"FROM {BUSYBOX_IMAGE}\nRUN echo no && false\n"
    )
    repo.write("environments/plain.yml", f"name: plain\nimage: {BUSYBOX_IMAGE}\n")
    repo.commit("seed")
    code, applied = cli.json("apply")
    assert code == 1  # the build failed
    by_target = sections(applied)
    assert [r["name"] for r in by_target["dev"]["builds"]["failed"]] == ["broken"]
    prod = by_target["prod"]
    assert [c["name"] for c in prod["applied"]] == ["plain"]  # built in dev: promoted
    assert [(c["name"], c["deferred"]) for c in prod["deferred"]] == [
        ("broken", "waiting for dev: build failed")
    ]
    code, status = cli.json("status")
    cells = {e["name"]: e["targets"] for e in status["environments"]}
    assert cells["broken"]["dev"]["state"] == "build_failed"
    assert cells["broken"]["prod"]["state"] == "deferred"

    repo.write("environments/broken/ctx/Dockerfile", f"FROM {BUSYBOX_IMAGE}\nRUN echo fixed\n")
    repo.commit("fix the build")
    code, applied = cli.json("apply")
    assert code == 0, json.dumps(applied)[:2000]
    assert [(c["name"], c["version"]) for c in sections(applied)["prod"]["applied"]] == [
        ("broken", "2")
    ]


def test_prod_reuses_the_image_dev_built_in_a_shared_image_registry(
    repo: GitRepo, cli: Cli, docker_env: DockerEnv
) -> None:
    _build_targets(repo, docker_env.fresh_image_registry())
    repo.write("environments/served/env.yml", "name: served\nbuild:\n  path: ctx\n")
    repo.write("environments/served/ctx/Dockerfile", f"FROM {BUSYBOX_IMAGE}\nRUN echo served\n")
    repo.commit("seed")
    code, applied = cli.json("apply")
    assert code == 0
    by_target = sections(applied)
    assert by_target["dev"]["builds"]["builds_run"] == 1
    prod_builds = by_target["prod"]["builds"]
    assert prod_builds["builds_run"] == 0  # content-addressed: no rebuild
    [hit] = prod_builds["cache_hits"]
    [built] = by_target["dev"]["builds"]["built"]
    assert hit["image"] == built["image"]
