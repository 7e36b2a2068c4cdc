"""`scripts/reconcile`, the README's first command, in a project of its own: plan, apply,
build (with a real Docker Engine and OCI registry, or a note saying how to get them),
the drift report, and a summary naming its three files."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GitRepo
from tests.docker_support import BUSYBOX_IMAGE, DockerEnv

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(repo: GitRepo) -> GitRepo:
    """The scripts beside environments/, sharing this checkout's installed .venv."""
    locked = (PROJECT / "pyproject.toml").read_bytes() + (PROJECT / "uv.lock").read_bytes()
    stamp = Path(sys.prefix) / (".installed-" + hashlib.sha256(locked).hexdigest()[:16])
    assert stamp.exists(), "run scripts/bootstrap first: the tests use its .venv"
    for name in (
        "scripts/reconcile",
        "scripts/bootstrap",
        "scripts/locked-pins",
        "pyproject.toml",
        "uv.lock",
    ):
        (repo.root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / name, repo.root / name)
    (repo.root / ".venv").symlink_to(sys.prefix)
    repo.write(".gitignore", ".venv\ndrift-report/\n")
    repo.write("environments/plain.yml", f"name: plain\nimage: {BUSYBOX_IMAGE}\n")
    repo.write(
        "environments/ctx/env.yml",
        "name: ctx\nbuild:\n  path: docker\n",
    )
    repo.write("environments/ctx/docker/Dockerfile", f"FROM {BUSYBOX_IMAGE}\nRUN echo ok\n")
    repo.commit("environments")
    return repo


def reconcile(project: GitRepo, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RECONCILER_") and k not in ("DOCKER_HOST", "NO_COLOR", "CI")
    }
    return subprocess.run(
        ["scripts/reconcile"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=300,
    )


def assert_report_and_summary(project: GitRepo, out: str) -> None:
    summary = out[out.index("Summary:") :]
    for name in ("drift-report.json", "drift-report.md", "drift-report.html"):
        assert (project.root / "drift-report" / name).is_file()
        assert f"drift-report/{name}" in summary
    assert "apply: done" in summary
    assert "drift: none" in summary


def test_the_main_job_builds_and_reports(project: GitRepo, docker_env: DockerEnv) -> None:
    done = reconcile(
        project,
        {
            "DOCKER_HOST": docker_env.docker_host,
            "RECONCILER_TEST_IMAGE_REGISTRY": docker_env.fresh_image_registry(),
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.index("Plan:") < out.index("Apply complete: 2 change(s)") < out.index("Drift report")
    assert "Images: 2 built" in out
    assert "images: built with local services" in out
    assert "scripts/services start" not in out
    assert_report_and_summary(project, out)
    assert "Traceback" not in done.stderr


def test_without_an_image_registry_it_says_once_how_to_get_one(project: GitRepo) -> None:
    done = reconcile(project, {})
    assert done.returncode == 0, done.stdout + done.stderr
    both = done.stdout + done.stderr
    assert both.count("scripts/services start") == 1
    assert "images: not built" in done.stdout
    assert "builds skipped for" not in done.stderr  # the summary says it, not every step
    assert_report_and_summary(project, done.stdout)
