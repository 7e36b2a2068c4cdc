"""Consumers of environments, end to end on real git repositories and real SQLite files:
every reference form, findings in validate/plan/drift, safe archives, retention sparing
pinned versions, `refs` at the working tree and at an older commit, and the settings."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema

from tests.conftest import Cli, GitRepo, image_env

PIPELINE = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
# the training pipeline
jobs:
  prep:
    type: command
    environment: azureml:train:1   # pinned by hand
    component: azureml:prep-component:3
  train:
    type: command
    environment: "azureml:train@latest"
  score: {type: command, environment: 'azureml://registries/shared/environments/train/versions/1'}
  nested:
    jobs:
      deep:
        steps:
          - environment:
              azureml://subscriptions/s/resourceGroups/r/workspaces/w/environments/train/labels/latest
          - environment:
              image: busybox:1.36
  ghost:
    environment: azureml:ghost:4
"""

SCRIPT = """\
from azure.ai.ml import command

job = command(
    environment="azureml:train:1",
    component="azureml:not-an-environment:1",
)
"""


def validate(schema: str, document: dict[str, Any]) -> None:
    text = resources.files("reconciler").joinpath(f"schemas/{schema}").read_text()
    jsonschema.Draft202012Validator(json.loads(text)).validate(document)


def released(repo: GitRepo, cli: Cli, image: str) -> None:
    repo.write("environments/train.yml", image_env("train", image))
    repo.commit(f"train {image}")
    code, out, err = cli("apply")
    assert code == 0, out + err


def findings(document: dict[str, Any], prefix: str = "ref-") -> list[tuple[str, str, Any, str]]:
    return sorted(
        (d["rule"], d["path"], d["line"], d["severity"])
        for d in document["diagnostics"]
        if d["rule"].startswith(prefix)
    )


def test_every_form_is_found_with_its_position_and_key_path(repo: GitRepo, cli: Cli) -> None:
    released(repo, cli, "busybox:1.36")
    repo.write("pipelines/train.yml", PIPELINE)
    repo.write("src/submit.py", SCRIPT)
    repo.commit("consumers")
    code, document = cli.json("refs")
    assert code == 0, document
    [train] = [e for e in document["environments"] if e["name"] == "train"]
    [pins] = train["versions"]
    assert pins["version"] == "1" and pins["latest"] and not pins["archived"]
    shown = sorted(
        (r["path"], r["line"], r["column"], r["form"], r["key_path"]) for r in pins["references"]
    )
    assert shown == [
        ("pipelines/train.yml", 7, 18, "name-version", "jobs.prep.environment"),
        ("pipelines/train.yml", 12, 40, "registry-version", "jobs.score.environment"),
        ("src/submit.py", 4, 18, "name-version", None),
    ]
    floating = sorted((r["line"], r["form"], r["key_path"]) for r in train["floating"])
    assert floating == [
        (11, "name-label", "jobs.train.environment"),
        (18, "workspace-label", "jobs.nested.jobs.deep.steps[0].environment"),
    ]
    assert [(r["name"], r["line"]) for r in document["unknown"]] == [("ghost", 22)]
    assert [(r["line"], r["key_path"]) for r in document["inline"]] == [
        (20, "jobs.nested.jobs.deep.steps[1].environment")
    ]
    # a component reference is not an environment's
    texts = [
        r["text"] for e in document["environments"] for v in e["versions"] for r in v["references"]
    ]
    assert not any("component" in t for t in texts)
    code, one = cli.json("refs", "train:1")
    assert [e["name"] for e in one["environments"]] == ["train"]
    assert len(one["environments"][0]["versions"][0]["references"]) == 3


def test_findings_in_validate_plan_and_drift(repo: GitRepo, cli: Cli) -> None:
    released(repo, cli, "busybox:1.36")
    repo.write("pipelines/train.yml", PIPELINE)
    repo.commit("consumers")
    code, validated = cli.json("validate")
    assert code == 0
    assert ("ref-floating", "pipelines/train.yml", 11, "info") in findings(validated)
    assert ("ref-inline-environment", "pipelines/train.yml", 20, "info") in findings(validated)
    # a new version in git: the pins of version 1 go stale
    repo.write("environments/train.yml", image_env("train", "busybox:1.37"))
    repo.commit("train 1.37")
    code, plan = cli.json("plan")
    assert code == 2
    rules = findings(plan)
    assert ("ref-stale", "pipelines/train.yml", 7, "warning") in rules
    assert ("ref-stale", "pipelines/train.yml", 12, "warning") in rules
    assert ("ref-unknown", "pipelines/train.yml", 22, "warning") in rules
    [stale] = [d for d in plan["diagnostics"] if d["rule"] == "ref-stale" and d["line"] == 7]
    assert "move to 2" in stale["message"]
    code, out, err = cli("drift", "--github-annotations")
    assert "::warning file=pipelines/train.yml,line=7,title=ref-stale::" in out
    code, report = cli.json("drift")
    validate("drift-report.schema.json", report)
    [env] = [e for e in report["environments"] if e["name"] == "train"]
    assert {(c["line"], c["version"]) for c in env["consumers"]} >= {(7, "1"), (11, None)}


