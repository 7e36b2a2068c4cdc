"""The plan as a JSON document (``format_version`` 1): the contract CI and renderers read.

Renderers take this document, not the Plan object, so a cached plan can be shown without
planning again. A JSON Schema for it ships in ``reconciler/schemas/plan.schema.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.core.desired.types import DesiredEnvironment, DesiredState
from reconciler.core.plan.types import PLAN_FORMAT_VERSION, Change, Plan


def change_document(change: Change, predictions: Mapping[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": change.name,
        "action": change.action.value,
        "reason": change.why,
        "version": change.version,
        "previous_version": change.previous_version,
        "source_path": change.source_path,
        "fields": [f.to_dict() for f in change.fields],
    }
    if change.packages is not None:
        from reconciler.core.governance.package_diff import diff_document

        doc.update(diff_document(change.packages))
    if change.deferred is not None:
        doc["deferred"] = change.deferred
    if change.write is not None:
        doc["digest"] = change.write.digest
        if predictions and change.write.digest in predictions:
            doc["build"] = predictions[change.write.digest]
    return doc


def plan_document(
    plan: Plan,
    registry_url: str,
    selection_path: str,
    predictions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``predictions``: per content digest, `cache hit` or `will build` (see builds)."""
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "kind": "plan",
        "source": {"label": plan.source, "commit": plan.commit, "path": selection_path},
        "registry": {"url": registry_url, "state_token": plan.registry_token},
        "summary": dict(plan.summary),
        "has_changes": plan.has_changes,
        "has_errors": plan.has_errors,
        "changes": [change_document(c, predictions) for c in plan.changes],
        "drift": [change_document(c) for c in plan.drift],
        "in_sync": [{"name": c.name, "version": c.version} for c in plan.noops],
        "diagnostics": [d.to_dict() for d in plan.diagnostics],
    }


def _key(change: Change) -> tuple[str, str, str | None, str | None]:
    digest = change.write.digest if change.write is not None else None
    return (change.name, change.action.value, change.version, digest)


def _identity(env: DesiredEnvironment) -> tuple[Any, ...]:
    return (env.digest, env.description, dict(env.tags), env.source_path, env.version)


def _touched(head: DesiredState, base: DesiredState) -> list[str]:
    """Environments the pull request adds, removes or edits."""
    names = set(head.environments) | set(base.environments)
    out = []
    for name in sorted(names):
        a, b = base.environments.get(name), head.environments.get(name)
        if a is None or b is None or _identity(a) != _identity(b):
            out.append(name)
    return out


def pull_request_document(
    head_plan: Plan,
    base_plan: Plan,
    head: DesiredState,
    base: DesiredState,
    registry_url: str,
    selection_path: str,
    refs: tuple[str, str],
    predictions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The plan of the head commit, with what this pull request itself introduces marked
    (a change base's tree would make too is already pending, not this PR's doing)."""
    from reconciler.core.governance.findings import environment_findings

    document = plan_document(head_plan, registry_url, selection_path, predictions)
    pending_on_base = {_key(c) for c in base_plan.changes}
    for raw, change in zip(document["changes"], head_plan.changes, strict=True):
        raw["introduced"] = _key(change) not in pending_on_base
    touched = _touched(head, base)
    findings: list[dict[str, Any]] = []
    for name in touched:
        env = head.environments.get(name)
        if env is not None:
            findings.extend(dict(f.to_dict(), name=name) for f in environment_findings(env))
    from reconciler.core.governance.documents import pull_request_consumers

    created = {
        c.name: c.version
        for c in head_plan.changes
        if c.action.value in ("create", "new_version") and c.version is not None
    }
    previous = {c.name: c.previous_version for c in head_plan.changes}
    document["pull_request"] = {
        "base": {"ref": refs[0], "commit": base.commit},
        "head": {"ref": refs[1], "commit": head.commit},
        "environments_changed": touched,
        "findings": findings,
        "consumers": pull_request_consumers(head.consumers, touched, created, previous),
    }
    return document
