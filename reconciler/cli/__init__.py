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

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from reconciler.cli.replay import Answer, Watched

    words = sys.argv[1:] if argv is None else list(argv)
    answer = Answer.of(words)
    if answer is not None:
        code = answer.replay(sys.stdout)
        if code is not None:
            return code
    from reconciler.cli.app import main as run

    if answer is None:
        return run(argv)
    stderr = sys.stderr
    watched = Watched(stderr)
    sys.stderr = watched
    try:
        return run(argv, answer, watched)
    finally:
        sys.stderr = stderr
