"""Package-level diffs for the changes of a plan: which packages each new version adds,
removes or moves. Separate from the planner because requirement files must be read from
git first (by the engine); here everything is given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reconciler.core.governance.package_diff import content_diff, needed_blobs
from reconciler.core.plan.types import Action, Change, Plan
from reconciler.core.spec.model import RegistryState


def _contents(
    change: Change, state: RegistryState
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any]] | None:
    """(content before, content after) of a content change; None for other changes."""
    if change.action is not Action.NEW_VERSION or change.write is None:
        return None
    container = state.containers.get(change.name)
    previous = None
    if container is not None and change.previous_version is not None:
        previous = container.get(change.previous_version)
    before = previous.content if previous is not None else None
    return before, change.write.content


def package_blobs(plan: Plan, state: RegistryState) -> set[str]:
    """Blob ids of the requirement files whose text ``annotate_packages`` needs."""
    out: set[str] = set()
    for change in (*plan.changes, *plan.drift):
        pair = _contents(change, state)
        if pair is not None:
            out |= needed_blobs(*pair)
    return out


def annotate_packages(plan: Plan, state: RegistryState, texts: Mapping[str, str]) -> Plan:
    """``plan`` with a package diff on every new version whose packages changed."""

    def one(change: Change) -> Change:
        pair = _contents(change, state)
        if pair is None:
            return change
        diff = content_diff(pair[0], pair[1], texts)
        return replace(change, packages=diff) if diff else change

    return replace(
        plan,
        changes=tuple(one(c) for c in plan.changes),
        drift=tuple(one(c) for c in plan.drift),
    )
