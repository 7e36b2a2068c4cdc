"""What every command module shares: exit codes, the error a command raises for bad
usage, and whether to colour the output."""

from __future__ import annotations

import os
import sys

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2  # plan: changes pending


class CliError(Exception):
    pass


def color_enabled() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ
