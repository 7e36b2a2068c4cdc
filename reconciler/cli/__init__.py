"""Command line: parse arguments, load settings, wire adapters, call the engine, render,
map the outcome to an exit code (cli/app.py).

A `plan` whose inputs are all unchanged since the last one is replayed first
(cli/replay.py), before any of that is even imported.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

    from reconciler.cli.replay import Answer

__all__ = ["main", "program"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line (default: the process's) and return its exit code."""
    words = sys.argv[1:] if argv is None else list(argv)
    answer, code = _replayed(words)
    return code if code is not None else _run(argv, answer)


def program() -> NoReturn:
    """The `reconciler` command. A replayed answer ends the process at once: an
    interpreter's orderly teardown would cost as much as the replay itself, and the
    replay holds nothing that needs it (its output is flushed)."""
    answer, code = _replayed(sys.argv[1:])
    if code is not None:
        import os

        os._exit(code)
    sys.exit(_run(None, answer))


def _replayed(words: list[str]) -> tuple[Answer | None, int | None]:
    """The answer slot of this command line, and the exit code of its replayed answer
    (None: not replayed; the command must run)."""
    from reconciler.cli.replay import Answer

    answer = Answer.of(words)
    return answer, None if answer is None else answer.replay(sys.stdout)


def _run(argv: Sequence[str] | None, answer: Answer | None) -> int:
    from reconciler.cli.app import main as run
    from reconciler.cli.replay import Watched

    if answer is None:
        return run(argv)
    stderr = sys.stderr
    watched = Watched(stderr)
    sys.stderr = watched
    try:
        return run(argv, answer, watched)
    finally:
        sys.stderr = stderr
