"""What a command does before it calls a verb: its settings (one target's, when it runs
for one of several) and its engine, with the terminal's progress display."""

from __future__ import annotations

from argparse import Namespace

from reconciler.cli.output import terminal
from reconciler.cli.wiring import engine_for, settings_of
from reconciler.engine import Engine
from reconciler.settings import Settings


def command_settings(args: Namespace) -> Settings:
    settings = settings_of(args)
    screen = terminal(args)
    if screen is not None:
        screen.root = settings.repo  # file:line links point into the repository
    target = getattr(args, "target_name", None)  # one of several targets (see cli/targets.py)
    return settings if target is None else settings.for_target(target)


def command_engine(settings: Settings, args: Namespace, builds: bool = False) -> Engine:
    screen = terminal(args)
    display = screen.progress if screen is not None else None
    return engine_for(settings, args, builds, display)
