"""What every command module shares: exit codes, the error a command raises for bad
usage, and whether to colour the output."""

from __future__ import annotations

import os
import sys
from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2  # plan: changes pending


class CliError(Exception):
    pass


def color_enabled() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def terminal_wanted(args: Any) -> bool:
    """A person watches a terminal: colour, tables and progress. Plain, parseable text
    for pipes and files, in CI, with NO_COLOR or --no-color, and never around --json."""
    if getattr(args, "json", False) or getattr(args, "no_color", False):
        return False
    if "NO_COLOR" in os.environ or os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    return sys.stdout.isatty()
