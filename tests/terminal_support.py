"""Real pseudo-terminals for the terminal UI tests: a tmux server of the test's own (its
screen captured as a person would see it) and `script` (the raw bytes a program wrote to
its terminal)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.processes import reconciler_env

DONE = "__command_finished__"


def _needs(tool: str) -> None:
    if shutil.which(tool) is None:
        message = f"{tool} is not installed (apt-get install {tool})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The reconciler's environment with none of the switches to plain output."""
    env = {k: v for k, v in reconciler_env().items() if k not in ("NO_COLOR", "CI", "TERM")}
    env["TERM"] = "xterm-256color"
    env.update(extra or {})
    return env


def reconciler_command(*args: str) -> str:
    return shlex.join([sys.executable, "-m", "reconciler", *args])


class Screen:
    """One command in a tmux window of 160x50 on a private tmux server."""

    def __init__(self, cwd: Path, command: str, env: Mapping[str, str] | None = None) -> None:
        _needs("tmux")
        self.socket = f"reconciler-test-{uuid.uuid4().hex[:12]}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in command_env(env).items())
        script = f"cd {shlex.quote(str(cwd))} && env -i {exports} {command}; echo {DONE}$?"
        self._tmux(
            "new-session", "-d", "-s", "t", "-x", "160", "-y", "50",
            f"bash --norc --noprofile -c {shlex.quote(script + '; sleep 600')}",
        )  # fmt: skip

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def capture(self, escapes: bool = False) -> str:
        """What the window shows now (with colour escapes when ``escapes``)."""
        flags = ["-e"] if escapes else []
        return self._tmux("capture-pane", "-p", "-J", *flags, "-t", "t", "-S", "-200")

    def wait_for(self, needle: str, timeout: float = 120.0, poll: float = 0.05) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture()
            if needle in screen:
                return screen
            if DONE in screen and needle != DONE:
                raise AssertionError(f"{needle!r} did not show before the end:\n{screen}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never showed; the screen:\n{screen}")
            time.sleep(poll)

    def finish(self, timeout: float = 180.0) -> tuple[int, str]:
        """Wait for the command to end: its exit code and the final screen."""
        screen = self.wait_for(DONE, timeout, poll=0.2)
        code = int(screen.split(DONE, 1)[1].split()[0])
        return code, screen.split(DONE, 1)[0]

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def raw_terminal_output(cwd: Path, command: str, env: Mapping[str, str] | None = None) -> bytes:
    """Every byte a command writes to its pseudo-terminal (stdout and stderr), by `script`."""
    _needs("script")
    done = subprocess.run(
        ["script", "-q", "-e", "-c", command, "/dev/null"],
        cwd=cwd,
        capture_output=True,
        env=command_env(env),
        timeout=300,
    )
    return done.stdout
