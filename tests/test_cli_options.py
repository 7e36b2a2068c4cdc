"""The command line: every common option is accepted by every command, anywhere after the
verb; shell completion scripts come from the same parser."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli.app import build_parser
from tests.conftest import Cli, GitRepo, image_env
from tests.processes import reconciler_env

# Each command with the positionals it needs; a new command must be added here.
SAMPLES: dict[str, list[str]] = {
    "validate": [],
    "plan": [],
    "apply": [],
    "drift": [],
    "watch": [],
    "reconcile": ["--once"],
    "build": ["a:1"],
    "diff": ["a:1", "a:2"],
    "list": [],
    "show": ["a"],
    "evidence": ["--out", "evidence"],
    "history": ["a"],
    "emulator": [],
    "completion": ["bash"],
    "serve": [],
    "notify": ["--test"],
    "refs": ["a:1"],
    "bump": ["a", "--to", "2"],
    "status": [],
    "workflows": ["--check"],
}

COMMON = {
    "--repo": ("repo", ["/somewhere"], Path("/somewhere")),
    "--path": ("path", ["envs"], "envs"),
    "--registry": ("registry", ["sqlite:///x.db"], "sqlite:///x.db"),
    "--image-registry": ("image_registry", ["127.0.0.1:5000/r"], "127.0.0.1:5000/r"),
    "--json": ("json", [], True),
    "--no-cache": ("no_cache", [], True),
    "--no-color": ("no_color", [], True),
    "--target": ("targets", ["dev"], ["dev"]),
}


def commands() -> list[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("no commands")


def test_every_command_has_a_sample() -> None:
    assert sorted(SAMPLES) == commands()


@pytest.mark.parametrize("option", sorted(COMMON))
@pytest.mark.parametrize("command", sorted(SAMPLES))
def test_common_option_accepted_anywhere_after_the_verb(command: str, option: str) -> None:
    dest, values, expected = COMMON[option]
    rest = SAMPLES[command]
    positions = [
        [command, option, *values, *rest],  # right after the verb
        [command, *rest, option, *values],  # at the end
    ]
    if len(rest) > 1 and not rest[0].startswith("-"):
        positions.append([command, *rest[:1], option, *values, *rest[1:]])  # in between
    for argv in positions:
        args = build_parser().parse_args(argv)
        assert getattr(args, dest) == expected, argv


def seeded(repo: GitRepo, cli: Cli) -> None:
    repo.write("environments/a.yml", image_env("a"))
    repo.commit("seed")
    assert cli("apply")[0] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["show", "a", "--image-registry", "127.0.0.1:9/none"],
        ["show", "--image-registry", "127.0.0.1:9/none", "a:1", "--no-cache", "--no-color"],
        ["list", "--image-registry", "127.0.0.1:9/none", "--no-cache"],
        ["history", "a", "--no-color", "--image-registry", "127.0.0.1:9/none"],
        ["validate", "--image-registry", "127.0.0.1:9/none", "--no-color"],
        ["diff", "a:1", "--no-color", "--no-cache"],
    ],
)
def test_options_without_meaning_are_ignored(repo: GitRepo, cli: Cli, argv: list[str]) -> None:
    seeded(repo, cli)
    code, out, err = cli(*argv)
    assert code == 0, err
    assert "unrecognized" not in err
    assert "\x1b[" not in out


def completion(shell: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "completion", shell],
        capture_output=True,
        text=True,
        env=reconciler_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def bash_complete(script: Path, *words: str) -> list[str]:
    """What bash offers for the last word of ``reconciler WORDS``, through the script."""
    quoted = " ".join(f"'{w}'" for w in ("reconciler", *words))
    program = (
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; "
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; '
        '_shtab_reconciler; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion_offers_commands_and_options(tmp_path: Path) -> None:
    script = tmp_path / "reconciler.bash"
    script.write_text(completion("bash"))
    assert bash_complete(script, "hi") == ["history"]
    assert sorted(bash_complete(script, "show", "--no-c")) == ["--no-cache", "--no-color"]
    assert "--self-heal" in bash_complete(script, "apply", "--")
    assert sorted(bash_complete(script, "completion", "")) == ["bash", "fish", "zsh"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_name_every_command(shell: str) -> None:
    script = completion(shell)
    for command in commands():
        assert command in script
    assert "image-registry" in script and "no-color" in script
