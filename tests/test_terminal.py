"""The terminal UI, driven in real pseudo-terminals: progress while apply and its builds
run, gone from the final screen that keeps the summary; colours, tables and file links;
and no escape sequence at all in a pipe, in CI, with NO_COLOR or with --no-color."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import GitRepo, image_env
from tests.docker_support import BUSYBOX_IMAGE, DockerEnv
from tests.processes import reconciler_env
from tests.terminal_support import Screen, raw_terminal_output, reconciler_command

ESC = "\x1b"


@pytest.fixture
def screens() -> Iterator[list[Screen]]:
    opened: list[Screen] = []
    yield opened
    for screen in opened:
        screen.close()


def open_screen(screens: list[Screen], repo: GitRepo, *args: str, **env: str) -> Screen:
    screen = Screen(repo.root, reconciler_command(*args), env)
    screens.append(screen)
    return screen


def slow_build_repo(repo: GitRepo) -> None:
    repo.write("environments/plain.yml", f"name: plain\nimage: {BUSYBOX_IMAGE}\n")
    repo.write("environments/slow/env.yml", "name: slow\nbuild:\n  path: docker\n")
    repo.write(
        "environments/slow/docker/Dockerfile",
        f"FROM {BUSYBOX_IMAGE}\n"
        f"RUN echo {uuid.uuid4().hex}; "
        "for i in 1 2 3 4 5 6 7 8; do echo step $i; sleep 0.4; done\n",
    )
    repo.commit("environments")


def plan_repo(repo: GitRepo) -> None:
    """After an apply: a plan that creates, updates metadata and archives, with a warning
    and an error tied to files."""
    repo.write("environments/a.yml", image_env("a", description="first"))
    repo.write("environments/b.yml", image_env("b"))
    repo.commit("seed")
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "apply"],
        cwd=repo.root,
        capture_output=True,
        text=True,
        env=reconciler_env(),
    )
    assert done.returncode == 0, done.stderr
    repo.write("environments/a.yml", image_env("a", description="second"))
    repo.write("environments/c.yml", image_env("c"))
    repo.write("environments/d.yml", image_env("d", image="busybox:latest"))
    repo.remove("environments/b.yml")
    repo.commit("changes")


def test_apply_with_builds_shows_progress_then_keeps_only_the_summary(
    repo: GitRepo, docker_env: DockerEnv, screens: list[Screen]
) -> None:
    slow_build_repo(repo)
    screen = open_screen(
        screens,
        repo,
        "apply",
        "--image-registry",
        docker_env.fresh_image_registry(),
        DOCKER_HOST=docker_env.docker_host,
    )
    # while it runs: one row per image, with its state, elapsed time and last log line
    running = screen.wait_for("slow:1: building")
    row = next(line for line in running.splitlines() if "slow:1: building" in line)
    assert "0:00:0" in row, running  # elapsed time
    later = screen.wait_for("step ")  # the build log's last line, under way
    assert "slow:1: building" in later
    code, final = screen.finish()
    assert code == 0, final
    # the final screen: the summary and the builds table, no progress rows
    assert "Apply complete: 2 change(s) applied." in final
    assert "Images: 2 built, 0 cache hit(s), 0 failed" in final
    table = final[final.index("IMAGE") :]
    assert "STATE" in table and "TIME" in table
    assert any(line.split()[:2] == ["slow:1", "built"] for line in table.splitlines())
    assert "building" not in final and "step " not in final
    coloured = screen.capture(escapes=True)
    assert f"{ESC}[32m+" in coloured  # a green create marker
    assert f"{ESC}[32mbuilt" in coloured


def test_apply_progress_counts_changes(repo: GitRepo, screens: list[Screen]) -> None:
    for name in "abcdefghij":
        repo.write(f"environments/{name}.yml", image_env(name))
    repo.commit("ten")
    screen = open_screen(screens, repo, "apply", RECONCILER_TEST_WRITE_DELAY="0.3")
    running = screen.wait_for("applying 10 change(s)")
    assert "/10" in running
    code, final = screen.finish()
    assert code == 0, final
    assert "Apply complete: 10 change(s) applied." in final
    assert "applying" not in final


def test_plan_colours_markers_and_diagnostics_with_links(
    repo: GitRepo, screens: list[Screen]
) -> None:
    plan_repo(repo)
    screen = open_screen(screens, repo, "plan")
    code, final = screen.finish()
    assert code == 2, final
    assert (
        "Changes: 2 to create, 0 new version(s), 1 to update, 0 to restore, 1 to archive" in final
    )
    coloured = screen.capture(escapes=True)
    assert f"{ESC}[32m+" in coloured  # create: green
    assert f"{ESC}[33m~" in coloured  # update: yellow
    assert f"{ESC}[31m-" in coloured  # archive: red
    # an error: red, and its file:line a link to the file (OSC 8) where terminals have them
    repo.write("environments/e.yml", "name: e\nimage: busybox:1.36\nfoo: 1\n")
    screen = open_screen(screens, repo, "plan")
    code, final = screen.finish()
    assert code == 1, final
    assert "error: environments/e.yml:3: unknown field" in final
    assert f"{ESC}[1m{ESC}[31merror" in screen.capture(escapes=True)
    raw = raw_terminal_output(repo.root, reconciler_command("plan")).decode()
    assert f"{ESC}]8;id=" in raw and (repo.root / "environments" / "e.yml").as_uri() in raw


def test_listings_are_tables(repo: GitRepo, screens: list[Screen]) -> None:
    plan_repo(repo)
    screen = open_screen(screens, repo, "list", "--include-archived")
    code, final = screen.finish()
    assert code == 0, final
    assert "Environments in sqlite:///" in final
    assert "─" * 20 in final  # the table's rule
    assert "NAME" in final and "SOURCE" in final
    assert any(
        line.split()[:5] == ["a", "1", "1", "active", "managed"] for line in final.splitlines()
    )
    screen = open_screen(screens, repo, "history", "a")
    code, final = screen.finish()
    assert code == 0 and "a: versions" in final and "a: events" in final
    screen = open_screen(screens, repo, "show", "a")
    code, final = screen.finish()
    assert code == 0 and "latest.provenance.path" in final


PLAIN_CASES = {
    "NO_COLOR": ({"NO_COLOR": "1"}, []),
    "CI": ({"CI": "true"}, []),
    "--no-color": ({}, ["--no-color"]),
}


@pytest.mark.parametrize("case", sorted(PLAIN_CASES))
def test_plain_in_a_terminal_has_no_escape_sequences(
    repo: GitRepo, docker_env: DockerEnv, case: str
) -> None:
    env, flags = PLAIN_CASES[case]
    slow_build_repo(repo)
    registry = docker_env.fresh_image_registry()
    for args in (
        ["plan", *flags],
        ["apply", "--image-registry", registry, *flags],
        ["list", *flags],
        ["history", "slow", *flags],
    ):
        raw = raw_terminal_output(
            repo.root, reconciler_command(*args), {**env, "DOCKER_HOST": docker_env.docker_host}
        )
        assert raw, args
        assert b"\x1b" not in raw, (args, raw[:400])
    assert b"Apply complete" not in raw  # the last one was history
    assert b"VERSION  CREATED" in raw  # the plain table, as parseable as before


def test_piped_output_has_no_escapes_and_does_not_import_rich(repo: GitRepo) -> None:
    plan_repo(repo)
    for args in (["plan"], ["apply"], ["list"], ["show", "a"], ["history", "a"]):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "reconciler", *args],
            cwd=repo.root,
            capture_output=True,
            text=True,
            env=reconciler_env(),
        )
        assert done.returncode in (0, 2), done.stderr
        assert ESC not in done.stdout
        assert " rich" not in done.stderr, args  # no rich import in the import log


def test_json_is_never_decorated_in_a_terminal(repo: GitRepo) -> None:
    plan_repo(repo)
    raw = raw_terminal_output(repo.root, reconciler_command("plan", "--json"))
    assert b"\x1b" not in raw
    assert raw.lstrip().startswith(b"{")


def test_completion_script_in_a_terminal_is_plain(tmp_path: Path) -> None:
    raw = raw_terminal_output(tmp_path, reconciler_command("completion", "bash"))
    assert b"\x1b" not in raw and b"_shtab_reconciler" in raw
