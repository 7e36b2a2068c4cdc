"""The release: the version from the git tag (or a fallback), and the release workflow's
steps run locally: build the sdist and the wheel, install the wheel into a fresh virtual
environment, then use the installed command outside any source tree."""

from __future__ import annotations

import subprocess
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import GitRepo
from tests.release_support import BIN, PROJECT, copy_of_the_project, needs_source, run
from tests.test_workflows import check_schema

RELEASE = PROJECT / ".github" / "workflows" / "release.yml"
# The release steps run here; the others are the full suite (this test is part of it) in a
# second environment, and publishing.
LOCAL_STEPS = ["build", "tool", "smoke"]


def release_steps() -> list[dict[str, Any]]:
    loaded: dict[Any, Any] = yaml.safe_load(RELEASE.read_text())
    steps: list[dict[str, Any]] = loaded["jobs"]["release"]["steps"]
    return steps


def test_release_workflow_validates_and_runs_on_version_tags(tmp_path: Path) -> None:
    done = check_schema(RELEASE)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "release.yml"
    broken.write_text(RELEASE.read_text().replace("runs-on:", "run-on:"))
    assert check_schema(broken).returncode != 0
    loaded = yaml.safe_load(RELEASE.read_text())
    assert loaded[True] == {"push": {"tags": ["v*"]}}  # PyYAML reads `on` as True
    job = loaded["jobs"]["release"]
    assert job["permissions"] == {"contents": "write"}
    checkout = job["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0  # the tags, for the version
    commands = {s["id"]: s["run"] for s in job["steps"] if "run" in s}
    assert list(commands) == [*LOCAL_STEPS, "suite-environment", "suite", "publish"]
    assert commands["tool"].endswith(" azure")
    assert commands["suite-environment"].endswith(" all")
    assert "scripts/release/test-installed" in commands["suite"]
    assert commands["publish"].startswith("gh release create")
    assert "dist/*.tar.gz dist/*.whl" in commands["publish"]


def test_dependabot_updates_the_lock_and_the_actions(tmp_path: Path) -> None:
    config = PROJECT / ".github" / "dependabot.yml"
    schema = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.dependabot"]
    done = run([*schema, str(config)], PROJECT)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "dependabot.yml"
    broken.write_text(config.read_text().replace("interval:", "intervals:"))
    assert run([*schema, str(broken)], PROJECT).returncode != 0  # the check can fail
    updates = yaml.safe_load(config.read_text())["updates"]
    assert {(u["package-ecosystem"], u["directory"]) for u in updates} == {
        ("uv", "/"),
        ("github-actions", "/"),
    }


def test_every_action_is_pinned_to_a_commit_with_its_release_in_a_comment() -> None:
    lines = [
        line.strip()
        for workflow in sorted((PROJECT / ".github" / "workflows").glob("*.yml"))
        for line in workflow.read_text().splitlines()
        if line.strip().removeprefix("- ").startswith("uses:")
    ]
    assert len(lines) >= 9
    for line in lines:
        action = line.removeprefix("- ").removeprefix("uses:").strip()
        reference, _, comment = action.partition(" # ")
        _, _, sha = reference.partition("@")
        assert len(sha) == 40 and all(c in "0123456789abcdef" for c in sha), line
        assert comment.startswith("v") and comment.count(".") == 2, line


def test_build_requirements_are_locked() -> None:
    pyproject = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    build_group = pyproject["dependency-groups"]["build"]
    assert set(pyproject["build-system"]["requires"]) <= set(build_group)
    assert pyproject["project"]["dynamic"] == ["version"]


def scm_version(root: Path) -> str:
    done = run([str(BIN / "python"), "-m", "setuptools_scm"], root)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_version_from_the_tag_or_a_sensible_fallback(tmp_path: Path) -> None:
    pyproject = (PROJECT / "pyproject.toml").read_text()
    (tmp_path / "clone").mkdir()
    repo = GitRepo(tmp_path / "clone")
    repo.write("pyproject.toml", pyproject)
    repo.commit("one")
    assert scm_version(repo.root).startswith("0.0.1.dev1+g")  # a clone without tags
    repo.git("tag", "v1.4.0")
    assert scm_version(repo.root) == "1.4.0"
    repo.commit("after the tag")
    assert scm_version(repo.root).startswith("1.4.1.dev1+g")
    repo.git("tag", "v2.0.0-rc.1")
    assert scm_version(repo.root) == "2.0.0rc1"
    bare = tmp_path / "no-git"  # an unpacked archive, without git metadata
    bare.mkdir()
    (bare / "pyproject.toml").write_text(pyproject)
    assert scm_version(bare) == "0.0.0"


@needs_source
def test_release_steps_build_install_and_run_outside_the_source_tree(tmp_path: Path) -> None:
    clone = copy_of_the_project(tmp_path / "clone")
    clone.git("tag", "v9.8.7")
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    env = {
        "GITHUB_REF_NAME": "v9.8.7",
        "RUNNER_TEMP": str(runner_temp),
        "PYTHON": str(BIN / "python"),  # the locked build tools, as scripts/bootstrap gives
        "UV": str(BIN / "uv"),
    }
    outputs = []
    steps = [step for step in release_steps() if step.get("id") in LOCAL_STEPS]
    assert [step["id"] for step in steps] == LOCAL_STEPS
    for step in steps:
        done = run(["bash", "-e", "-c", step["run"]], clone.root, **env)
        assert done.returncode == 0, f"{step['name']}:\n{done.stdout}{done.stderr}"
        outputs.append(done.stdout)
    build_out, install_out, smoke_out = outputs

    dist = clone.root / "dist"
    assert sorted(p.name for p in dist.iterdir()) == [
        "reconciler-9.8.7-py3-none-any.whl",
        "reconciler-9.8.7.tar.gz",
    ]
    with zipfile.ZipFile(dist / "reconciler-9.8.7-py3-none-any.whl") as wheel:
        names = set(wheel.namelist())
        assert "__version__ = version = '9.8.7'" in wheel.read("reconciler/_version.py").decode()
        entry_points = wheel.read("reconciler-9.8.7.dist-info/entry_points.txt").decode()
    assert "reconciler = reconciler.cli:program" in entry_points
    assert {"reconciler/py.typed", "reconciler/cli/__init__.py"} <= names
    assert any(n.startswith("reconciler/schemas/") and n.endswith(".json") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/", "scripts/")) for n in names)

    venv = runner_temp / "tool"
    assert "installed reconciler-9.8.7-py3-none-any.whl" in install_out
    [site_packages] = (venv / "lib").glob("python3*/site-packages")
    assert (site_packages / "azure" / "ai" / "ml").is_dir()  # the azure extra
    assert not (venv / "bin" / "pytest").exists()  # a tool's environment: no test tools
    assert "reconciler 9.8.7\n" in smoke_out
    assert "+ create" in smoke_out and "hello:1" in smoke_out and "smoke: ok" in smoke_out
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    version = run([str(venv / "bin" / "reconciler"), "--version"], outside)
    assert version.stdout.strip() == "reconciler 9.8.7"
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import reconciler; print(reconciler.__file__)"],
        cwd=outside,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert site.startswith(str(venv)) and "site-packages" in site

    # The smoke check can fail: another tag than the wheel's version.
    wrong = run(["scripts/release/smoke", str(venv), "v1.0.0"], clone.root)
    assert wrong.returncode == 1 and "expected reconciler 1.0.0" in wrong.stderr


@needs_source
def test_uv_tool_install_of_the_wheel_as_documented(tmp_path: Path) -> None:
    """docs/install.md's `uv tool install` with the lock's versions as constraints."""
    clone = copy_of_the_project(tmp_path / "clone")
    clone.git("tag", "v3.1.4")
    built = run(["scripts/release/build", "dist"], clone.root, PYTHON=str(BIN / "python"))
    assert built.returncode == 0, built.stdout + built.stderr
    constraints = tmp_path / "locked.txt"
    export = ["export", "--frozen", "--quiet", "--no-emit-project", "--extra", "azure"]
    exported = run([str(BIN / "uv"), *export, "--output-file", str(constraints)], clone.root)
    assert exported.returncode == 0, exported.stderr
    tools, shims = tmp_path / "tools", tmp_path / "bin"
    wheel = clone.root / "dist" / "reconciler-3.1.4-py3-none-any.whl"
    install = ["tool", "install", "--constraints", str(constraints)]
    installed = run(
        [str(BIN / "uv"), *install, f"reconciler[azure] @ {wheel}"],
        tmp_path,
        UV_TOOL_DIR=str(tools),
        UV_TOOL_BIN_DIR=str(shims),
    )
    assert installed.returncode == 0, installed.stderr
    assert (shims / "reconciler").exists()
    smoke = run(["scripts/release/smoke", str(tools / "reconciler"), "v3.1.4"], clone.root)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "reconciler 3.1.4" in smoke.stdout and "smoke: ok" in smoke.stdout
