"""The documents `serve` answers with: the service status (``GET /api/status``, schema
``reconciler/schemas/serve-status.schema.json``) and one environment's page
(``GET /api/environments/NAME``). Pure: built from the drift report document, build
records, registered versions and the runs kept in memory; the dashboard renders them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from reconciler.core.build.jobs import BuildRecord
from reconciler.core.governance.version_diff import Side, compare
from reconciler.core.spec.model import RegisteredContainer, RegisteredVersion
from reconciler.core.spec.secrets import mask

STATUS_FORMAT_VERSION = 1


def environment_state(env: Mapping[str, Any]) -> str:
    """in_sync, pending (git is ahead and nothing else is wrong), drift or unmanaged."""
    status = str(env["status"])
    if status in ("in_sync", "unmanaged"):
        return status
    classes = set(env.get("classes") or ())
    if classes and classes <= {"pending"}:
        return "pending"
    return "drift"


def environment_rows(
    drift: Mapping[str, Any] | None, builds: Mapping[tuple[str, str], BuildRecord]
) -> list[dict[str, Any]]:
    rows = []
    for env in (drift or {}).get("environments", ()):
        latest = env.get("latest_version")
        record = builds.get((env["name"], latest)) if latest is not None else None
        items = env.get("items") or ()
        rows.append(
            {
                "name": env["name"],
                "state": environment_state(env),
                "classes": list(env.get("classes") or ()),
                "latest_version": latest,
                "build": record.status.value if record is not None else None,
                "image": record.image if record is not None else None,
                "in_git": env.get("in_git"),
                "managed": env.get("managed"),
                "archived": env.get("archived"),
                "source_path": env.get("source_path"),
                "drift_items": sum(1 for i in items if i["class"] != "finding"),
                "findings": sum(1 for i in items if i["class"] == "finding"),
            }
        )
    return rows


def summary(rows: Sequence[Mapping[str, Any]], drift: Mapping[str, Any] | None) -> dict[str, Any]:
    states = Counter(str(r["state"]) for r in rows)
    by_class = dict((drift or {}).get("summary", {}).get("by_class", {}))
    return {
        "environments": len(rows),
        "in_sync": states.get("in_sync", 0),
        "pending": states.get("pending", 0),
        "drift": states.get("drift", 0),
        "unmanaged": states.get("unmanaged", 0),
        "drift_items": by_class,
        "builds_failed": sum(1 for r in rows if r["build"] == "failed"),
    }


def status_document(
    *,
    generated_at: str,
    service: Mapping[str, Any],
    health: Mapping[str, Any],
    drift: Mapping[str, Any] | None,
    rows: Sequence[Mapping[str, Any]],
    runs: Sequence[Mapping[str, Any]],
    notifications: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    source = (drift or {}).get("source") or {}
    return {
        "format_version": STATUS_FORMAT_VERSION,
        "kind": "serve-status",
        "generated_at": generated_at,
        "service": dict(service),
        "health": dict(health),
        "source": {"label": source.get("label"), "commit": source.get("commit")},
        "drift_report_at": (drift or {}).get("generated_at"),
        "summary": summary(rows, drift),
        "runs": list(runs),
        "environments": list(rows),
        "notifications": list(notifications),
    }


def _side(version: RegisteredVersion) -> Side:
    return Side(
        f"{version.name}:{version.version}",
        version.name,
        version.version,
        version.content or {},
        version.effective_digest,
        version.description,
        version.tags,
        "registry",
    )


def version_diffs(container: RegisteredContainer) -> list[dict[str, Any]]:
    """Each version against the one created before it, newest first."""
    out = []
    versions = [v for v in container.versions if v.content is not None]
    for before, after in pairwise(versions):
        document = compare(_side(before), _side(after), {})
        entry = {
            "from": before.version,
            "to": after.version,
            "same_content": document["same_content"],
            "fields": mask(document["fields"]),
        }
        for key in ("packages", "channels", "requirements_unread"):
            if key in document:
                entry[key] = mask(document[key])
        out.append(entry)
    out.reverse()
    return out


def environment_document(
    name: str,
    row: Mapping[str, Any] | None,
    drift_env: Mapping[str, Any] | None,
    container: RegisteredContainer | None,
    events: Sequence[Mapping[str, Any]],
    builds: Mapping[tuple[str, str], BuildRecord],
) -> dict[str, Any]:
    versions = []
    if container is not None:
        for v in reversed(container.versions):
            record = builds.get((name, v.version))
            versions.append(
                {
                    "version": v.version,
                    "created_at": v.created_at,
                    "archived": v.archived or container.archived,
                    "digest": v.effective_digest,
                    "commit": v.source_commit,
                    "path": v.source_path,
                    "managed": v.managed,
                    "description": mask(v.description),
                    "build": record.status.value if record is not None else None,
                }
            )
    items = list((drift_env or {}).get("items") or ())
    return {
        "format_version": STATUS_FORMAT_VERSION,
        "kind": "serve-environment",
        "name": name,
        "state": (row or {}).get("state"),
        "row": dict(row) if row is not None else None,
        "registered": container is not None,
        "versions": versions,
        "diffs": version_diffs(container) if container is not None else [],
        "drift": [i for i in items if i["class"] != "finding"],
        "findings": [i for i in items if i["class"] == "finding"],
        "events": [dict(e) for e in events][-50:],
    }
