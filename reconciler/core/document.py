"""The plan as a JSON document (``format_version`` 1): the contract CI and renderers read.

Renderers take this document, not the Plan object, so a cached plan can be shown without
planning again. A JSON Schema for it ships in ``reconciler/schemas/plan.schema.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.core.plan import PLAN_FORMAT_VERSION, Change, Plan


def _change(change: Change, predictions: Mapping[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": change.name,
        "action": change.action.value,
        "reason": change.reason,
        "version": change.version,
        "previous_version": change.previous_version,
        "source_path": change.source_path,
        "fields": [f.to_dict() for f in change.fields],
    }
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
        "changes": [_change(c, predictions) for c in plan.changes],
        "drift": [_change(c) for c in plan.drift],
        "in_sync": [{"name": c.name, "version": c.version} for c in plan.noops],
        "diagnostics": [d.to_dict() for d in plan.diagnostics],
    }
