"""The command line against Azure ML: the real SDK over HTTPS to the emulator, real git
repositories, unchanged commands with an azureml:// registry URL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.azure_support import Workspace
from tests.conftest import Cli, GitRepo, image_env
from tests.test_reconcile import actions, seed


def test_apply_then_plan_is_a_noop_including_a_build_context(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    seed(repo)
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert code == 2
    assert sorted(actions(plan)) == [
        ("create", "base", "1"),
        ("create", "inline", "3"),
        ("create", "pydata", "1"),
        ("create", "serving", "1"),
    ]
    code, out, err = cli("apply", "--registry", workspace.url)
    assert code == 0, out + err
    assert "4 change(s) applied" in out
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert code == 0, plan["changes"]
    assert len(plan["in_sync"]) == 4
    # the build context went through the datastore to blob storage
    assert workspace.requests("listSecrets")
    serving = workspace.client().environments.get("serving", "1")
    assert "/LocalUpload/" in serving.build.path and serving.build.path.endswith("/context/")
    code, out, _ = cli("apply", "--registry", workspace.url)
    assert code == 0 and "Nothing to do" in out


def test_changes_archive_and_restore(repo: GitRepo, cli: Cli, workspace: Workspace) -> None:
    seed(repo)
    assert cli("apply", "--registry", workspace.url)[0] == 0
    repo.write("environments/serving/ctx/requirements.txt", "flask==3.0.3\n")
    repo.write(
        "environments/pydata/env.yml",
        "name: pydata\nimage: busybox:1.36\nconda_file: conda.yml\ntags:\n  team: platform\n",
    )
    repo.remove("environments/base.yml")
    repo.commit("change, retag, remove")
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert sorted(actions(plan)) == [
        ("archive", "base", None),
        ("new_version", "serving", "2"),
        ("update_metadata", "pydata", "1"),
    ]
    assert cli("apply", "--registry", workspace.url)[0] == 0
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert code == 0, plan["changes"]
    client = workspace.client()
    assert client.environments.get("pydata", "1").tags["team"] == "platform"
    assert client.environments.get("serving", "2").build.path != (
        client.environments.get("serving", "1").build.path
    )
    code, rows = cli.json("list", "--registry", workspace.url, "--include-archived")
    assert {r["name"]: r["archived"] for r in rows}["base"] is True

    repo.write("environments/base.yml", image_env("base", description="Base image"))
    repo.commit("bring base back")
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert actions(plan) == [("restore", "base", None)]
    assert cli("apply", "--registry", workspace.url)[0] == 0
    code, rows = cli.json("list", "--registry", workspace.url)
    assert "base" in {r["name"] for r in rows}


def test_hand_edited_tags_show_as_drift(repo: GitRepo, cli: Cli, workspace: Workspace) -> None:
    seed(repo)
    assert cli("apply", "--registry", workspace.url)[0] == 0
    client = workspace.client()
    env = client.environments.get("pydata", "1")
    env.tags = {**env.tags, "team": "edited-in-the-portal"}
    client.environments.create_or_update(env)
    # The incremental view cannot see a tag edit (the container listing does not move) and
    # says so; a full read does.
    code, plan = cli.json("plan", "--registry", workspace.url)
    assert code == 0 and plan["changes"] == [] and plan["drift"] == []
    assert plan["registry"]["read"]["view"] == "incremental"
    code, out, _ = cli("plan", "--registry", workspace.url)
    assert "incremental view" in out and "plan --refresh" in out
    code, plan = cli.json("plan", "--refresh", "--registry", workspace.url)
    assert plan["changes"] == [] and plan["registry"]["read"]["view"] == "full"
    drift = [(d["name"], d["reason"]) for d in plan["drift"]]
    assert drift == [("pydata", "description or tags edited in the registry outside git")]


def test_show_reads_provenance_from_the_service(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    seed(repo)
    assert cli("apply", "--registry", workspace.url)[0] == 0
    code, shown = cli.json("show", "pydata:1", "--registry", workspace.url)
    assert code == 0
    assert shown["provenance"]["path"] == "environments/pydata/env.yml"
    assert shown["provenance"]["commit"] == repo.git("rev-parse", "HEAD")
    assert shown["build"]["status"] == "not_built"  # the record, kept in a version tag


def test_emulator_command_prints_what_a_client_needs(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "emulator", "--db", str(tmp_path / "r.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(6)]
    finally:
        process.terminate()
        process.wait(10)
    exports = dict(
        line.removeprefix("export ").strip().split("=", 1)
        for line in lines
        if line.startswith("export ")
    )
    assert exports["RECONCILER_AZUREML_ENDPOINT"].startswith("https://127.0.0.1:")
    assert exports["REQUESTS_CA_BUNDLE"] == str(tmp_path / "tls" / "ca.pem")
    assert (tmp_path / "tls" / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert len(exports["RECONCILER_AZUREML_TOKEN"]) >= 20


def test_an_azure_ml_registry_url_applies_and_converges(
    repo: GitRepo, cli: Cli, workspace: Workspace
) -> None:
    url = f"azureml://registries/{workspace.name}"
    repo.write("environments/base.yml", image_env("base", description="Base image"))
    repo.write(
        "environments/pydata.yml",
        "name: pydata\nimage: busybox:1.36\nconda_file:\n"
        "  dependencies: [python=3.11]\ntags:\n  team: ds\n",
    )
    repo.commit("seed")
    code, out, err = cli("apply", "--registry", url)
    assert code == 0, out + err
    assert any("/discovery" in line for line in workspace.running.emulator.requests)
    repo.write(
        "environments/pydata.yml",
        "name: pydata\nimage: busybox:1.36\nconda_file:\n"
        "  dependencies: [python=3.12]\ntags:\n  team: ml\n",
    )
    repo.commit("bump")
    code, plan = cli.json("plan", "--registry", url)
    assert actions(plan) == [("new_version", "pydata", "2")]
    assert cli("apply", "--registry", url)[0] == 0
    code, plan = cli.json("plan", "--registry", url)
    assert code == 0 and len(plan["in_sync"]) == 2