def test_severity_is_set_in_the_policy(repo: GitRepo, cli: Cli) -> None:
    released(repo, cli, "busybox:1.36")
    released(repo, cli, "busybox:1.37")
    repo.write("pipelines/p.yml", "jobs:\n  a:\n    environment: azureml:train:1\n")
    repo.write(
        "reconciler.toml",
        '[policy]\nref_stale = "error"\n[policy.environments."other-*"]\nref_stale = "off"\n',
    )
    repo.commit("consumer")
    code, plan = cli.json("plan")
    assert code == 1  # an error, as policy says
    assert findings(plan) == [("ref-stale", "pipelines/p.yml", 3, "error")]
    repo.write("reconciler.toml", '[policy]\nref_stale = "off"\n')
    repo.commit("off")
    code, plan = cli.json("plan")
    assert code == 0 and findings(plan) == []


def test_unknown_consumer_settings_are_errors(repo: GitRepo, cli: Cli) -> None:
    repo.write("reconciler.toml", '[consumers]\ninclude = ["**/*.yml"]\nexlude = ["x/*"]\n')
    code, out, err = cli("plan")
    assert code == 1
    assert "reconciler.toml" in err and "consumers.exlude" in err
    repo.write("reconciler.toml", '[policy]\nref_stale = "loud"\n')
    code, out, err = cli("plan")
    assert code == 1 and "policy.ref_stale" in err


def test_include_and_exclude_choose_the_files(repo: GitRepo, cli: Cli) -> None:
    released(repo, cli, "busybox:1.36")
    repo.write("jobs/a.yml", "environment: azureml:train:1\n")
    repo.write("legacy/b.yml", "environment: azureml:train:1\n")
    repo.write("docs/c.md", "environment: azureml:train:1\n")
    repo.write("reconciler.toml", '[consumers]\nexclude = ["legacy/*"]\n')
    repo.commit("consumers")
    code, document = cli.json("refs", "train")
    paths = [r["path"] for r in document["environments"][0]["versions"][0]["references"]]
    assert paths == ["jobs/a.yml"]
    repo.write("reconciler.toml", '[consumers]\ninclude = ["legacy/*.yml"]\n')
    repo.commit("only legacy")
    code, document = cli.json("refs", "train")
    paths = [r["path"] for r in document["environments"][0]["versions"][0]["references"]]
    assert paths == ["legacy/b.yml"]


def test_removal_is_refused_while_referenced_and_allowed_once_moved(
    repo: GitRepo, cli: Cli
) -> None:
    released(repo, cli, "busybox:1.36")
    repo.write("environments/other.yml", image_env("other", "busybox:1.36"))
    repo.write("jobs/a.yml", "jobs:\n  x:\n    environment: azureml:train:1\n")
    repo.write("nb/run.py", 'run(environment="azureml:train@latest")\n')
    repo.commit("consumers")
    assert cli("apply")[0] == 0
    repo.remove("environments/train.yml")
    repo.commit("remove train")
    code, plan = cli.json("plan")
    assert code == 1
    [refused] = [d for d in plan["diagnostics"] if d["rule"] == "archive-referenced"]
    assert "jobs/a.yml:3" in refused["message"] and "nb/run.py:1" in refused["message"]
    code, out, err = cli("apply")
    assert code == 1  # nothing applied
    code, listed = cli.json("list")
    assert [c["name"] for c in listed] == ["other", "train"]  # train still active
    # allowed with the flag (plan only: the consumers are still there)
    code, plan = cli.json("plan", "--allow-referenced-archive")
    assert code == 2
    assert [(c["action"], c["name"]) for c in plan["changes"]] == [("archive", "train")]
    # the consumers move to `other`: the archive goes through
    repo.write("jobs/a.yml", "jobs:\n  x:\n    environment: azureml:other:1\n")
    repo.remove("nb/run.py")
    repo.commit("move consumers")
    code, out, err = cli("apply")
    assert code == 0, out + err
    code, listed = cli.json("list")
    assert [c["name"] for c in listed] == ["other"]


