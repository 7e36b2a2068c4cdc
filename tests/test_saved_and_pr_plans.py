"""Saved plans (`plan --out`, `apply FILE`, the stale check) and pull request plans
(`plan --base --head`), on real git repositories with branches and a real SQLite file."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from reconciler.render.markdown import GITHUB_LIMIT, PLAN_MARKER
from tests.conftest import Cli, GitRepo, image_env


def plan_schema() -> dict[str, Any]:
    text = resources.files("reconciler").joinpath("schemas/plan.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def seeded(repo: GitRepo, cli: Cli) -> None:
    repo.write("environments/a.yml", image_env("a", "busybox:1.36"))
    repo.write("environments/b.yml", image_env("b", "busybox:1.37"))
    repo.commit("seed")
    assert cli("apply")[0] == 0


def versions(cli: Cli) -> list[tuple[str, str]]:
    code, listing = cli.json("list", "--include-archived")
    assert code == 0
    return sorted((e["name"], e["latest_version"]) for e in listing)


def test_saved_plan_applies_exactly_what_was_reviewed(
    repo: GitRepo, cli: Cli, tmp_path: Path
) -> None:
    seeded(repo, cli)
    repo.write("environments/a.yml", image_env("a", "busybox:1.38"))
    repo.write("environments/c.yml", image_env("c", "busybox:1.36"))
    repo.commit("a and c")
    saved = tmp_path / "plan.json"
    code, out, err = cli("plan", "--out", str(saved))
    assert code == 2, err
    data = json.loads(saved.read_text())
    assert data["kind"] == "saved-plan" and data["format_version"] == 1
    jsonschema.Draft202012Validator(plan_schema()).validate(data["plan"])
    # a later edit in the working tree is not part of what was reviewed
    repo.write("environments/b.yml", image_env("b", "busybox:9.99"))
    code, out, err = cli("apply", str(saved))
    assert code == 0, err
    assert versions(cli) == [("a", "2"), ("b", "1"), ("c", "1")]
    # applying it twice is refused: the registry moved on
    code, out, err = cli("apply", str(saved))
    assert code == 1 and "the registry changed since the plan was made" in err


def test_stale_saved_plan_is_refused_and_writes_nothing(
    repo: GitRepo, cli: Cli, tmp_path: Path
) -> None:
    seeded(repo, cli)
    repo.write("environments/a.yml", image_env("a", "busybox:1.38"))
    repo.commit("a")
    saved = tmp_path / "plan.json"
    assert cli("plan", "--out", str(saved))[0] == 2
    repo.write("environments/b.yml", image_env("b", "busybox:1.39"))
    repo.commit("b moved after the plan was made")
    code, out, err = cli("apply", str(saved))
    assert code == 1 and "the source moved since the plan was made" in err
    assert versions(cli) == [("a", "1"), ("b", "1")]

    repo.git("reset", "-q", "--hard", "HEAD~1")  # back at the commit the plan was made at
    code, out, err = cli("apply", str(saved))
    assert code == 0, err
    assert versions(cli) == [("a", "2"), ("b", "1")]


def test_tampered_or_foreign_plan_files_are_refused(
    repo: GitRepo, cli: Cli, tmp_path: Path
) -> None:
    seeded(repo, cli)
    repo.write("environments/a.yml", image_env("a", "busybox:1.38"))
    repo.commit("a")
    saved = tmp_path / "plan.json"
    assert cli("plan", "--out", str(saved))[0] == 2
    data = json.loads(saved.read_text())
    data["apply"]["changes"][0]["write"]["content"]["image"] = "evil:1"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data))
    code, out, err = cli("apply", str(tampered))
    assert code == 1 and "does not match its digest" in err
    not_a_plan = tmp_path / "other.json"
    not_a_plan.write_text('{"kind": "plan"}')
    code, out, err = cli("apply", str(not_a_plan))
    assert code == 1 and "not a saved plan" in err
    code, out, err = cli("apply", str(tmp_path / "missing.json"))
    assert code == 1 and "cannot read the saved plan" in err
    other_registry = f"sqlite:///{tmp_path / 'other.db'}"
    code, out, err = cli("apply", str(saved), "--registry", other_registry)
    assert code == 1 and "the plan was made for the registry" in err
    assert versions(cli) == [("a", "1"), ("b", "1")]


def test_plan_with_errors_is_not_saved(repo: GitRepo, cli: Cli, tmp_path: Path) -> None:
    repo.write("environments/bad.yml", "name: bad\nimage: [\n")
    repo.commit("bad")
    saved = tmp_path / "plan.json"
    code, out, err = cli("plan", "--out", str(saved))
    assert code == 1 and "not written" in err
    assert not saved.exists()


def test_pull_request_plan_marks_what_the_branch_introduces(repo: GitRepo, cli: Cli) -> None:
    seeded(repo, cli)
    # main moved past the registry: a pending change not made by the pull request
    repo.write("environments/b.yml", image_env("b", "busybox:1.40"))
    repo.commit("main moves b")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write(
        "environments/ml/env.yml", "name: ml\nimage: busybox:latest\nconda_file: conda.yml\n"
    )
    repo.write(
        "environments/ml/conda.yml",
        "dependencies:\n  - python=3.11\n  - numpy\n  - pip:\n    - torch==2.3.1\n",
    )
    repo.write("environments/a.yml", image_env("a", "busybox:1.38"))
    repo.commit("feature")
    repo.git("checkout", "-q", "main")
    code, document = cli.json("plan", "--base", "main", "--head", "feature")
    assert code == 2
    jsonschema.Draft202012Validator(plan_schema()).validate(document)
    introduced = {(c["name"], c["action"]): c["introduced"] for c in document["changes"]}
    assert introduced == {
        ("a", "new_version"): True,
        ("ml", "create"): True,
        ("b", "new_version"): False,
    }
    pr = document["pull_request"]
    assert pr["base"]["ref"] == "main" and pr["head"]["ref"] == "feature"
    assert pr["environments_changed"] == ["a", "ml"]
    rules = {(f["name"], f["rule"]) for f in pr["findings"]}
    assert {("ml", "image-latest"), ("ml", "conda-unpinned")} <= rules
    code, out, err = cli("plan", "--base", "main", "--head", "feature", "--markdown", "-")
    assert code == 2
    assert out.startswith(PLAN_MARKER)
    assert "2 change(s) from this pull request" in out
    assert "<code>busybox:1.36</code> → <code>busybox:1.38</code>" in out
    assert "Already pending on the base branch" in out and "<b>b:2 (from 1)</b>" in out
    assert "conda-unpinned" in out
    # the registry is untouched and the working tree (main) was never checked out
    assert versions(cli) == [("a", "1"), ("b", "1")]
    assert repo.git("rev-parse", "--abbrev-ref", "HEAD") == "main"


def test_pull_request_comment_fits_github(repo: GitRepo, cli: Cli, tmp_path: Path) -> None:
    repo.write("environments/keep.yml", image_env("keep"))
    repo.commit("base")
    repo.git("checkout", "-q", "-b", "big")
    for i in range(3000):
        repo.write(f"environments/e{i:04d}.yml", image_env(f"env-{i:04d}", f"busybox:{i}"))
    repo.commit("many")
    comment = tmp_path / "comment.md"
    code, out, err = cli("plan", "--base", "main", "--head", "big", "--markdown", str(comment))
    assert code == 2, err
    text = comment.read_text()
    assert len(text) < GITHUB_LIMIT
    assert "more changes, 1 more pending changes not shown" in text and "plan.json" in text


def test_usage_errors(repo: GitRepo, cli: Cli) -> None:
    seeded(repo, cli)
    code, out, err = cli("plan", "--base", "main")
    assert code == 1 and "--base and --head go together" in err
    code, out, err = cli("apply", "plan.json", "--ref", "main")
    assert code == 1 and "applied as it is" in err
