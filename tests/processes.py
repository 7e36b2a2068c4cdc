"""Long-running reconcilers as real subprocesses: output collected line by line, polled
with timeouts, stopped with real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from tests.conftest import GIT_ENV

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def reconciler_env() -> dict[str, str]:
    # AZUREML_CURRENT_CLOUD: set in this process by the SDK of an in-process test, it names
    # a cloud only that process has registered.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RECONCILER_") and k != "AZUREML_CURRENT_CLOUD"
    }
    env.update(GIT_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Running:
    """`python -m reconciler ARGS` in the background."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**reconciler_env(), **(env or {})},
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.lines)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.errors)),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Iterable[str], into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.process.pid

    def reconciles(self) -> list[str]:
        return [line for line in self.lines if " reconcile " in line]

    def wait_line(self, *needles: str, timeout: float = 10.0, after: int = 0) -> str:
        """The first reconcile line numbered above ``after`` containing every needle."""

        def find() -> str | None:
            if self.process.poll() is not None and not self._readers[0].is_alive():
                raise AssertionError(f"exited {self.process.returncode}: {self.output()}")
            for line in self.reconciles()[after:]:
                if all(n in line for n in needles):
                    return line
            return None

        return wait_for(find, timeout, f"a line with {needles!r}; output: {self.output()}")

    def stop(self, signum: int = signal.SIGINT, timeout: float = 10.0) -> int:
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"did not stop within {timeout:g}s: {self.output()}") from None
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join(5)

    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + "\n".join(self.errors)