def test_retention_spares_a_pinned_version(repo: GitRepo, cli: Cli) -> None:
    for tag in ("1.30", "1.31", "1.32"):
        released(repo, cli, f"busybox:{tag}")
    repo.write("reconciler.toml", "[policy]\nkeep_versions = 1\n")
    repo.write("jobs/old.yml", "environment: azureml:train:1\n")
    repo.commit("retention, and a consumer of version 1")
    code, plan = cli.json("plan")
    assert code == 2
    archived = [(c["action"], c["version"]) for c in plan["changes"]]
    assert archived == [("archive", "2")]  # 1 is pinned, 3 is the newest


def test_refs_at_an_older_commit(repo: GitRepo, cli: Cli) -> None:
    released(repo, cli, "busybox:1.36")
    repo.write("jobs/a.yml", "environment: azureml:train:1\n")
    old = repo.commit("consumer of 1")
    repo.write("jobs/a.yml", "environment: azureml:train@latest\n")
    repo.commit("floating")
    code, now = cli.json("refs", "train")
    assert now["environments"][0]["versions"] == []
    assert len(now["environments"][0]["floating"]) == 1
    code, then = cli.json("refs", "train", "--ref", old)
    assert then["source"]["commit"] == old
    assert [v["version"] for v in then["environments"][0]["versions"]] == ["1"]


ODD = """\
# comments stay, quoting stays, key order stays
jobs:
    train:   # four-space indentation
        environment:   "azureml:train:1"     # double quoted, padded
        compute: azureml:cpu-cluster
    score: { environment: 'azureml:train:1' , x: [1,2] }   # flow style, single quoted
    eval:
      - environment: azureml://registries/shared/environments/train/versions/1 # plain
      - environment: azureml:train@latest
      - environment: azureml:train:1\r
"""


def bumped_repo(repo: GitRepo, cli: Cli) -> None:
    released(repo, cli, "busybox:1.36")
    repo.write("pipelines/odd.yml", ODD)
    repo.write("src/job.py", 'job = command(environment="azureml:train:1")\n')
    repo.commit("consumers")
    released(repo, cli, "busybox:1.37")  # train:2 is latest now


