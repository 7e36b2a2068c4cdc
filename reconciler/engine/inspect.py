"""Inspect: what the registry holds (list, show, history, evidence), read through the
Registry port only.

Each verb reads once and returns core values (or, for evidence, its document); the
documents layer shapes them and the renderers show them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from reconciler.ports import NotFound

if TYPE_CHECKING:
    from reconciler.core.build.jobs import BuildRecord
    from reconciler.core.desired.consumers import ConsumerIndex
    from reconciler.core.spec.model import RegisteredContainer, RegistryState
    from reconciler.engine.context import Context


def containers(engine: Context) -> RegistryState:
    return engine.registry.read_state()


def container(
    engine: Context, name: str
) -> tuple[RegisteredContainer, dict[tuple[str, str], BuildRecord]]:
    """NAME's container and the build records of the registry; NotFound if absent."""
    found = engine.registry.get_container(name)
    records = engine.registry.build_records()
    if found is None:
        raise NotFound(f"no environment {name!r} in {engine.registry.url}")
    return found, records


def history(engine: Context, name: str) -> tuple[RegisteredContainer, list[dict[str, Any]]]:
    """NAME's container and its events, oldest first; NotFound if absent."""
    found = engine.registry.get_container(name)
    events = engine.registry.history(name)
    if found is None:
        raise NotFound(f"no environment {name!r} in {engine.registry.url}")
    return found, events


def evidence(
    engine: Context,
    now: datetime,
    consumers: ConsumerIndex | None = None,
    state: RegistryState | None = None,
) -> dict[str, Any]:
    """The audit evidence document of every environment and version, as of ``now``, with
    the repository's ``consumers`` under the versions they pin. ``state``: the registry as
    already read by the caller (read here when None)."""
    from reconciler.core.governance.evidence import evidence_document

    registry = engine.registry
    if state is None:
        state = registry.read_state()
    records = registry.build_records()
    events = {name: registry.history(name) for name in state.containers}
    return evidence_document(
        state,
        records,
        events,
        engine.policy,
        now.date(),
        registry.url,
        now.isoformat(timespec="seconds"),
        consumers,
    )
