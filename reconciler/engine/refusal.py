"""Why apply did not start (kept import-light: the command line names it at start-up)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.core.plan.types import Plan


class ApplyRefused(Exception):
    """Apply will not start: the plan has error diagnostics (``plan`` holds them)."""

    def __init__(self, message: str, plan: Plan | None = None) -> None:
        super().__init__(message)
        self.plan = plan
