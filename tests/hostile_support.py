"""Helpers for the hostile-input corpus (tests/hostile/): build a case into a real git
repository, run the real command line in a subprocess under memory and time limits, and
fingerprint the SQLite registry to prove that nothing was written."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import GIT_ENV, GitRepo

CASES = Path(__file__).resolve().parent / "hostile"
MEMORY_LIMIT = 1 << 30  # RLIMIT_AS of every command: 1 GiB of address space
TIME_LIMIT = 60.0  # seconds of wall clock per command


def load_manifest() -> dict[str, dict[str, Any]]:
    with open(CASES / "cases.toml", "rb") as handle:
        cases: dict[str, dict[str, Any]] = tomllib.load(handle)["cases"]
    return cases


# -- generated files: too big (or too odd) to commit to this repository -------------------


def _huge_yaml(root: Path) -> None:
    """50 MB in one environment file."""
    with open(root / "environments/huge.yml", "wb") as handle:
        handle.write(b"name: huge\nimage: busybox\ndescription: ")
        chunk = b"x" * (1 << 20)
        for _ in range(50):
            handle.write(chunk)
        handle.write(b"\n")


def _huge_conda(root: Path) -> None:
    (root / "environments/big.yml").write_text(
        "name: big-conda\nimage: busybox\nconda_file: big-conda.yml\n"
    )
    deps = "".join(f"  - package-{i}==1.0.{i}\n" for i in range(80_000))
    (root / "environments/big-conda.yml").write_text("dependencies:\n" + deps)


def _deep_nesting(root: Path) -> None:
    """Deep enough to overflow the C stack of libyaml's composer without a depth limit."""
    depth = 200_000
    (root / "environments/flow.yml").write_bytes(
        b"name: deep\nimage: busybox\nx: " + b"[" * depth + b"]" * depth + b"\n"
    )
    (root / "environments/block.yml").write_bytes(
        b"name: deep-block\nimage: busybox\nconda_file:\n  dependencies:\n    "
        + b"- " * depth
        + b"x\n"
    )


def _long_numbers(root: Path) -> None:
    """A base-60 integer costs quadratic time to convert: refused by its length."""
    (root / "environments/sexagesimal.yml").write_text(
        "name: sixty\nimage: busybox\nconda_file:\n  dependencies: [1" + ":59" * 300_000 + "]\n"
    )


def _non_utf8_names(root: Path) -> None:
    env = os.fsencode(root / "environments") + b"/caf\xe9.yml"
    with open(env, "wb") as handle:
        handle.write(b"name: latin-name\nimage: busybox\n")
    (root / "environments/ctx").mkdir()
    (root / "environments/ctx/Dockerfile").write_text("FROM scratch\n")
    with open(os.fsencode(root / "environments/ctx") + b"/na\xefve.txt", "wb") as handle:
        handle.write(b"hello\n")
    (root / "environments/context.yml").write_text("name: latin-context\nbuild:\n  path: ctx\n")


GENERATORS: dict[str, Callable[[Path], None]] = {
    "huge-yaml": _huge_yaml,
    "huge-conda": _huge_conda,
    "deep-nesting": _deep_nesting,
    "long-numbers": _long_numbers,
    "non-utf8-names": _non_utf8_names,
}


def install_case(repo: GitRepo, name: str, spec: dict[str, Any]) -> None:
    """Copy the case's tree into the repository, add its symlinks and generated files."""
    source = CASES / name
    if source.is_dir():
        shutil.copytree(source, repo.root, dirs_exist_ok=True, symlinks=True)
    (repo.root / "environments").mkdir(exist_ok=True)
    for link, target in spec.get("symlinks", {}).items():
        path = repo.root / link
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
    generator = spec.get("generate")
    if generator is not None:
        GENERATORS[generator](repo.root)
    repo.commit(f"hostile case {name}")


# -- running the command line under limits ---------------------------------------------------


@dataclass(frozen=True)
class Run:
    command: list[str]
    code: int
    out: str
    err: str

    def describe(self) -> str:
        command = " ".join(self.command)
        return f"{command} -> {self.code}\nstdout: {self.out[-2000:]}\nstderr: {self.err[-2000:]}"


def _limits() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_limited(repo: Path, *args: str, timeout: float = TIME_LIMIT) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env.update(GIT_ENV)
    command = [sys.executable, "-m", "reconciler", *args]
    done = subprocess.run(
        command,
        cwd=repo,
        env=env,
        capture_output=True,
        timeout=timeout,
        preexec_fn=_limits,
        check=False,
    )
    return Run(list(args), done.returncode, _text(done.stdout), _text(done.stderr))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


# -- the registry, before and after ----------------------------------------------------------


def registry_fingerprint(db: Path) -> tuple[str, str, int]:
    """(hash of the file, hash of every row, number of events): any write changes one."""
    file_hash = hashlib.sha256(db.read_bytes()).hexdigest()
    conn = sqlite3.connect(db)
    try:
        dump = "\n".join(conn.iterdump())
        events = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()
    return file_hash, hashlib.sha256(dump.encode()).hexdigest(), events
