"""Human text for plans, diagnostics and registry listings. Formatting only: pure
functions from documents to strings; printing happens in the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.render.packages import package_lines, shown_fields

MARKERS = {
    "create": "+",
    "new_version": "+",
    "restore": "~",
    "update_metadata": "~",
    "archive": "-",
    "noop": " ",
}
_COLORS = {"+": "32", "~": "33", "-": "31", "!": "35", "error": "31", "warning": "33"}


class Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def paint(self, text: str, key: str) -> str:
        code = _COLORS.get(key)
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def format_field(change: Mapping[str, Any]) -> str:
    kind, path = change["kind"], change["path"]
    if kind == "added":
        return f"{path}: + {_value(change['after'])}"
    if kind == "removed":
        return f"{path}: - {_value(change['before'])}"
    text = f"{path}: {_value(change['before'])} -> {_value(change['after'])}"
    if change.get("masked") and change["before"] == change["after"]:
        text += " (a masked credential changed)"
    return text


def _target(change: Mapping[str, Any]) -> str:
    version = change.get("version")
    text = f"{change['name']}:{version}" if version else change["name"]
    previous = change.get("previous_version")
    if change["action"] == "new_version" and previous:
        text += f" (from {previous})"
    return text


def format_change(change: Mapping[str, Any], style: Style, marker: str | None = None) -> list[str]:
    mark = marker or MARKERS.get(change["action"], "?")
    action, target = change["action"], _target(change)
    head = f"  {style.paint(mark, mark)} {action:<15} {target:<36} {change['reason']}"
    if change.get("build"):
        head += f" [build: {change['build']}]"
    lines = [head.rstrip()]
    if change.get("deferred"):
        lines.append(f"        {style.paint('deferred', 'warning')}: {change['deferred']}")
    lines.extend(f"        {format_field(f)}" for f in shown_fields(change))
    lines.extend(f"        {line}" for line in package_lines(change))
    return lines


def format_diagnostic(d: Mapping[str, Any], style: Style) -> str:
    where = d.get("path") or ""
    if where and d.get("line"):
        where += f":{d['line']}"
    prefix = style.paint(d["severity"], d["severity"])
    location = f"{where}: " if where else ""
    return f"{prefix}: {location}{d['message']} [{d['rule']}]"


def format_diagnostics(diagnostics: Iterable[Mapping[str, Any]], style: Style) -> list[str]:
    return [format_diagnostic(d, style) for d in diagnostics]


def _summary(summary: Mapping[str, int]) -> str:
    return (
        f"{summary.get('create', 0)} to create, {summary.get('new_version', 0)} new version(s), "
        f"{summary.get('update_metadata', 0)} to update, {summary.get('restore', 0)} to restore, "
        f"{summary.get('archive', 0)} to archive; {summary.get('noop', 0)} in sync"
    ) + (f"; {summary['deferred']} deferred" if summary.get("deferred") else "")


def format_read(read: Mapping[str, Any] | None) -> list[str]:
    """How the registry was read, when the backend says (Azure ML)."""
    if not read:
        return []
    lines = []
    if read.get("view") == "incremental":
        lines.append(
            f"Registry read: incremental view ({read['read']} of {read['containers']} "
            "environment(s) changed since the last run were read; hand edits of a version's "
            "tags show after a full read: `plan --refresh`)"
        )
    if read.get("throttled"):
        lines.append(
            f"Registry throttled {read['throttled']} call(s): waited "
            f"{read['throttle_wait_s']:.1f}s in all"
        )
    return lines


def format_plan(doc: Mapping[str, Any], style: Style) -> str:
    source = doc["source"]
    commit = (source.get("commit") or "no commit")[:12]
    lines = [
        f"Plan: {source['label']} ({commit}), path {source['path']!r} -> {doc['registry']['url']}"
    ]
    lines.extend(format_read(doc["registry"].get("read")))
    if doc["changes"]:
        lines.append("")
        for change in doc["changes"]:
            lines.extend(format_change(change, style))
    if doc["drift"]:
        lines.append("")
        lines.append("Drift: changed in the registry outside git (reported, not applied):")
        for change in doc["drift"]:
            lines.extend(format_change(change, style, "!"))
    if doc["diagnostics"]:
        lines.append("")
        lines.extend(format_diagnostics(doc["diagnostics"], style))
    lines.append("")
    if doc["has_errors"]:
        lines.append("Plan has errors: apply will refuse until they are fixed.")
    if doc["changes"]:
        lines.append("Changes: " + _summary(doc["summary"]) + ".")
    else:
        lines.append(f"No changes. {doc['summary'].get('noop', 0)} environment(s) in sync.")
    return "\n".join(lines)


def format_apply(
    applied: Sequence[Mapping[str, Any]],
    failed: Sequence[tuple[Mapping[str, Any], str]],
    style: Style,
) -> str:
    lines = []
    for change in applied:
        lines.extend(format_change(change, style))
    for change, error in failed:
        lines.append(
            f"  {style.paint('!', 'error')} {change['action']:<15} {_target(change)}: {error}"
        )
    lines.append("")
    if failed:
        lines.append(
            f"Apply finished with errors: {len(applied)} change(s) applied, "
            f"{len(failed)} failed. Run apply again once the cause is fixed."
        )
    elif applied:
        lines.append(f"Apply complete: {len(applied)} change(s) applied.")
    else:
        lines.append("Nothing to do: the registry matches git.")
    return "\n".join(lines)


def format_builds(builds: Mapping[str, Any]) -> str:
    lines = []
    labels = (
        ("built", "built"),
        ("cache_hits", "cache hit"),
        ("failed", "FAILED"),
        ("waiting", "failed, waiting to retry"),
        ("not_built", "not built"),
    )
    for key, label in labels:
        if key == "not_built" and builds.get("unavailable"):
            continue  # one message below says why, for all of them
        for row in builds[key]:
            where = row.get("image") or row.get("message") or ""
            lines.append(f"  image {row['name']}:{row['version']}: {label} {where}".rstrip())
            if key == "failed" and row.get("log_tail"):
                lines.extend(f"      | {line}" for line in row["log_tail"].splitlines()[-10:])
                if row.get("log_path"):
                    lines.append(f"      full log: {row['log_path']}")
    if builds.get("unavailable"):
        lines.append(f"Builds skipped: {builds['unavailable']}")
    total = sum(len(builds[key]) for key, _ in labels)
    lines.append(
        f"Images: {len(builds['built'])} built, {len(builds['cache_hits'])} cache hit(s), "
        f"{len(builds['failed'])} failed, {len(builds['not_built'])} not built "
        f"({total} version(s) needed attention)."
    )
    return "\n".join(lines)


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    out = [line]
    for row in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(out)


def format_drift(document: Mapping[str, Any], style: Style) -> str:
    """A terminal summary of a drift report: verdict, counts, one line per drift item."""
    summary = document["summary"]
    lines = format_diagnostics(
        [d for d in document["diagnostics"] if d["severity"] != "info"], style
    )
    for env in document["environments"]:
        for item in env["items"]:
            if item["class"] in ("finding",):
                continue
            version = f":{item['version']}" if item.get("version") else ""
            mark = style.paint("!", "!") if env["status"] == "drift" else " "
            lines.append(
                f"  {mark} {item['class']:<17} {env['name'] + version:<36} {item['reason']}"
            )
            lines.extend(f"        {format_field(f)}" for f in shown_fields(item))
            lines.extend(f"        {line}" for line in package_lines(item))
    findings = summary["by_class"].get("finding", 0)
    coverage = document["coverage"]
    if document["has_errors"]:
        verdict = style.paint("errors in the environment files", "error")
    elif document["drift_found"]:
        verdict = style.paint("drift found", "error")
    else:
        verdict = "in sync"
    lines.append(
        f"Drift report: {verdict}. {summary['environments']} environment(s): "
        f"{summary['in_sync']} in sync, {summary['drift']} with drift, "
        f"{summary['unmanaged']} unmanaged; {findings} with findings; coverage "
        f"{coverage['managed']}/{coverage['total']} ({coverage['percent']}%)."
    )
    return "\n".join(lines)


def format_version_diff(document: Mapping[str, Any]) -> str:
    """`reconciler diff`: what changes from the left version to the right one."""
    left, right = document["left"], document["right"]
    lines = [f"--- {left['label']}  ({(left['digest'] or '')[:19]})"]
    lines.append(f"+++ {right['label']}  ({(right['digest'] or '')[:19]})")
    if document["identical"]:
        lines.append("Identical: same content, description and tags.")
        return "\n".join(lines)
    lines.extend(f"  {format_field(f)}" for f in shown_fields(document))
    packages = package_lines(document)
    if packages:
        lines.append("Packages:")
        lines.extend(f"  {line}" for line in packages)
    lines.append(
        "Same content (one image); only description or tags differ."
        if document["same_content"]
        else "Different content: a different image."
    )
    return "\n".join(lines)


def format_mapping(value: Mapping[str, Any], indent: int = 0) -> str:
    """A document as indented `key: value` lines (`show`)."""
    lines = []
    pad = "  " * indent
    for key, item in value.items():
        if isinstance(item, dict) and item:
            lines.append(f"{pad}{key}:")
            lines.append(format_mapping(item, indent + 1))
        else:
            shown = json.dumps(item, ensure_ascii=False) if not isinstance(item, str) else item
            lines.append(f"{pad}{key}: {shown}")
    return "\n".join(lines)


def _later(origin: Mapping[str, Any]) -> str:
    """The commit that last re-stamped a version (a metadata change), when not its own."""
    last = origin.get("last_commit")
    return last[:12] if last and last != origin.get("commit") else ""


LIST_HEADERS = ["NAME", "LATEST", "VERSIONS", "STATE", "OWNER", "SOURCE"]
HISTORY_HEADERS = ["VERSION", "CREATED", "STATE", "COMMIT", "SOURCE", "DIGEST", "LAST WRITTEN AT"]
EVENT_HEADERS = ["AT", "VERSION", "EVENT"]


def list_rows(document: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The `list` document as table rows (under LIST_HEADERS)."""
    return [
        [
            r["name"],
            str(r["latest_version"]),
            str(r["versions"]),
            "archived" if r["archived"] else "active",
            "managed" if r["managed"] else "unmanaged",
            r["source_path"] or "",
        ]
        for r in document
    ]


def history_rows(document: Mapping[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """The history document as table rows: versions (HISTORY_HEADERS), events (EVENT_HEADERS)."""
    versions = [
        [
            d["version"],
            d["created_at"][:19],
            "archived" if d["archived"] else "active",
            (d["provenance"]["commit"] or "-")[:12],
            d["provenance"]["path"] or "(not from git)",
            (d["digest"] or "")[7:19],
            _later(d["provenance"]),
        ]
        for d in document["versions"]
    ]
    events = [[e["at"][:19], e["version"] or "-", e["action"]] for e in document["events"]]
    return versions, events


def format_history(document: Mapping[str, Any]) -> str:
    """The history document: a table of versions, then one of events (if any)."""
    versions, events = history_rows(document)
    out = [format_table(HISTORY_HEADERS, versions)]
    if events:
        out += ["", format_table(EVENT_HEADERS, events)]
    return "\n".join(out)
