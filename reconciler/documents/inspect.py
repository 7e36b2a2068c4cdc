"""What the registry holds, as documents: the rows of `list`, `show` of an environment or
a version, and `history` (versions with their provenance, and the events)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.core.build.jobs import BuildRecord
    from reconciler.core.spec.model import RegisteredContainer, RegisteredVersion, RegistryState


def container_row(container: RegisteredContainer) -> dict[str, Any]:
    newest = container.newest
    return {
        "name": container.name,
        "latest_version": newest.version if newest else None,
        "versions": len(container.versions),
        "archived": container.archived,
        "managed": container.managed,
        "source_path": container.owner_path(),
    }


def list_document(state: RegistryState, include_archived: bool) -> list[dict[str, Any]]:
    return [
        container_row(c) for c in state.containers.values() if include_archived or not c.archived
    ]


def version_document(version: RegisteredVersion, container: RegisteredContainer) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": version.version,
        "digest": version.digest,
        "description": version.description,
        "tags": dict(version.tags),
        "archived": version.archived or container.archived,
        "created_at": version.created_at,
        "datastore": version.datastore,
        "managed": version.managed,
        "provenance": {"commit": version.source_commit, "path": version.source_path},
        "content": dict(version.content) if version.content is not None else None,
    }


def show_document(
    container: RegisteredContainer,
    records: dict[tuple[str, str], BuildRecord],
    version: str | None,
) -> dict[str, Any] | None:
    """NAME (its row and latest version) or NAME:VERSION; None if there is no VERSION."""
    builds = {k: r.to_dict() for k, r in records.items()}
    name = container.name
    if version:
        found = container.get(version)
        if found is None:
            return None
        document = version_document(found, container)
        document["build"] = builds.get((name, version))
        return document
    newest = container.newest
    document = container_row(container)
    document["latest"] = version_document(newest, container) if newest else None
    if newest is not None:
        document["latest"]["build"] = builds.get((name, newest.version))
    return document


def history_document(
    name: str, container: RegisteredContainer, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """Every version with its provenance (content left out), and the events."""
    from reconciler.core.governance.evidence import origins, provenance

    found = origins(events)
    versions = [
        dict(version_document(v, container), provenance=provenance(v, found.get(v.version)))
        for v in container.versions
    ]
    return {
        "name": name,
        "archived": container.archived,
        "versions": [{k: v for k, v in d.items() if k != "content"} for d in versions],
        "events": events,
    }
