"""How a command writes: plain lines and JSON on stdout, one flushed line per cycle for
the long-running commands, and the terminal renderer when a person is watching."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from typing import TYPE_CHECKING, Any

from reconciler.cli.base import terminal_wanted
from reconciler.render import text

if TYPE_CHECKING:
    from reconciler.render.terminal import Terminal

PLAIN = text.Style(False)  # plain output has no escape sequences at all
# Long-running commands print one line per cycle, the same in a terminal as in a log.
LINE_COMMANDS = frozenset({"watch", "reconcile", "emulator"})


def terminal(args: Namespace) -> Terminal | None:
    """The terminal renderer when a person is watching (imported only then); None: plain
    text. Its progress display goes to stderr, when stderr is a terminal too."""
    if not terminal_wanted(args) or args.command in LINE_COMMANDS:
        return None
    screen: Terminal | None = getattr(args, "terminal", None)
    if screen is None:
        from reconciler.render.terminal import Terminal

        screen = Terminal(progress=sys.stderr.isatty())
        args.terminal = screen
    return screen


def close_terminal(args: Namespace) -> None:
    screen = getattr(args, "terminal", None)
    if screen is not None:
        screen.close()


def print_text(value: str) -> None:
    sys.stdout.write(value + "\n")


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def print_json(value: Any) -> None:
    print_text(json_text(value))


def print_line(value: str) -> None:
    sys.stdout.write(value + "\n")
    sys.stdout.flush()  # one line per reconcile, visible at once in a pipe or a log