def test_bump_changes_only_the_pinned_values(repo: GitRepo, cli: Cli) -> None:
    bumped_repo(repo, cli)
    code, out, err = cli("bump")
    assert code == 2, out + err
    assert "moved 4 pin(s) in 1 file(s)" in out
    assert "skipped src/job.py:1: code" in out
    diff = repo.git("diff", "--unified=0", "--no-color")
    changed = [
        line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    removed = [line[1:] for line in changed if line[0] == "-"]
    added = [line[1:] for line in changed if line[0] == "+"]
    assert removed == [
        '        environment:   "azureml:train:1"     # double quoted, padded',
        "    score: { environment: 'azureml:train:1' , x: [1,2] }   # flow style, single quoted",
        "      - environment: azureml://registries/shared/environments/train/versions/1 # plain",
        "      - environment: azureml:train:1",  # (git's output read as text drops the CR)
    ]
    assert (repo.root / "pipelines/odd.yml").read_bytes().endswith(b"azureml:train:2\r\n")
    assert added == [
        line.replace(":1", ":2").replace("versions/1", "versions/2") for line in removed
    ]
    # the word diff says the same: only the version numbers moved
    words = repo.git("diff", "--word-diff=porcelain", "--word-diff-regex=[^:/'\" ]+", "--unified=0")
    assert (
        sorted(
            line
            for line in words.splitlines()
            if line[:1] in "+-" and line[:3] not in ("+++", "---")
        )
        == ["+2"] * 4 + ["-1"] * 4
    )
    assert cli("bump")[0] == 0  # nothing left to bump
    code, out, err = cli("bump", "--include-code")
    assert code == 2 and "moved 1 pin(s)" in out
    assert (
        repo.root / "src/job.py"
    ).read_text() == 'job = command(environment="azureml:train:2")\n'
    code, plan = cli.json("plan")
    assert [d for d in plan["diagnostics"] if d["rule"] == "ref-stale"] == []


def test_bump_dry_run_prints_a_diff_and_touches_nothing(repo: GitRepo, cli: Cli) -> None:
    bumped_repo(repo, cli)
    before = (repo.root / "pipelines/odd.yml").read_bytes()
    code, out, err = cli("bump", "--dry-run")
    assert code == 2
    assert "--- a/pipelines/odd.yml" in out and "+++ b/pipelines/odd.yml" in out
    assert '+        environment:   "azureml:train:2"     # double quoted, padded' in out
    assert "would move 4 pin(s)" in out
    assert (repo.root / "pipelines/odd.yml").read_bytes() == before
    assert repo.git("status", "--porcelain") == ""


def test_bump_to_a_version_and_to_the_version_the_plan_creates(repo: GitRepo, cli: Cli) -> None:
    bumped_repo(repo, cli)
    code, out, err = cli("bump", "train", "--to", "9")
    assert code == 1 and "train:9 is not registered" in err
    code, document = cli.json("bump", "train", "--to", "2", "--dry-run")
    assert code == 2 and {b["to"] for b in document["bumped"]} == {"2"}
    # git changes again: the plan creates train:3, and bump pins what the plan creates
    repo.write("environments/train.yml", image_env("train", "busybox:1.35"))
    repo.commit("train 1.35")
    code, document = cli.json("bump", "train")
    assert code == 2
    assert {(b["from"], b["to"]) for b in document["bumped"]} == {("1", "3")}
    assert "azureml:train:3" in (repo.root / "pipelines/odd.yml").read_text()
    code, out, err = cli("bump", "nothing-like-it")
    assert code == 1 and "no environment 'nothing-like-it'" in err


def test_hostile_consumer_files_are_reported_and_block_nothing(
    repo: GitRepo, cli: Cli, tmp_path: Any
) -> None:
    import os

    outside = tmp_path / "outside.yml"
    outside.write_text("environment: azureml:secret-env:1\n")
    repo.write("environments/app.yml", image_env("app"))
    repo.write("jobs/broken.yml", "jobs:\n  a: [\n    environment: azureml:app:1\n")
    repo.write("jobs/huge.yml", "environment: azureml:app:1\n" + "# padding\n" * 200_000)
    (repo.root / "jobs/binary.yml").write_bytes(b"\x00\x01azureml:app:1\x00" * 100)
    (repo.root / "jobs/latin1.yml").write_bytes(b"environment: azureml:app:1 # caf\xe9\n")
    os.symlink(outside, repo.root / "jobs/absolute.yml")
    os.symlink("../../outside.yml", repo.root / "jobs/relative.yml")
    os.symlink("broken.yml", repo.root / "jobs/inside.yml")  # inside: scanned as broken.yml
    repo.write("jobs/deep.yml", "environment: azureml:app:1\n" + "x: " + "[" * 5000 + "]" * 5000)
    bomb = "environment: azureml:app:1\na: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefgh":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]\n"
    repo.write("jobs/bomb.yml", bomb)
    repo.commit("hostile consumers")
    for extra in ((), ("--ref", "HEAD")):
        code, plan = cli.json("plan", *extra)
        assert code == 2, plan  # the unrelated create is planned; no error
        assert [(c["action"], c["name"]) for c in plan["changes"]] == [("create", "app")]
        unreadable = {
            d["path"]: d["message"] for d in plan["diagnostics"] if d["rule"] == "ref-unreadable"
        }
        assert set(unreadable) == {
            "jobs/broken.yml",
            "jobs/huge.yml",
            "jobs/binary.yml",
            "jobs/latin1.yml",
            "jobs/absolute.yml",
            "jobs/relative.yml",
            "jobs/deep.yml",
            "jobs/bomb.yml",
        }
        assert "invalid YAML" in unreadable["jobs/broken.yml"]
        assert "larger than 1 MB" in unreadable["jobs/huge.yml"]
        assert "binary" in unreadable["jobs/binary.yml"]
        assert "not valid UTF-8" in unreadable["jobs/latin1.yml"]
        assert "outside the repository" in unreadable["jobs/absolute.yml"]
        assert "outside the repository" in unreadable["jobs/relative.yml"]
        assert "nest" in unreadable["jobs/deep.yml"]
        assert "expands to more than" in unreadable["jobs/bomb.yml"]
        assert all(
            d["severity"] == "warning" for d in plan["diagnostics"] if d["rule"] == "ref-unreadable"
        )
    code, document = cli.json("refs")
    names = {r["name"] for r in document["unknown"]} | {e["name"] for e in document["environments"]}
    assert "secret-env" not in names  # nothing read through a symlink out of the repository
    # the pins of files refused as YAML are still seen (by their text): no archive misses them
    [app] = [e for e in document["environments"] if e["name"] == "app"]
    found = [r["path"] for v in app["versions"] for r in v["references"]]
    assert found == ["jobs/bomb.yml", "jobs/broken.yml", "jobs/deep.yml"]
    code, out, err = cli("apply")
    assert code == 0, out + err


