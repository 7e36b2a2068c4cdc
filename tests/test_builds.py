"""Image builds on the real Docker Engine, pushed to the real OCI registry."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, GitRepo
from tests.docker_support import BUSYBOX_IMAGE, CONDA_IMAGE, DockerEnv

CONDA_SPEC = (
    "channels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip:\n    - numpy==1.26.4\n"
)
DOCKERFILE = (
    f"FROM {BUSYBOX_IMAGE}\nCOPY requirements.txt /app/requirements.txt\n"
    "RUN cat /app/requirements.txt\n"
)


def seed(repo: GitRepo) -> None:
    repo.write("environments/plain.yml", f"name: plain\nimage: {BUSYBOX_IMAGE}\n")
    repo.write(
        "environments/conda/env.yml", f"name: conda\nimage: {CONDA_IMAGE}\nconda_file: conda.yml\n"
    )
    repo.write("environments/conda/conda.yml", CONDA_SPEC)
    for name in ("served", "served-copy"):  # identical content under two names
        repo.write(f"environments/{name}/env.yml", f"name: {name}\nbuild:\n  path: ctx\n")
        repo.write(f"environments/{name}/ctx/Dockerfile", DOCKERFILE)
        repo.write(f"environments/{name}/ctx/requirements.txt", "flask==3.0.0\n")
    repo.commit("seed")


def apply(cli: Cli, registry: str, *extra: str) -> tuple[int, dict[str, Any]]:
    code, result = cli.json("apply", "--image-registry", registry, *extra)
    return code, result


def tags(docker_env: DockerEnv, registry: str) -> list[str]:
    path = registry.split("/", 1)[1] + "/environments"
    with urllib.request.urlopen(f"http://{docker_env.registry_host}/v2/{path}/tags/list") as r:
        return sorted(json.load(r)["tags"] or [])


def show(cli: Cli, target: str) -> dict[str, Any]:
    document: dict[str, Any]
    code, document = cli.json("show", target)
    assert code == 0
    return document


def test_first_apply_builds_each_content_once_and_a_second_builds_nothing(
    repo: GitRepo, cli: Cli, docker_env: DockerEnv
) -> None:
    registry = docker_env.fresh_image_registry()
    seed(repo)
    code, result = apply(cli, registry)
    assert code == 0, result
    builds = result["builds"]
    assert builds["builds_run"] == 3  # plain (re-tag), conda, served == served-copy
    assert {r["name"] for r in builds["built"]} == {"plain", "conda", "served", "served-copy"}
    assert len(tags(docker_env, registry)) == 3
    served, copy = show(cli, "served:1")["build"], show(cli, "served-copy:1")["build"]
    assert served["status"] == "succeeded" and served["image"] == copy["image"]
    assert served["image"].startswith(f"{registry}/environments@sha256:")
    assert served["started_at"] and served["ended_at"] and "pushed" in served["log_tail"]
    assert "RUN cat /app/requirements.txt" in Path(served["log_path"]).read_text()
    conda = show(cli, "conda:1")["build"]
    assert "conda env create -p /azureml-envs/env" in Path(conda["log_path"]).read_text()

    code, again = apply(cli, registry)
    assert code == 0
    assert again["builds"]["builds_run"] == 0 and again["builds"]["built"] == []


def test_content_change_builds_exactly_one_new_image(
    repo: GitRepo, cli: Cli, docker_env: DockerEnv
) -> None:
    registry = docker_env.fresh_image_registry()
    seed(repo)
    apply(cli, registry)
    repo.write("environments/served/ctx/requirements.txt", "flask==3.0.3\n")
    repo.commit("bump flask")
    code, plan = cli.json("plan", "--image-registry", registry)
    assert [(c["name"], c.get("build")) for c in plan["changes"]] == [("served", "will build")]
    code, result = apply(cli, registry)
    assert code == 0
    assert result["builds"]["builds_run"] == 1
    assert [(r["name"], r["version"]) for r in result["builds"]["built"]] == [("served", "2")]
    assert len(tags(docker_env, registry)) == 4


def test_plan_predicts_cache_hits_for_known_content(
    repo: GitRepo, cli: Cli, docker_env: DockerEnv
) -> None:
    registry = docker_env.fresh_image_registry()
    seed(repo)
    apply(cli, registry)
    repo.write("environments/twin.yml", f"name: twin\nimage: {BUSYBOX_IMAGE}\ndescription: same\n")
    repo.commit("twin")
    code, plan = cli.json("plan", "--image-registry", registry)
    assert [(c["name"], c.get("build")) for c in plan["changes"]] == [("twin", "cache hit")]
    code, result = apply(cli, registry)
    assert result["builds"]["builds_run"] == 0
    assert [r["name"] for r in result["builds"]["cache_hits"]] == ["twin"]
    assert show(cli, "twin:1")["build"]["image"] == show(cli, "plain:1")["build"]["image"]


def test_failing_build_keeps_the_version_and_is_retried(
    repo: GitRepo, cli: Cli, docker_env: DockerEnv
) -> None:
    registry = docker_env.fresh_image_registry()
    repo.write("environments/broken/env.yml", "name: broken\nbuild:\n  path: ctx\n")
    repo.write(
        "environments/broken/ctx/Dockerfile",
        f"FROM {BUSYBOX_IMAGE}\nRUN echo about to fail && false\n",
    )
    repo.commit("broken")
    code, result = apply(cli, registry)
    assert code == 1
    [failed] = result["builds"]["failed"]
    assert failed["status"] == "failed" and failed["attempts"] == 1
    assert "about to fail" in failed["log_tail"]
    assert "about to fail" in Path(failed["log_path"]).read_text()
    shown = show(cli, "broken:1")
    assert shown["version"] == "1" and shown["build"]["status"] == "failed"  # not rolled back
    # the next reconcile waits for the backoff instead of hammering the engine
    code, again = apply(cli, registry)
    assert code == 1 and again["builds"]["builds_run"] == 0
    assert [r["name"] for r in again["builds"]["waiting"]] == ["broken"]
    # a forced rebuild tries again now
    code, rebuilt = cli.json("build", "broken", "--image-registry", registry)
    assert code == 1 and rebuilt["failed"][0]["attempts"] == 2
    # fixed in git: a new version, built
    repo.write("environments/broken/ctx/Dockerfile", f"FROM {BUSYBOX_IMAGE}\nRUN true\n")
    repo.commit("fix")
    code, fixed = apply(cli, registry)
    assert code == 0 and [r["version"] for r in fixed["builds"]["built"]] == ["2"]


def test_registry_down_is_a_clear_error_and_nothing_is_lost(
    repo: GitRepo, cli: Cli, docker_env: DockerEnv
) -> None:
    repo.write("environments/plain.yml", f"name: plain\nimage: {BUSYBOX_IMAGE}\n")
    repo.commit("one")
    code, result = apply(cli, "127.0.0.1:1/nowhere")
    assert code == 1
    [failed] = result["builds"]["failed"]
    assert "push to 127.0.0.1:1/nowhere failed" in failed["message"]
    assert show(cli, "plain:1")["version"] == "1"  # registered all the same
    assert [c["name"] for c in result["applied"]] == ["plain"]


def test_no_docker_engine_registers_and_reports(
    repo: GitRepo, cli: Cli, docker_env: DockerEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    repo.write("environments/plain.yml", f"name: plain\nimage: {BUSYBOX_IMAGE}\n")
    repo.commit("one")
    code, result = apply(cli, docker_env.fresh_image_registry())
    assert code == 0
    assert result["builds"]["unavailable"].startswith("no Docker Engine")
    assert show(cli, "plain:1")["build"]["status"] == "not_built"
    code, _ = apply(cli, docker_env.fresh_image_registry(), "--require-builds")
    assert code == 1


def test_builds_run_with_the_network_disabled(
    repo: GitRepo, cli: Cli, docker_env: DockerEnv
) -> None:
    registry = docker_env.fresh_image_registry()
    repo.write("environments/net/env.yml", "name: net\nbuild:\n  path: ctx\n")
    repo.write(
        "environments/net/ctx/Dockerfile",
        f"FROM {BUSYBOX_IMAGE}\nRUN ip link | grep -v ' lo' | grep -c '^[0-9]' > /n; "
        'cat /n; test "$(cat /n)" = 0\n',
    )
    repo.commit("net")
    code, result = apply(cli, registry)
    assert code == 0, result["builds"]
