"""The consumers of environments as JSON documents: `refs` (who uses what), the consumers
part of the drift report and of a pull request's plan. Pure: values in, documents out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from reconciler.core.desired.consumers import ConsumerIndex, Form, Reference
from reconciler.core.governance.pins import Scope, latest_versions

if TYPE_CHECKING:
    from reconciler.core.desired.types import DesiredState
    from reconciler.core.spec.model import RegistryState

REFS_FORMAT_VERSION = 1


def _short(ref: Reference) -> dict[str, Any]:
    return {
        "path": ref.path,
        "line": ref.line,
        "column": ref.column,
        "form": ref.form.value,
        "key_path": ref.key_path,
        "text": ref.text,
        "version": ref.version,
    }


def split_references(
    index: ConsumerIndex, desired: DesiredState, state: RegistryState | None, scope: Scope
) -> tuple[dict[str, list[Reference]], list[Reference], list[Reference], list[Reference]]:
    """(references by environment name, unknown, external, inline)."""
    by_name: dict[str, list[Reference]] = {}
    unknown: list[Reference] = []
    external: list[Reference] = []
    inline: list[Reference] = []
    for ref in index.references:
        if ref.form is Form.INLINE or ref.name is None:
            inline.append(ref)
            continue
        in_git = ref.name in desired.environments
        if not scope.ours(ref, in_git):
            external.append(ref)
            continue
        registered = state is not None and ref.name in state.containers
        if not in_git and not registered:
            unknown.append(ref)
            continue
        by_name.setdefault(ref.name, []).append(ref)
    return by_name, unknown, external, inline


def refs_document(
    index: ConsumerIndex,
    desired: DesiredState,
    state: RegistryState,
    created: Mapping[str, str],
    scope: Scope,
    registry_url: str,
    only: tuple[str, str | None] | None = None,
) -> dict[str, Any]:
    """Consumers per environment and version (``only``: one NAME, or NAME:VERSION)."""
    latest = latest_versions(desired, state, created)
    by_name, unknown, external, inline = split_references(index, desired, state, scope)
    names = set(desired.environments) | set(by_name)
    if only is not None:
        names = {only[0]}
        unknown = [r for r in unknown if r.name == only[0]]
        external = [r for r in external if r.name == only[0]]
    environments = []
    for name in sorted(names):
        refs = by_name.get(name, [])
        if only is not None and only[1] is not None:
            refs = [r for r in refs if r.version == only[1]]
        container = state.containers.get(name)
        versions: dict[str, list[Reference]] = {}
        floating: list[Reference] = []
        for ref in refs:
            if ref.version is None:
                floating.append(ref)
            else:
                versions.setdefault(ref.version, []).append(ref)
        rows = []
        for version in sorted(versions, key=_version_key):
            registered = container.get(version) if container is not None else None
            rows.append(
                {
                    "version": version,
                    "registered": registered is not None or created.get(name) == version,
                    "archived": bool(
                        registered is not None and (registered.archived or container.archived)  # type: ignore[union-attr]
                    ),
                    "latest": latest.get(name) == version,
                    "references": [_short(r) for r in versions[version]],
                }
            )
        environments.append(
            {
                "name": name,
                "in_git": name in desired.environments,
                "registered": container is not None,
                "latest": latest.get(name),
                "consumers": len(refs),
                "stale": sum(
                    len(v) for k, v in versions.items() if name in latest and k != latest[name]
                ),
                "versions": rows,
                "floating": [_short(r) for r in floating],
            }
        )
    return {
        "format_version": REFS_FORMAT_VERSION,
        "kind": "consumers",
        "source": {"label": desired.source, "commit": desired.commit},
        "registry": registry_url,
        "files_scanned": index.files,
        "environments": environments,
        "unknown": [dict(_short(r), name=r.name) for r in unknown],
        "external": [dict(_short(r), name=r.name, scope=r.scope) for r in external],
        "inline": [_short(r) for r in inline] if only is None else [],
        "unreadable": [
            {"path": u.path, "reason": u.reason, "line": u.line} for u in index.unreadable
        ],
    }


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


def consumers_by_version(
    index: ConsumerIndex | None, names: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    """name -> its consumers (`version` null for @latest), for the drift report."""
    wanted = set(names)
    out: dict[str, list[dict[str, Any]]] = {}
    if index is None:
        return out
    for ref in index.references:
        if ref.name in wanted:
            out.setdefault(ref.name, []).append(_short(ref))
    return out


def pull_request_consumers(
    index: ConsumerIndex | None,
    touched: Iterable[str],
    created: Mapping[str, str],
    previous: Mapping[str, str | None],
) -> list[dict[str, Any]]:
    """For each environment the pull request gives a new version: the pins that go stale
    on merge and the @latest consumers that pick the new version up on their next run."""
    if index is None:
        return []
    out = []
    for name in touched:
        new = created.get(name)
        if new is None:
            continue
        refs = index.of(name)
        stale = [r for r in refs if r.version is not None and r.version != new]
        floating = [r for r in refs if r.form.floating]
        if not refs:
            continue
        out.append(
            {
                "name": name,
                "new_version": new,
                "previous_version": previous.get(name),
                "stale": [_short(r) for r in stale],
                "floating": [_short(r) for r in floating],
            }
        )
    return out