def test_pull_request_comment_lists_the_consumers(repo: GitRepo, cli: Cli) -> None:
    released(repo, cli, "busybox:1.36")
    repo.write("pipelines/train.yml", PIPELINE)
    repo.commit("consumers")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("environments/train.yml", image_env("train", "busybox:1.37"))
    repo.commit("train 1.37")
    code, document = cli.json("plan", "--base", "main", "--head", "feature")
    assert code == 2
    validate("plan.schema.json", document)
    [entry] = document["pull_request"]["consumers"]
    assert (entry["name"], entry["new_version"], entry["previous_version"]) == ("train", "2", "1")
    assert sorted(r["line"] for r in entry["stale"]) == [7, 12]
    assert sorted(r["line"] for r in entry["floating"]) == [11, 18]
    code, markdown, err = cli("plan", "--base", "main", "--head", "feature", "--markdown", "-")
    assert "### Consumers of the environments this pull request changes" in markdown
    assert "2 pin(s) go stale on merge" in markdown
    assert "<code>pipelines/train.yml:7</code> <code>azureml:train:1</code>" in markdown
    assert "2 @latest consumer(s) pick up <code>train:2</code>" in markdown
    code, out, err = cli("drift", "--report-dir", str(repo.root / "report"))
    drift_markdown = (repo.root / "report" / "drift-report.md").read_text()
    assert "### References to environments" in drift_markdown
    assert "<code>pipelines/train.yml:7</code>" in drift_markdown


def test_evidence_lists_each_versions_consumers(repo: GitRepo, cli: Cli, tmp_path: Any) -> None:
    released(repo, cli, "busybox:1.36")
    released(repo, cli, "busybox:1.37")
    repo.write("jobs/a.yml", "environment: azureml:train:1\n")
    repo.write("jobs/b.yml", "environment: azureml:train@latest\n")
    repo.commit("consumers")
    code, document = cli.json("evidence", "--out", str(tmp_path / "evidence"))
    assert code == 0
    validate("evidence.schema.json", document)
    [train] = document["environments"]
    assert {v["version"]: v["consumers"] for v in train["versions"]} == {
        "1": ["jobs/a.yml:1"],
        "2": [],
    }
    assert train["latest_consumers"] == ["jobs/b.yml:1"]
    markdown = (tmp_path / "evidence" / "evidence.md").read_text()
    assert "Following @latest: 1 consumer(s)." in markdown


def test_a_cached_plan_notices_a_new_or_edited_consumer(repo: GitRepo, cli: Cli) -> None:
    import os
    import time

    released(repo, cli, "busybox:1.36")
    released(repo, cli, "busybox:1.37")
    repo.write("jobs/a.yml", "environment: azureml:train:2\n")
    repo.commit("consumer")
    repo.age()
    code, plan = cli.json("plan")
    assert code == 0 and findings(plan) == []
    assert sorted((repo.root / ".reconciler" / "cache").glob("plan-*.json"))  # cached

    def quietly(path: str, content: str) -> None:
        """Write a file and put its and its directory's mtimes back in the past (as if
        written a while ago): only the directory's ctime tells that it changed."""
        full = repo.write(path, content)
        old = time.time() - 60
        os.utime(full, (old, old))
        os.utime(full.parent, (old, old))

    # a new, untracked consumer in a directory that has nothing to do with environments
    quietly("jobs/b.yml", "environment: azureml:train:1\n")
    code, plan = cli.json("plan")
    assert findings(plan) == [("ref-stale", "jobs/b.yml", 1, "warning")]
    quietly("jobs/a.yml", "environment: azureml:train@latest\n")  # a tracked one, edited
    code, plan = cli.json("plan")
    assert ("ref-floating", "jobs/a.yml", 1, "info") in findings(plan)


def test_environment_variables_are_not_an_environment(repo: GitRepo, cli: Cli) -> None:
    released(repo, cli, "busybox:1.36")
    repo.write(
        "jobs/a.yml",
        "jobs:\n  a:\n    environment_variables:\n      MODEL: azureml:model:3\n"
        "    default_environment: azureml:train:1\n",
    )
    repo.commit("consumer")
    code, document = cli.json("refs")
    assert document["inline"] == [] and document["unknown"] == []
    [train] = document["environments"]
    assert [r["key_path"] for r in train["versions"][0]["references"]] == [
        "jobs.a.default_environment"
    ]
