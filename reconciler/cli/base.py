"""What every command module shares: exit codes, the error a command raises for bad
usage, and whether to colour the output."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from argparse import ArgumentParser

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


def add_report_options(parser: ArgumentParser) -> None:
    """The options of a loop that writes the drift report and a status file (`reconcile`
    and `serve`)."""
    parser.add_argument("--report-dir", help="where to write the report (default: drift-report/)")
    parser.add_argument(
        "--status-file",
        type=Path,
        help="status for operators, JSON (default: .reconciler/status.json)",
    )
    parser.add_argument("--fail-on", metavar="CLASSES", help="drift classes that count (as drift)")
