"""The GitHub workflows: valid against the workflow schema, and the exact commands they run,
end to end, on a real git repository with a main branch and a pull request branch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import GIT_ENV, GitRepo, image_env

PROJECT = Path(__file__).resolve().parent.parent
WORKFLOWS = PROJECT / ".github" / "workflows"
BIN = Path(sys.executable).parent


def workflow(name: str) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return loaded


def runs(name: str) -> list[str]:
    return [
        step["run"]
        for job in workflow(name)["jobs"].values()
        for step in job["steps"]
        if "run" in step
    ]


def check_schema(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_workflows_validate_against_the_github_workflow_schema(tmp_path: Path) -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == [
        "bump.yml",
        "ci.yml",
        "docs.yml",
        "plan.yml",
        "reconcile.yml",
        "release.yml",
    ]
    done = check_schema(*files)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text((WORKFLOWS / "plan.yml").read_text().replace("runs-on:", "run-on:"))
    assert check_schema(broken).returncode != 0  # the check can fail


def test_workflows_wire_the_documented_triggers_and_commands() -> None:
    # PyYAML reads the key `on` as True (YAML 1.1)
    ci, plan, reconcile = (workflow(n) for n in ("ci.yml", "plan.yml", "reconcile.yml"))
    assert any("scripts/test" in r for r in runs("ci.yml"))
    assert plan[True]["pull_request"]["paths"][0] == "environments/**"
    assert plan["permissions"]["pull-requests"] == "write"
    assert runs("plan.yml")[-1] == "scripts/ci/pr-plan"
    script = "\n".join(s.get("with", {}).get("script", "") for s in plan["jobs"]["plan"]["steps"])
    assert "<!-- reconciler:plan -->" in script and "updateComment" in script
    assert reconcile[True]["push"]["branches"] == ["main"]
    assert reconcile[True]["schedule"][0]["cron"]
    assert reconcile["concurrency"]["cancel-in-progress"] is False
    assert runs("reconcile.yml")[-1] == "scripts/ci/reconcile"
    for name in ("plan.yml", "reconcile.yml"):
        uploads = [
            s
            for s in workflow(name)["jobs"][next(iter(workflow(name)["jobs"]))]["steps"]
            if str(s.get("uses", "")).startswith("actions/upload-artifact")
        ]
        assert uploads and uploads[0]["with"]["path"] == "drift-report/"


def test_docs_workflow_builds_strictly_and_publishes_to_pages(tmp_path: Path) -> None:
    docs = workflow("docs.yml")
    assert docs[True]["push"]["branches"] == ["main"]
    build, deploy = docs["jobs"]["build"], docs["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert [s["uses"].split("@")[0] for s in deploy["steps"]] == ["actions/deploy-pages"]
    [upload] = [
        s for s in build["steps"] if str(s.get("uses", "")).startswith("actions/upload-pages")
    ]
    [command] = [r for r in runs("docs.yml") if r.startswith("mkdocs")]
    assert "--strict" in command
    # the exact build command, on a copy of the sources, makes the site the upload takes
    for name in ("mkdocs.yml", "docs", "docsgen", ".github"):
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    environ = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        ["bash", "-e", "-c", command],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    site = tmp_path / upload["with"]["path"]
    assert (site / "index.html").is_file()
    assert (site / "reference" / "commands" / "plan" / "index.html").is_file()
    assert (site / "search" / "search_index.json").is_file()


def run_step(command: str, repo: GitRepo, tmp_path: Path, **env: str) -> tuple[int, str, Path]:
    """Run a workflow's `run:` command as the runner would: bash, in the checkout, with the
    installed `reconciler` on PATH and a step summary file."""
    summary = tmp_path / f"summary-{len(list(tmp_path.glob('summary-*')))}.md"
    summary.touch()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    environ.update(GIT_ENV)
    environ.update(env)
    environ["PATH"] = f"{PROJECT / 'scripts' / 'ci'}:{BIN}:{environ.get('PATH', '')}"
    environ["GITHUB_STEP_SUMMARY"] = str(summary)
    done = subprocess.run(
        ["bash", "-e", "-c", command.replace("scripts/ci/", str(PROJECT / "scripts/ci") + "/")],
        cwd=repo.root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr, summary


def test_pull_request_then_merge_then_nightly_end_to_end(repo: GitRepo, tmp_path: Path) -> None:
    assert shutil.which("git")
    repo.write(".gitignore", "drift-report/\n")
    repo.write("environments/a.yml", image_env("a", "busybox:1.36"))
    repo.commit("seed")
    [reconcile_step] = [r for r in runs("reconcile.yml") if "reconcile" in r]
    code, output, summary = run_step(reconcile_step, repo, tmp_path)
    assert code == 0, output
    assert "Environment drift report: in sync" in summary.read_text()

    base = repo.git("rev-parse", "main")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("environments/a.yml", image_env("a", "busybox:1.37"))
    repo.write("environments/b.yml", image_env("b", "busybox:latest"))
    head = repo.commit("feature")
    [plan_step] = [r for r in runs("plan.yml") if "pr-plan" in r]
    code, output, summary = run_step(plan_step, repo, tmp_path, BASE_SHA=base, HEAD_SHA=head)
    assert code == 0, output  # changes pending: the check passes
    comment = (repo.root / "drift-report" / "plan.md").read_text()
    assert comment.startswith("<!-- reconciler:plan -->")
    assert "2 change(s) from this pull request" in comment
    assert summary.read_text() == comment
    plan = json.loads((repo.root / "drift-report" / "plan.json").read_text())
    assert {c["name"]: c["introduced"] for c in plan["changes"]} == {"a": True, "b": True}
    assert (repo.root / "drift-report" / "drift-report.html").exists()
    assert "::warning file=environments/b.yml,line=2" in output  # :latest, annotated

    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--ff-only", "feature")
    code, output, summary = run_step(reconcile_step, repo, tmp_path)
    assert code == 0, output
    assert "Environment drift report: in sync" in summary.read_text()
    code, output, summary = run_step(reconcile_step, repo, tmp_path)  # nightly, nothing new
    assert code == 0 and "Apply complete" not in output and "Nothing to do" in output


def test_pull_request_with_a_broken_file_fails_the_check(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("environments/a.yml", image_env("a"))
    base = repo.commit("seed")
    repo.write("environments/a.yml", "name: a\nimage: [\n")
    head = repo.commit("broken")
    code, output, summary = run_step(
        "scripts/ci/pr-plan", repo, tmp_path, BASE_SHA=base, HEAD_SHA=head
    )
    assert code == 1
    assert "::error file=environments/a.yml" in output
    assert "errors in the environment files" in summary.read_text()


@pytest.mark.parametrize("missing", ["BASE_SHA", "HEAD_SHA"])
def test_pr_plan_needs_both_commits(repo: GitRepo, tmp_path: Path, missing: str) -> None:
    env = {"BASE_SHA": "x", "HEAD_SHA": "y"}
    del env[missing]
    code, output, _ = run_step("scripts/ci/pr-plan", repo, tmp_path, **env)
    assert code != 0 and missing in output


def test_the_checked_in_reconcile_workflow_matches_the_settings(cli: Any, repo: GitRepo) -> None:
    from reconciler.cli import main

    # This repository has no [targets]: the generator gives the checked-in workflow.
    assert main(["workflows", "--repo", str(PROJECT), "--check"]) == 0
    repo.write("environments/a.yml", image_env("a"))
    repo.commit("seed")
    code, out, _ = cli("workflows", "--check")
    assert code == 2 and "differs" in out  # nothing checked in there yet
    assert cli("workflows")[0] == 0
    written = repo.root / ".github" / "workflows" / "reconcile.yml"
    assert written.read_text() == (WORKFLOWS / "reconcile.yml").read_text()


def test_targets_generate_one_job_per_target_in_gate_order(
    cli: Any, repo: GitRepo, tmp_path: Path
) -> None:
    repo.write(
        "reconciler.toml",
        '[targets.prod]\nregistry = "azureml://registries/contoso"\nafter = ["test"]\n'
        '[targets.dev]\nregistry = "sqlite:///dev.db"\n'
        '[targets.test]\nregistry = "sqlite:///test.db"\nafter = ["dev"]\n',
    )
    repo.commit("targets")
    assert cli("workflows")[0] == 0
    written = repo.root / ".github" / "workflows" / "reconcile.yml"
    done = check_schema(written)
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = yaml.safe_load(written.read_text())["jobs"]
    assert list(jobs) == ["reconcile-dev", "reconcile-test", "reconcile-prod"]
    assert "needs" not in jobs["reconcile-dev"]
    assert jobs["reconcile-test"]["needs"] == ["reconcile-dev"]
    assert jobs["reconcile-prod"]["needs"] == ["reconcile-test"]
    for name in ("dev", "test", "prod"):
        job = jobs[f"reconcile-{name}"]
        assert job["environment"] == name  # GitHub's protection rules hold the job
        assert job["env"]["RECONCILER_TARGET"] == name
        assert job["steps"][-2]["run"] == "scripts/ci/reconcile"
    assert cli("workflows", "--check")[0] == 0
    # the job's command, as the runner runs it, acts on its target only
    (repo.root / "reconciler.toml").write_text(
        '[targets.dev]\nregistry = "sqlite:///dev.db"\n'
        '[targets.prod]\nregistry = "sqlite:///prod.db"\nafter = ["dev"]\n'
    )
    repo.write("environments/a.yml", image_env("a"))
    repo.commit("env")
    code, output, summary = run_step(
        "scripts/ci/reconcile", repo, tmp_path, RECONCILER_TARGET="dev"
    )
    assert code == 0, output
    assert "== target dev" in output and "== target prod" not in output
    assert (repo.root / "dev.db").exists() and not (repo.root / "prod.db").exists()
    assert "Promotion status" in summary.read_text()


@pytest.mark.parametrize("name", ["plan.yml", "reconcile.yml"])
def test_workflows_reach_azure_with_openid_connect(name: str) -> None:
    """Signed in by azure/login with a federated token (no stored secret), the azure extra
    installed, before the reconciler runs; skipped for a sqlite registry."""
    loaded = workflow(name)
    assert loaded["permissions"]["id-token"] == "write"
    [job] = loaded["jobs"].values()
    steps = job["steps"]
    names = [str(step.get("uses", "")).split("@")[0] or step.get("run", "") for step in steps]
    login = names.index("azure/login")
    install = next(i for i, n in enumerate(names) if "pip install" in n)
    reconcile = next(i for i, n in enumerate(names) if n.startswith("scripts/ci/"))
    assert install < login < reconcile
    assert ".[azure]" in names[install]
    step = steps[login]
    assert step["if"] == "startsWith(env.RECONCILER_REGISTRY, 'azureml://')"
    assert set(step["with"]) == {"client-id", "tenant-id", "subscription-id"}
    assert not any("secrets." in str(value) for value in step["with"].values())
    cache = steps[names.index("actions/cache")]
    assert cache["with"]["path"] == ".reconciler/azureml"


def test_bump_workflow_runs_after_a_reconcile_of_main_and_updates_one_pull_request() -> None:
    bump = workflow("bump.yml")
    trigger = bump[True]["workflow_run"]
    assert trigger["workflows"] == [workflow("reconcile.yml")["name"]]
    assert trigger["types"] == ["completed"] and trigger["branches"] == ["main"]
    assert "conclusion == 'success'" in bump["jobs"]["bump"]["if"]
    assert bump["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert bump["concurrency"]["cancel-in-progress"] is False
    steps = runs("bump.yml")
    assert "scripts/ci/bump" in steps
    [pr_step] = [s for s in steps if "gh pr" in s]
    # GitHub's own CLI: edit the open pull request of the branch, or create it
    assert "gh pr list --head" in pr_step and "gh pr edit" in pr_step
    assert "gh pr create" in pr_step and "--body-file drift-report/bump.md" in pr_step


def test_bump_after_reconcile_pushes_only_the_pin_changes(repo: GitRepo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo.git("remote", "add", "origin", str(remote))
    repo.write(".gitignore", "drift-report/\n")
    repo.write("environments/a.yml", image_env("a", "busybox:1.36"))
    repo.write("jobs/train.yml", "jobs:\n  t:\n    environment: azureml:a:1  # pinned\n")
    repo.commit("seed")
    repo.git("push", "-q", "origin", "main")
    [reconcile_step] = [r for r in runs("reconcile.yml") if "reconcile" in r]
    assert run_step(reconcile_step, repo, tmp_path)[0] == 0
    [bump_step] = [r for r in runs("bump.yml") if "scripts/ci/bump" in r]
    output_file = tmp_path / "github-output"
    code, output, _ = run_step(bump_step, repo, tmp_path, GITHUB_OUTPUT=str(output_file))
    assert code == 0, output
    assert output_file.read_text() == "changed=false\n"  # a:1 is latest: nothing to bump

    repo.write("environments/a.yml", image_env("a", "busybox:1.37"))
    repo.commit("a 1.37")
    repo.git("push", "-q", "origin", "main")
    assert run_step(reconcile_step, repo, tmp_path)[0] == 0  # registers a:2
    code, output, _ = run_step(bump_step, repo, tmp_path, GITHUB_OUTPUT=str(output_file))
    assert code == 0, output
    assert output_file.read_text().splitlines()[-1] == "changed=true"
    diff = repo.git("diff", "main", "origin/reconciler/bump-pins", "--unified=0")
    changed = [line for line in diff.splitlines() if line[:1] in "+-"]
    assert changed == [
        "--- a/jobs/train.yml",
        "+++ b/jobs/train.yml",
        "-    environment: azureml:a:1  # pinned",
        "+    environment: azureml:a:2  # pinned",
    ]
    body = (repo.root / "drift-report" / "bump.md").read_text()
    assert body.startswith("<!-- reconciler:bump -->") and "+    environment: azureml:a:2" in body
