"""Command samples for the reference pages, from real runs: a git repository in a
temporary directory with two environments, applied to the embedded registry, then a
commit that bumps a package and edits a description. Each sample is the command line and
what it printed, so the pages show today's output, never a copy that has aged."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SHOWN_ROOT = "/home/me/ml-environments"  # the temporary directory, as the pages show it

ENVIRONMENT = """\
name: pydata
description: pandas and scikit-learn for notebooks
image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240709.v1
conda_file: conda.yml
tags:
  team: data
"""
CONDA = """\
channels: [conda-forge]
dependencies:
  - python=3.11
  - pandas=2.2.2
  - pip:
      - scikit-learn==1.5.0
"""
BASE = """\
name: python-base
description: Python 3.11 on Ubuntu
image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240709.v1
"""

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    # fixed dates: the same commits, hence the same hashes, on every build
    "GIT_AUTHOR_DATE": "2025-01-06T09:00:00Z",
    "GIT_COMMITTER_DATE": "2025-01-06T09:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


@dataclass(frozen=True)
class Sample:
    command: str  # as typed, `reconciler ...`
    output: str
    exit_code: int

    def markdown(self) -> str:
        text = f"$ {self.command}\n{self.output.rstrip()}".rstrip()
        return f"```console\n{text}\n```\n\nExit code {self.exit_code}.\n"


class SampleError(Exception):
    pass


class _Repo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RECONCILER_", "GIT_")) and k not in ("DOCKER_HOST", "COLUMNS")
        }
        self.env.update(_GIT_ENV)
        self.env["COLUMNS"] = "100"
        self.env["NO_COLOR"] = "1"

    def git(self, *args: str) -> None:
        subprocess.run(["git", *args], cwd=self.root, env=self.env, check=True, capture_output=True)

    def write(self, path: str, text: str) -> None:
        full = self.root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(text, encoding="utf-8")

    def commit(self, message: str, date: str) -> None:
        self.env["GIT_AUTHOR_DATE"] = self.env["GIT_COMMITTER_DATE"] = date
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def run(self, *args: str, expect: tuple[int, ...] = (0, 2)) -> Sample:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode not in expect:
            raise SampleError(
                f"`reconciler {' '.join(args)}` exited {done.returncode}: {done.stderr.strip()}"
            )
        # stdout then stderr, as a terminal shows them when nothing interleaves
        output = (done.stdout + done.stderr).replace(str(self.root), SHOWN_ROOT)
        return Sample("reconciler " + " ".join(args), output, done.returncode)


def collect() -> dict[str, Sample]:
    """Run the scenario; the samples by name (the command's name, or a variant)."""
    with tempfile.TemporaryDirectory(prefix="reconciler-docs-") as tmp:
        repo = _Repo(Path(tmp))
        repo.git("init", "-q", "-b", "main")
        repo.git("remote", "add", "origin", "https://github.com/contoso/ml-environments.git")
        repo.write("environments/pydata/environment.yml", ENVIRONMENT)
        repo.write("environments/pydata/conda.yml", CONDA)
        repo.write("environments/python-base.yml", BASE)
        repo.commit("Two environments", "2025-01-06T09:00:00Z")
        out: dict[str, Sample] = {}
        out["validate"] = repo.run("validate", expect=(0,))
        out["plan-create"] = repo.run("plan", expect=(2,))
        out["apply-create"] = repo.run("apply", expect=(0,))
        repo.write("environments/pydata/conda.yml", CONDA.replace("2.2.2", "2.2.3"))
        repo.write(
            "environments/python-base.yml",
            BASE.replace("Python 3.11 on Ubuntu", "Python 3.11 on Ubuntu 22.04"),
        )
        repo.commit("pandas 2.2.3", "2025-01-07T09:00:00Z")
        out["plan"] = repo.run("plan", expect=(2,))
        out["drift"] = repo.run("drift", expect=(2,))
        out["apply"] = repo.run("apply", expect=(0,))
        out["list"] = repo.run("list", expect=(0,))
        out["show"] = repo.run("show", "pydata:2", expect=(0,))
        out["history"] = repo.run("history", "pydata", expect=(0,))
        out["diff"] = repo.run("diff", "pydata:1", "pydata:2", expect=(2,))
        out["evidence"] = repo.run("evidence", "--out", "evidence", expect=(0,))
        out["drift-in-sync"] = repo.run("drift", expect=(0,))
        return out
