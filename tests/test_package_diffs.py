"""Package-level diffs: conda files and build-context requirement files, in plan text, plan
JSON, pull request Markdown and the drift report, on real git repositories and SQLite."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema

from reconciler.core.governance.package_diff import content_diff
from tests.conftest import Cli, GitRepo

CONDA_V1 = """channels:
  - conda-forge
dependencies:
  - python=3.11
  - numpy=1.26.4
  - pandas
  - pip:
      - requests==2.31.0
"""
CONDA_V2 = """channels:
  - conda-forge
  - bioconda
dependencies:
  - python=3.11
  - numpy=2.0.1
  - scipy=1.13.0
  - pip:
      - requests==2.32.0
"""
SECRET = "hunter2-index-password"


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        resources.files("reconciler").joinpath(f"schemas/{name}").read_text()
    )
    return loaded


def seeded(repo: GitRepo, cli: Cli) -> None:
    repo.write("environments/ml.yml", "name: ml\nimage: busybox:1.36\nconda_file: conda.yml\n")
    repo.write("environments/conda.yml", CONDA_V1)
    repo.write("environments/svc.yml", "name: svc\nbuild:\n  path: ctx\n")
    repo.write("environments/ctx/Dockerfile", "FROM busybox:1.36\n")
    repo.write(
        "environments/ctx/requirements.txt",
        f"--index-url https://build:{SECRET}@pypi.example/simple\ntorch==2.0.0\nflask\n",
    )
    repo.write("environments/ctx/requirements-dev.txt", "pytest==8.0.0\n")
    repo.commit("seed")
    code, _, err = cli("apply")
    assert code == 0, err


def bump(repo: GitRepo) -> None:
    repo.write("environments/conda.yml", CONDA_V2)
    repo.write(
        "environments/ctx/requirements.txt",
        f"--index-url https://build:{SECRET}-new@pypi.example/simple\ntorch==2.1.0\n"
        "flask>=3\nhttpx==0.27.0\n",
    )


def change_of(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in document["changes"] if c["name"] == name)
    return found


def test_plan_json_carries_package_and_channel_changes(repo: GitRepo, cli: Cli) -> None:
    seeded(repo, cli)
    bump(repo)
    code, document = cli.json("plan")
    assert code == 2
    jsonschema.Draft202012Validator(schema("plan.schema.json")).validate(document)
    ml = change_of(document, "ml")
    assert ml["packages"] == [
        {
            "manager": "conda",
            "name": "numpy",
            "before": "1.26.4",
            "after": "2.0.1",
            "kind": "changed",
            "source": "conda_file",
        },
        {
            "manager": "conda",
            "name": "pandas",
            "before": "",
            "after": None,
            "kind": "removed",
            "source": "conda_file",
        },
        {
            "manager": "conda",
            "name": "scipy",
            "before": None,
            "after": "1.13.0",
            "kind": "added",
            "source": "conda_file",
        },
        {
            "manager": "pip",
            "name": "requests",
            "before": "2.31.0",
            "after": "2.32.0",
            "kind": "changed",
            "source": "conda_file",
        },
    ]
    assert ml["channels"] == [
        {"manager": "conda", "channel": "bioconda", "kind": "added", "source": "conda_file"}
    ]
    svc = change_of(document, "svc")
    by_name = {p["name"]: p for p in svc["packages"]}
    assert set(by_name) == {"flask", "torch", "httpx"}  # requirements-dev.txt did not change
    assert by_name["torch"]["before"] == "2.0.0" and by_name["torch"]["after"] == "2.1.0"
    assert by_name["flask"] == {
        "manager": "pip",
        "name": "flask",
        "before": "",
        "after": ">=3",
        "kind": "changed",
        "source": "requirements.txt",
    }
    assert by_name["httpx"]["kind"] == "added"
    # the index credential changed: reported, never shown
    [index] = svc["channels"]
    assert index["kind"] == "changed" and index["channel"] == "https://***@pypi.example/simple"
    assert SECRET not in json.dumps(document)


def test_plan_text_shows_packages_instead_of_list_indexes(repo: GitRepo, cli: Cli) -> None:
    seeded(repo, cli)
    bump(repo)
    code, out, err = cli("plan")
    assert code == 2, err
    assert "conda: numpy 1.26.4 -> 2.0.1" in out
    assert "conda: + scipy 1.13.0" in out
    assert "conda: - pandas" in out
    assert "pip: requests 2.31.0 -> 2.32.0" in out
    assert "conda: + channel bioconda" in out
    assert "pip, requirements.txt: torch 2.0.0 -> 2.1.0" in out
    assert "pip index https://***@pypi.example/simple (a masked credential changed)" in out
    assert "conda.dependencies[" not in out and "build.files.requirements.txt" not in out
    assert SECRET not in out


def test_uncommitted_requirement_file_is_read_from_the_working_tree(
    repo: GitRepo, cli: Cli
) -> None:
    """An edited file has a blob id git's object database does not hold yet."""
    seeded(repo, cli)
    repo.write("environments/ctx/requirements-dev.txt", "pytest==8.1.0\nruff==0.5.0\n")
    code, document = cli.json("plan")
    assert code == 2
    svc = change_of(document, "svc")
    assert [(p["name"], p["kind"], p["source"]) for p in svc["packages"]] == [
        ("pytest", "changed", "requirements-dev.txt"),
        ("ruff", "added", "requirements-dev.txt"),
    ]
    assert "requirements_unread" not in svc


def test_drift_report_shows_pending_package_changes(repo: GitRepo, cli: Cli) -> None:
    seeded(repo, cli)
    bump(repo)
    repo.commit("bump")
    code, _, err = cli("drift")
    assert code == 2, err
    report_dir = repo.root / "drift-report"
    document = json.loads((report_dir / "drift-report.json").read_text())
    jsonschema.Draft202012Validator(schema("drift-report.schema.json")).validate(document)
    ml = next(e for e in document["environments"] if e["name"] == "ml")
    [pending] = [i for i in ml["items"] if i["class"] == "pending"]
    assert {"numpy", "pandas", "scipy", "requests"} == {p["name"] for p in pending["packages"]}
    markdown = (report_dir / "drift-report.md").read_text()
    assert "<code>conda: numpy 1.26.4 → 2.0.1</code>" in markdown
    html = (report_dir / "drift-report.html").read_text()
    assert "<code>conda: + scipy 1.13.0</code>" in html
    for text in (markdown, html, json.dumps(document)):
        assert SECRET not in text


def test_content_diff_is_pure_and_reports_unread_files() -> None:
    before = {"conda": None, "build": {"files": [["requirements.txt", "100644", "a" * 40]]}}
    after = {"conda": None, "build": {"files": [["requirements.txt", "100644", "b" * 40]]}}
    diff = content_diff(before, after, {"a" * 40: "numpy==1\n"})
    assert diff.unread == ("requirements.txt",) and not diff.packages
    diff = content_diff(before, after, {"a" * 40: "numpy==1\n", "b" * 40: "numpy==2\n"})
    assert [(p.name, p.before, p.after) for p in diff.packages] == [("numpy", "1", "2")]
    assert not content_diff(before, before, {})
