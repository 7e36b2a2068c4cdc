"""The result of apply (and of build) as documents: what was applied, what failed and
why, the plan's drift and diagnostics, and the builds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler.documents.plan import change_document

if TYPE_CHECKING:
    from reconciler.core.build.jobs import BuildOutcome, BuildRecord
    from reconciler.core.plan.types import ApplyOutcome


def apply_document(outcome: ApplyOutcome) -> dict[str, Any]:
    """Applied and failed changes, drift, diagnostics, builds; and, where the promotion
    gate held some, the deferred ones."""
    plan = outcome.plan
    document: dict[str, Any] = {
        "applied": [change_document(c) for c in outcome.applied],
        "failed": [dict(change_document(c), error=e) for c, e in outcome.failed],
        "drift": [change_document(c) for c in plan.drift],
        "diagnostics": [d.to_dict() for d in plan.diagnostics],
        "builds": builds_document(outcome.builds),
    }
    if outcome.deferred:
        document["deferred"] = [change_document(c) for c in outcome.deferred]
    return document


def builds_document(outcome: BuildOutcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None

    def rows(records: list[BuildRecord]) -> list[dict[str, Any]]:
        return [
            {"name": r.name, "version": r.version, "digest": r.digest, **r.to_dict()}
            for r in records
        ]

    return {
        "built": rows(outcome.built),
        "cache_hits": rows(outcome.cache_hits),
        "failed": rows(outcome.failed),
        "waiting": rows(outcome.waiting),
        "not_built": rows(outcome.not_built),
        "unavailable": outcome.unavailable,
        "builds_run": outcome.builds_run,
    }
