"""Many targets end to end, through the real command line: three SQLite registries (dev,
test, prod) driven from one git repository, the promotion gate between them, status,
the pull request comment, evidence, and a target whose registry is down."""

from __future__ import annotations

import json
import sqlite3
import time
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from tests.conftest import CONDA, Cli, GitRepo, conda_env, image_env


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        files("reconciler").joinpath(f"schemas/{name}.schema.json").read_text()
    )
    return loaded


def configure(repo: GitRepo, prod: str = "", test: str = "") -> None:
    where = repo.root.parent / "registries"
    where.mkdir(exist_ok=True)
    repo.write(
        "reconciler.toml",
        f"""
[targets.dev]
registry = "sqlite:///{where}/dev.db"

[targets.test]
registry = "sqlite:///{where}/test.db"
after = ["dev"]
{test}

[targets.prod]
registry = "sqlite:///{where}/prod.db"
after = ["test"]
{prod}
""",
    )


def seed(repo: GitRepo, **toml: str) -> None:
    configure(repo, **toml)
    repo.write("environments/train/env.yml", conda_env("train"))
    repo.write("environments/train/conda.yml", CONDA)
    repo.write("environments/serving-api.yml", image_env("serving-api", description="api"))
    repo.commit("seed")


def sections(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert document["kind"] == "targets"
    jsonschema.validate(document, schema("targets"))
    return {s["target"]: s for s in document["targets"]}


def versions(cli: Cli, target: str, name: str) -> dict[str, dict[str, Any]]:
    code, history = cli.json("history", name, "--target", target)
    assert code == 0, history
    return {v["version"]: v for v in history["versions"]}


def test_first_apply_lands_everywhere_with_the_same_identity(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    code, plan = cli.json("plan")
    assert code == 2
    by_target = sections(plan)
    assert list(by_target) == ["dev", "test", "prod"]  # gate order
    for section in by_target.values():
        jsonschema.validate({k: v for k, v in section.items()}, schema("plan"))
    assert by_target["dev"]["registry"]["url"].endswith("dev.db")
    # before dev holds anything, test waits for dev and prod for test
    assert {c["name"]: c.get("deferred") for c in by_target["test"]["changes"]} == {
        "serving-api": "waiting for dev: not registered",
        "train": "waiting for dev: not registered",
    }
    assert by_target["test"]["summary"]["deferred"] == 2

    code, applied = cli.json("apply")
    assert code == 0, applied
    by_target = sections(applied)
    for name in ("dev", "test", "prod"):  # one run walks the gate order
        assert sorted(c["name"] for c in by_target[name]["applied"]) == ["serving-api", "train"]
        assert "deferred" not in by_target[name]
    dev = versions(cli, "dev", "train")["1"]
    prod = versions(cli, "prod", "train")["1"]
    assert prod["digest"] == dev["digest"]
    assert prod["tags"]["reconciler.promoted-from"] == "test:train:1"
    assert versions(cli, "test", "train")["1"]["tags"]["reconciler.promoted-from"] == "dev:train:1"
    assert "reconciler.promoted-from" not in dev["tags"]
    code, again = cli.json("plan")
    assert code == 0 and all(not s["has_changes"] for s in sections(again).values())


def test_a_conda_change_waits_for_dev_then_clears_it(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    assert cli("apply")[0] == 0
    repo.write("environments/train/conda.yml", CONDA.replace("1.26.4", "2.0.0"))
    repo.commit("numpy 2")

    code, out, _ = cli("apply", "--target", "prod")  # prod alone: test has not got it
    assert code == 0
    assert "deferred new_version train: waiting for test: not registered" in out
    code, plan = cli.json("plan", "--target", "test")
    assert code == 2
    [change] = plan["changes"]
    assert plan["target"] == "test"
    assert (change["action"], change["deferred"]) == (
        "new_version",
        "waiting for dev: not registered",
    )
    assert [p["name"] for p in change["packages"]] == ["numpy"]  # still the whole change

    code, applied = cli.json("apply")  # dev takes it, then test and prod in the same run
    assert code == 0
    for name in ("dev", "test", "prod"):
        assert [(c["name"], c["version"]) for c in sections(applied)[name]["applied"]] == [
            ("train", "2")
        ]
    assert versions(cli, "prod", "train")["2"]["tags"]["reconciler.promoted-from"] == (
        "test:train:2"
    )


def test_a_promoted_version_keeps_the_number_it_has_upstream(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    assert cli("apply", "--target", "dev")[0] == 0
    for image in ("busybox:1.37", "busybox:1.38"):  # dev goes to 3 while test waits
        repo.write("environments/serving-api.yml", image_env("serving-api", image))
        repo.commit(image)
        assert cli("apply", "--target", "dev")[0] == 0
    assert cli("apply")[0] == 0
    assert list(versions(cli, "test", "serving-api")) == ["3"]
    assert list(versions(cli, "prod", "serving-api")) == ["3"]
    assert (
        versions(cli, "prod", "serving-api")["3"]["digest"]
        == (versions(cli, "dev", "serving-api")["3"]["digest"])
    )


def test_soak_holds_prod_until_the_content_has_lived_in_test(repo: GitRepo, cli: Cli) -> None:
    seed(repo, prod='soak = "3s"')
    code, applied = cli.json("apply")
    assert code == 0
    held = sections(applied)["prod"]
    assert held["applied"] == []
    reasons = {c["name"]: c["deferred"] for c in held["deferred"]}
    assert reasons["train"].startswith("soaking in test until ")
    code, status = cli.json("status")
    assert code == 2
    jsonschema.validate(status, schema("status"))
    cells = {e["name"]: e["targets"] for e in status["environments"]}
    assert cells["train"]["prod"]["state"] == "deferred"
    assert cells["train"]["test"] == {"state": "in_sync", "version": "1", "detail": ""}
    time.sleep(3.2)
    code, applied = cli.json("apply", "--target", "prod")
    assert code == 0
    assert sorted(c["name"] for c in applied["applied"]) == ["serving-api", "train"]
    assert cli("status")[0] == 0


def test_an_environment_in_one_target_only(repo: GitRepo, cli: Cli) -> None:
    seed(repo, prod='include = ["serving-*"]')
    assert cli("apply")[0] == 0
    code, listed = cli.json("list")
    assert code == 0
    names = {t: sorted(r["name"] for r in s["items"]) for t, s in sections(listed).items()}
    assert names == {
        "dev": ["serving-api", "train"],
        "test": ["serving-api", "train"],
        "prod": ["serving-api"],
    }
    code, out, _ = cli("status")
    assert code == 0
    [row] = [line for line in out.splitlines() if line.startswith("train")]
    assert row.split()[-1] == "-"  # not in prod


def test_removal_archives_in_every_target(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    assert cli("apply")[0] == 0
    repo.remove("environments/serving-api.yml")
    repo.commit("retire the api")
    code, applied = cli.json("apply")
    assert code == 0
    for name, section in sections(applied).items():
        assert [(c["name"], c["action"]) for c in section["applied"]] == [
            ("serving-api", "archive")
        ], name
    for target in ("dev", "test", "prod"):
        code, shown = cli.json("show", "serving-api", "--target", target)
        assert code == 0 and shown["archived"] is True


def test_a_target_whose_registry_is_down_does_not_stop_the_others(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    # test's registry cannot be read: not a database
    (repo.root.parent / "registries" / "test.db").write_bytes(b"\x00garbage" * 100)
    code, applied = cli.json("apply")
    assert code == 1
    by_target = sections(applied)
    assert sorted(c["name"] for c in by_target["dev"]["applied"]) == ["serving-api", "train"]
    assert "error" in by_target["test"]
    prod = by_target["prod"]  # prod waits for test, which cannot be read
    assert {c["deferred"] for c in prod["deferred"]} == {
        "waiting for test: its registry could not be read"
    }
    code, status = cli.json("status")
    assert code == 1
    assert {e["targets"]["test"]["state"] for e in status["environments"]} == {"unknown"}


def test_status_text_shows_the_matrix(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    assert cli("apply", "--target", "dev")[0] == 0
    code, out, _ = cli("status")
    assert code == 2
    lines = out.splitlines()
    assert lines[0].split() == ["ENVIRONMENT", "dev", "test", "prod"]
    [train] = [line for line in lines if line.startswith("train")]
    assert "1 in sync" in train and "pending (create train:1)" in train
    assert "deferred (waiting for test: not registered)" in train
    assert lines[-1].startswith("Status: not in sync:")


def test_pull_request_comment_has_a_section_per_target(repo: GitRepo, cli: Cli) -> None:
    seed(repo, prod='soak = "24h"')
    assert cli("apply")[0] == 0
    base = repo.git("rev-parse", "HEAD")
    repo.write("environments/serving-api.yml", image_env("serving-api", "busybox:1.37"))
    head = repo.commit("api on 1.37")
    out_file = repo.root.parent / "plan.md"
    code, _, _ = cli("plan", "--base", base, "--head", head, "--markdown", str(out_file))
    assert code == 2
    comment = out_file.read_text()
    assert comment.startswith("<!-- reconciler:plan -->\n## Environment plan: 3 target(s)")
    [row] = [line for line in comment.splitlines() if line.startswith("| serving-api")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == [
        "serving-api",
        "new version serving-api:2",
        "new version serving-api:2 on merge, after dev",
        "waits: soaks 1d in test after merge",
    ]
    for name in ("dev", "test", "prod"):
        assert f"## Target {name} (" in comment


def test_evidence_states_where_each_prod_version_came_from(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    assert cli("apply")[0] == 0
    out = repo.root.parent / "evidence"
    code, document = cli.json("evidence", "--out", str(out))
    assert code == 0
    by_target = sections(document)
    for section in by_target.values():
        jsonschema.validate(section, schema("evidence"))
    assert by_target["dev"]["promotions"] == []
    [promoted] = [p for p in by_target["prod"]["promotions"] if p["name"] == "train"]
    dev_commit = versions(cli, "test", "train")["1"]["provenance"]["commit"]
    assert promoted["from"]["target"] == "test" and promoted["from"]["version"] == "1"
    assert promoted["from"]["commit"] == dev_commit and promoted["from"]["registered_at"]
    assert promoted["promoted_at"] and promoted["digest"] == promoted["from"]["digest"]
    assert "## Promotions into prod" in (out / "prod" / "evidence.md").read_text()
    assert json.loads((out / "prod" / "evidence.json").read_text())["target"] == "prod"


def test_evidence_of_several_targets_lists_each_versions_consumers(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    assert cli("apply")[0] == 0
    repo.write("jobs/pinned.yml", "environment: azureml:train:1\n")
    repo.write("jobs/floating.yml", "environment: azureml:train@latest\n")
    repo.commit("consumers")
    out = repo.root.parent / "evidence"
    code, document = cli.json("evidence", "--out", str(out), "--target", "test", "--target", "prod")
    assert code == 0
    by_target = sections(document)
    assert list(by_target) == ["test", "prod"]  # dev is read for the promotions only
    for name, section in by_target.items():
        jsonschema.validate(section, schema("evidence"))
        train = {e["name"]: e for e in section["environments"]}["train"]
        assert {v["version"]: v["consumers"] for v in train["versions"]} == {
            "1": ["jobs/pinned.yml:1"]
        }, name
        assert train["latest_consumers"] == ["jobs/floating.yml:1"], name
        markdown = (out / name / "evidence.md").read_text()
        assert "Following @latest: 1 consumer(s)." in markdown
    [promoted] = [p for p in by_target["test"]["promotions"] if p["name"] == "train"]
    assert promoted["from"]["target"] == "dev" and promoted["from"]["found"]


def test_drift_report_has_a_section_per_target_and_the_matrix(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    assert cli("apply", "--target", "dev")[0] == 0
    report = repo.root.parent / "report"
    code, document = cli.json("drift", "--report-dir", str(report))
    assert code == 2  # test and prod are pending
    assert list(sections(document)) == ["dev", "test", "prod"]
    jsonschema.validate(document["status"], schema("status"))
    for section in document["targets"]:
        jsonschema.validate(section, schema("drift-report"))
    markdown = (report / "drift-report.md").read_text()
    assert "### Promotion status: not in sync" in markdown and "## Target prod" in markdown
    html = (report / "drift-report.html").read_text()
    assert "<table id=status>" in html and "id='target-test'" in html


def test_without_targets_and_with_an_explicit_registry_nothing_changes(
    repo: GitRepo, cli: Cli
) -> None:
    repo.write("environments/a.yml", image_env("a"))
    repo.commit("seed")
    code, plan = cli.json("plan")
    assert code == 2 and "target" not in plan and plan["kind"] == "plan"
    code, out, err = cli("plan", "--target", "dev")
    assert code == 1 and "reconciler.toml has no [targets]" in err
    seed(repo)
    adhoc = f"sqlite:///{repo.root.parent / 'adhoc.db'}"
    code, applied = cli.json("apply", "--registry", adhoc)  # one ad-hoc target
    assert code == 0 and "kind" not in applied
    assert sorted(c["name"] for c in applied["applied"]) == ["a", "serving-api", "train"]
    code, _, err = cli("plan", "--target", "stage")
    assert code == 1 and "--target stage: unknown target (known: dev, test, prod)" in err


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[targets.dev]\nregistry = "sqlite:///d.db"\nsoak = 3\nfoo = 1\n', "unknown key `foo`"),
        ('[targets.a]\nregistry = "sqlite:///a.db"\nafter = ["a"]\n', "cannot wait for itself"),
    ],
)
def test_bad_targets_name_the_file_and_key(
    repo: GitRepo, cli: Cli, body: str, message: str
) -> None:
    repo.write("reconciler.toml", body)
    repo.commit("settings")
    code, _, err = cli("plan")
    assert code == 1 and "reconciler.toml" in err and message in err


def test_a_saved_plan_of_a_gated_target_leaves_out_what_waits(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    saved = repo.root.parent / "test.plan.json"
    code, _, err = cli("plan", "--out", str(saved))
    assert code == 1 and "name it with --target" in err
    cli("plan", "--target", "test", "--out", str(saved))
    data = json.loads(saved.read_text())
    assert data["apply"]["changes"] == []  # both creates wait for dev
    assert {c["deferred"] for c in data["plan"]["changes"]} == {"waiting for dev: not registered"}
    code, applied = cli.json("apply", str(saved), "--target", "test")
    assert code == 0 and applied["applied"] == []
    with sqlite3.connect(repo.root.parent / "registries" / "test.db") as db:
        assert db.execute("select count(*) from versions").fetchone() == (0,)


def test_a_scheduled_reconcile_of_one_target_keeps_its_gate(repo: GitRepo, cli: Cli) -> None:
    seed(repo)
    status = repo.root.parent / "status.json"
    code, out, err = cli("reconcile", "--once", "--status-file", str(status), "--target", "test")
    assert code in (0, 2), out + err
    code, plan = cli.json("plan", "--target", "test")
    assert code == 2 and all(c.get("deferred") for c in plan["changes"])  # nothing landed
    assert cli("reconcile", "--once", "--status-file", str(status), "--target", "dev")[0] in (0, 2)
    cli("reconcile", "--once", "--status-file", str(status), "--target", "test")
    code, listed = cli.json("list", "--target", "test")
    assert sorted(r["name"] for r in listed["items"]) == ["serving-api", "train"]
    code, _, err = cli("watch", "--debounce", "10")
    assert code == 1 and "one target at a time" in err
