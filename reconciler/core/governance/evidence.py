"""Audit evidence: an inventory of every environment and version in the registry, with who
owns it, where it came from, what image it is and whether it is still in use. Pure: the
registry state, build records and write history are given. JSON Schema:
``reconciler/schemas/evidence.schema.json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from reconciler.core.build.jobs import BuildRecord
from reconciler.core.desired.consumers import ConsumerIndex
from reconciler.core.governance.policy import Policy
from reconciler.core.spec.model import (
    STAMP_ARCHIVED,
    STAMP_OWNER,
    STAMP_SOURCE_COMMIT,
    STAMP_SOURCE_PATH,
    RegisteredContainer,
    RegisteredVersion,
    RegistryState,
)

EVIDENCE_FORMAT_VERSION = 1


def origins(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str | None]]:
    """Per version, the commit and file it was created from: the stamps of its `create`
    event. A later metadata update re-stamps the version with its own commit, so the
    version's current tags tell when it was last written, not where it came from."""
    out: dict[str, dict[str, str | None]] = {}
    for event in events:
        version = event.get("version")
        if event.get("action") != "create" or version is None or version in out:
            continue
        tags = (event.get("detail") or {}).get("tags") or {}
        out[str(version)] = {
            "commit": tags.get(STAMP_SOURCE_COMMIT),
            "path": tags.get(STAMP_SOURCE_PATH),
        }
    return out


def provenance(
    version: RegisteredVersion, origin: Mapping[str, str | None] | None
) -> dict[str, str | None]:
    """Where a version came from, and the commit that last wrote it (None: unmanaged)."""
    commit = origin.get("commit") if origin else None
    path = origin.get("path") if origin else None
    return {
        "commit": commit or version.source_commit,
        "path": path or version.source_path,
        "last_commit": version.source_commit,
    }


def _image_digest(record: BuildRecord | None) -> str | None:
    if record is None or not record.image or "@" not in record.image:
        return None
    return record.image.rsplit("@", 1)[1]


def _version(
    version: RegisteredVersion,
    container: RegisteredContainer,
    record: BuildRecord | None,
    origin: Mapping[str, str | None] | None,
) -> dict[str, Any]:
    built = record is not None and record.digest == version.effective_digest
    return {
        "version": version.version,
        "digest": version.effective_digest,
        "created_at": version.created_at,
        "archived": version.archived or container.archived,
        "archived_by_reconciler": STAMP_ARCHIVED in version.tags,
        "managed": version.managed,
        "owner": version.tags.get("owner"),
        "team": version.tags.get("team"),
        "repository": version.tags.get(STAMP_OWNER),
        "provenance": provenance(version, origin),
        "build": {
            "status": record.status.value if built and record is not None else "no_record",
            "image": record.image if built and record is not None else None,
            "image_digest": _image_digest(record) if built else None,
            "ended_at": record.ended_at if built and record is not None else None,
        },
    }


def evidence_document(
    state: RegistryState,
    records: Mapping[tuple[str, str], BuildRecord],
    events: Mapping[str, Iterable[Mapping[str, Any]]],
    policy: Policy | None,
    today: date,
    registry_url: str,
    generated_at: str,
    consumers: ConsumerIndex | None = None,
) -> dict[str, Any]:
    """``consumers``: the repository's references, listed under each version they pin
    (and, for @latest, under the environment)."""
    environments: list[dict[str, Any]] = []
    uses: dict[tuple[str, str | None], list[str]] = {}
    for ref in consumers.references if consumers is not None else ():
        if ref.name is not None:
            uses.setdefault((ref.name, ref.version), []).append(ref.where)
    for name, container in sorted(state.containers.items()):
        found = origins(events.get(name, ()))
        newest = container.newest
        exceptions = policy.exceptions_for(name) if policy is not None else []
        environments.append(
            {
                "name": name,
                "archived": container.archived,
                "managed": container.managed,
                "source_path": container.owner_path(),
                "latest_version": newest.version if newest else None,
                "owner": newest.tags.get("owner") if newest else None,
                "team": newest.tags.get("team") if newest else None,
                "policy_exceptions": [e.to_dict(today) for e in exceptions],
                "versions": [
                    dict(
                        _version(
                            v, container, records.get((name, v.version)), found.get(v.version)
                        ),
                        consumers=uses.get((name, v.version), []),
                    )
                    for v in container.versions
                ],
                "latest_consumers": uses.get((name, None), []),
            }
        )
    versions = [v for e in environments for v in e["versions"]]
    statuses: dict[str, int] = {}
    for v in versions:
        statuses[v["build"]["status"]] = statuses.get(v["build"]["status"], 0) + 1
    granted = [x for e in environments for x in e["policy_exceptions"]]
    return {
        "format_version": EVIDENCE_FORMAT_VERSION,
        "kind": "evidence",
        "generated_at": generated_at,
        "as_of": today.isoformat(),
        "registry": {"url": registry_url, "state_token": state.token},
        "summary": {
            "environments": len(environments),
            "managed_environments": sum(1 for e in environments if e["managed"]),
            "archived_environments": sum(1 for e in environments if e["archived"]),
            "versions": len(versions),
            "archived_versions": sum(1 for v in versions if v["archived"]),
            "without_owner": sum(1 for e in environments if not e["owner"]),
            "builds": dict(sorted(statuses.items())),
            "exceptions_in_force": sum(1 for x in granted if x["in_force"]),
            "exceptions_expired": sum(1 for x in granted if not x["in_force"]),
        },
        "environments": environments,
    }
