"""The drift report as a JSON document (``format_version`` 1): what CI keeps and what the
Markdown and HTML renderers read. Its JSON Schema ships as
``reconciler/schemas/drift-report.schema.json``. Credentials are masked (see secrets.py).
"""

from __future__ import annotations

from typing import Any

from reconciler.core.drift.report import DRIFT_FORMAT_VERSION, DriftClass, DriftReport


def report_document(
    report: DriftReport,
    registry_url: str,
    selection_path: str,
    ref: str | None,
    generated_at: str,
) -> dict[str, Any]:
    plan = report.plan
    managed, total = report.coverage
    environments = report.environments
    by_class = {c.value: report.count(c) for c in DriftClass}
    return {
        "format_version": DRIFT_FORMAT_VERSION,
        "kind": "drift-report",
        "generated_at": generated_at,
        "source": {"ref": ref, "label": plan.source, "commit": plan.commit, "path": selection_path},
        "registry": {"url": registry_url, "state_token": plan.registry_token},
        "in_sync": not report.drift_found and not report.has_errors,
        "drift_found": report.drift_found,
        "has_errors": report.has_errors,
        "fail_on": sorted(c.value for c in report.fail_on),
        "builds_checked": report.builds_configured,
        "summary": {
            "environments": len(environments),
            "in_sync": sum(1 for e in environments if e.status == "in_sync"),
            "drift": sum(1 for e in environments if e.status == "drift"),
            "unmanaged": sum(1 for e in environments if e.status == "unmanaged"),
            "by_class": by_class,
            "unknown": sum(len(e.unknown) for e in environments),
        },
        "coverage": {
            "managed": managed,
            "total": total,
            "percent": round(100.0 * managed / total, 1) if total else 100.0,
        },
        "environments": [
            {
                "name": e.name,
                "status": e.status,
                "classes": [c.value for c in e.classes],
                "in_git": e.in_git,
                "managed": e.managed,
                "archived": e.archived,
                "source_path": e.source_path,
                "line": e.line,
                "latest_version": e.latest_version,
                "items": [i.to_dict() for i in e.items],
                "unknown": list(e.unknown),
                "consumers": report.consumers.get(e.name, []),
            }
            for e in environments
        ],
        "diagnostics": [d.to_dict() for d in plan.diagnostics],
    }
