"""scripts/bootstrap from a clean clone: quiet (one line per step, errors in full), and
everything installed exactly as uv.lock pins it, with hashes checked and no dependency
resolution. scripts/test stops first thing when pyproject.toml and uv.lock disagree."""

from __future__ import annotations

import json
import re
import subprocess
import time
import tomllib
from pathlib import Path

from packaging.utils import canonicalize_name

from tests.release_support import copy_of_the_project, locked_versions, needs_source, run

REFRESH = "refresh the lock with: scripts/lock"


def installed(venv: Path) -> dict[str, str]:
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {canonicalize_name(d["name"]): d["version"] for d in json.loads(listed)}


@needs_source
def test_bootstrap_is_quiet_installs_only_the_lock_and_fails_loudly(tmp_path: Path) -> None:
    clone = copy_of_the_project(tmp_path / "clone").root
    first = run(["scripts/bootstrap"], clone)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stderr == ""
    lines = first.stdout.splitlines()
    assert all(line.startswith("bootstrap: ") for line in lines), first.stdout
    assert len(lines) == 5, first.stdout
    assert lines[-1].startswith("bootstrap: reconciler ") and ".venv/bin/reconciler" in lines[-1]
    assert re.fullmatch(r"bootstrap: installing \d+ packages pinned in uv\.lock.*", lines[2])
    log = (clone / ".venv" / "bootstrap.log").read_text()
    assert "deprecat" not in log.lower()  # setuptools' editable-install warnings included

    # Every package is the locked version; pip installed only what it was asked for.
    venv = clone / ".venv"
    versions, pins = installed(venv), locked_versions(clone)
    assert versions.pop("reconciler")
    assert versions == {name: pins[name] for name in versions}
    assert {"azure-ai-ml", "pytest", "mkdocs", "setuptools-scm", "uv"} <= versions.keys()
    report = json.loads((venv / "bootstrap-report.json").read_text())
    assert report["install"] and all(item["requested"] for item in report["install"])
    # An editable install as a plain path entry: no import hook, no deprecated compat mode.
    [site] = (venv / "lib").glob("python3*/site-packages")
    [pth] = site.glob("__editable__.reconciler-*.pth")
    assert pth.read_text().strip() == str(clone)
    assert not list(site.glob("__editable__*finder*"))

    again_started = time.monotonic()
    again = run(["scripts/bootstrap"], clone)
    assert again.returncode == 0 and again.stdout == again.stderr == ""
    assert time.monotonic() - again_started < 10

    # A changed range: scripts/test stops before anything else, naming the command.
    pyproject = clone / "pyproject.toml"
    original = pyproject.read_text()
    assert '"rich>=13.7,<16"' in original
    pyproject.write_text(original.replace('"rich>=13.7,<16"', '"rich>=13.7,<15"'))
    test = run(["scripts/test"], clone)
    assert test.returncode == 1
    assert REFRESH in test.stderr
    assert test.stdout == ""  # no install, no lint, no test ran
    bootstrap = run(["scripts/bootstrap"], clone)
    assert bootstrap.returncode == 1 and REFRESH in bootstrap.stderr
    pyproject.write_text(original)

    # A file that does not match the lock's hash: the step, the command and pip's error.
    with (clone / "uv.lock").open("rb") as file:
        [shtab] = [p for p in tomllib.load(file)["package"] if p["name"] == "shtab"]
    lock_text = (clone / "uv.lock").read_text()
    for wheel in shtab["wheels"]:
        lock_text = lock_text.replace(wheel["hash"], "sha256:" + "0" * 64)
    (clone / "uv.lock").write_text(lock_text)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y", "shtab"], check=True
    )
    broken = run(["scripts/bootstrap"], clone)
    assert broken.returncode == 1
    assert "bootstrap: failed: installing the locked packages" in broken.stderr
    assert "DO NOT MATCH THE HASHES" in broken.stderr and "shtab" in broken.stderr
