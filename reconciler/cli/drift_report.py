"""The drift report as drift, reconcile and serve write it: the classes that count, the
directory, and its three files."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.adapters.report_files import write_files
from reconciler.cli.base import CliError
from reconciler.engine import Engine
from reconciler.settings import Settings

if TYPE_CHECKING:
    from reconciler.core.drift.report import DriftClass


def fail_on_classes(args: Namespace) -> frozenset[DriftClass]:
    from reconciler.core.drift.report import DEFAULT_FAIL_ON, parse_classes

    try:
        return DEFAULT_FAIL_ON if args.fail_on is None else parse_classes(args.fail_on)
    except ValueError as exc:
        raise CliError(f"--fail-on: {exc}") from None


def report_dir_of(args: Namespace, settings: Settings) -> Path:
    given = getattr(args, "report_dir", None)
    return Path(given) if given else settings.repo / settings.report_dir


def write_drift_report(
    engine: Engine,
    settings: Settings,
    ref: str | None,
    report_dir: Path,
    fail_on: frozenset[DriftClass],
) -> tuple[dict[str, Any], list[Path]]:
    """Make the drift report and write its three files, each atomically."""
    from datetime import UTC, datetime

    from reconciler.documents.drift import report_document
    from reconciler.render.html import format_html
    from reconciler.render.markdown import format_markdown

    try:
        report = engine.drift(ref, fail_on)
    finally:
        engine.registry.close()
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    document = report_document(report, engine.registry.url, settings.path, ref, generated)
    files = {
        "drift-report.json": json.dumps(document, indent=2, ensure_ascii=False) + "\n",
        "drift-report.md": format_markdown(document),
        "drift-report.html": format_html(document),
    }
    return document, write_files(report_dir, files)
