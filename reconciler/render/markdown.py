"""The drift report as Markdown (a PR comment or `$GITHUB_STEP_SUMMARY`) and as GitHub
workflow annotations. Pure functions from the report document to text.

GitHub refuses comments and summaries over 65,536 characters, so the Markdown is cut to a
budget: environments with drift first, then findings; what was cut is said, with a pointer
to the JSON, which always has everything.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping
from typing import Any

from reconciler.render.packages import diff_lines, package_lines, shown_fields

GITHUB_LIMIT = 65_536
MARKER = "<!-- reconciler:drift-report -->"
_RESERVE = 1_500  # room kept for the closing lines that say what was cut

_CLASS_TITLES = {
    "pending": "pending (git changed, registry not yet)",
    "out_of_band": "out-of-band (registry changed outside git)",
    "missing": "missing (applied, gone from the registry)",
    "unmanaged": "unmanaged (no ownership stamp)",
    "build": "build (image missing, failed or never built)",
    "base_image_moved": "base image moved",
    "finding": "findings (unpinned packages, floating tags)",
}


def text(value: str) -> str:
    """Plain text safe inside Markdown tables and HTML-aware renderers."""
    return html.escape(value, quote=False).replace("|", "&#124;").replace("\n", " ")


def code(value: Any) -> str:
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(value) > 120:
        value = value[:117] + "..."
    return f"<code>{text(value)}</code>"


def _field(change: Mapping[str, Any]) -> str:
    path, kind = code(change["path"]), change["kind"]
    if kind == "added":
        line = f"{path}: + {code(change['after'])}"
    elif kind == "removed":
        line = f"{path}: - {code(change['before'])}"
    else:
        line = f"{path}: {code(change['before'])} → {code(change['after'])}"
    if change.get("masked") and change["before"] == change["after"]:
        line += " (a masked credential changed)"
    return line


def _where(item: Mapping[str, Any]) -> str:
    if not item.get("path"):
        return ""
    return code(f"{item['path']}:{item['line']}" if item.get("line") else item["path"])


def _environment(env: Mapping[str, Any]) -> str:
    drift = [i for i in env["items"] if i["class"] != "finding"]
    classes = ", ".join(c for c in env["classes"] if c != "finding")
    lines = [
        f"<details><summary><b>{text(env['name'])}</b> · {text(classes)}</summary>",
        "",
    ]
    if env.get("source_path"):
        lines.append(f"Source: {code(env['source_path'])}")
        lines.append("")
    for item in drift:
        target = f" {code(item['version'])}" if item.get("version") else ""
        action = f" → {code(item['action'])}" if item.get("action") else ""
        lines.append(f"- **{item['class']}**{target}: {text(item['reason'])}{action}")
        lines.extend(f"  - {_field(f)}" for f in shown_fields(item))
        lines.extend(f"  - {code(line)}" for line in package_lines(item, "→"))
    lines.extend(f"- unknown: {text(u)}" for u in env.get("unknown", ()))
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def _findings(document: Mapping[str, Any]) -> Iterator[str]:
    for env in document["environments"]:
        for item in env["items"]:
            if item["class"] == "finding":
                yield (
                    f"| {text(env['name'])} | {item['severity']} | {code(item['rule'])} | "
                    f"{_where(item)} | {text(item['reason'])} |"
                )


POLICY_LIMIT = 50  # policy rows shown; the JSON has all of them


def _policy(diagnostic: Mapping[str, Any]) -> bool:
    return str(diagnostic["rule"]).startswith("policy-")


def policy_section(diagnostics: list[Mapping[str, Any]]) -> list[str]:
    """Policy violations as a table (errors first), approved exceptions included."""
    rows = [d for d in diagnostics if _policy(d)]
    if not rows:
        return []
    order = {"error": 0, "warning": 1, "info": 2}
    rows.sort(key=lambda d: order.get(d["severity"], 3))
    lines = [
        "",
        "### Policy",
        "",
        "| severity | rule | where | violation |",
        "|---|---|---|---|",
    ]
    for d in rows[:POLICY_LIMIT]:
        where = f"{d['path']}:{d['line']}" if d.get("line") else d.get("path") or ""
        rule = str(d["rule"]).removeprefix("policy-")
        lines.append(f"| {d['severity']} | {code(rule)} | {code(where)} | {text(d['message'])} |")
    if len(rows) > POLICY_LIMIT:
        lines.append(f"| | | | … and {len(rows) - POLICY_LIMIT} more |")
    lines.append("")
    return lines


REFERENCE_LIMIT = 50  # reference findings shown; the JSON has all of them


def references_section(diagnostics: list[Mapping[str, Any]]) -> list[str]:
    """What consumers' references say (stale, unknown, archived, floating pins, inline
    environments, unreadable files), errors first."""
    rows = [d for d in diagnostics if str(d["rule"]).startswith("ref-")]
    if not rows:
        return []
    order = {"error": 0, "warning": 1, "info": 2}
    rows.sort(key=lambda d: (order.get(d["severity"], 3), d.get("path") or "", d.get("line") or 0))
    lines = [
        "",
        "### References to environments",
        "",
        "| severity | rule | where | finding |",
        "|---|---|---|---|",
    ]
    for d in rows[:REFERENCE_LIMIT]:
        where = f"{d['path']}:{d['line']}" if d.get("line") else d.get("path") or ""
        lines.append(
            f"| {d['severity']} | {code(d['rule'])} | {code(where)} | {text(d['message'])} |"
        )
    if len(rows) > REFERENCE_LIMIT:
        lines.append(f"| | | | … and {len(rows) - REFERENCE_LIMIT} more |")
    lines.append("")
    return lines


def _consumer_rows(refs: list[Mapping[str, Any]]) -> list[str]:
    return [
        f"  - {code(r['path'] + ':' + str(r['line']))} {code(r['text'])}"
        + (f" ({code(r['key_path'])})" if r.get("key_path") else "")
        for r in refs
    ]


def consumers_blocks(consumers: list[Mapping[str, Any]]) -> list[str]:
    """Per environment the pull request gives a new version: pins going stale on merge,
    and @latest consumers that pick the new version up."""
    blocks = []
    for entry in consumers:
        lines = [f"**{text(entry['name'])}** → {code(entry['new_version'])}", ""]
        if entry["stale"]:
            lines.append(
                f"- {len(entry['stale'])} pin(s) go stale on merge (`reconciler bump "
                f"{text(entry['name'])}` moves them):"
            )
            lines.extend(_consumer_rows(entry["stale"]))
        if entry["floating"]:
            lines.append(
                f"- {len(entry['floating'])} @latest consumer(s) pick up "
                f"{code(entry['name'] + ':' + entry['new_version'])} on their next run:"
            )
            lines.extend(_consumer_rows(entry["floating"]))
        blocks.append("\n".join(lines) + "\n\n")
    return blocks


def format_markdown(document: Mapping[str, Any], limit: int = GITHUB_LIMIT) -> str:
    summary, coverage, source = document["summary"], document["coverage"], document["source"]
    if document["has_errors"]:
        verdict = "errors in the environment files"
    elif document["drift_found"]:
        verdict = "drift found"
    else:
        verdict = "in sync"
    commit = (source.get("commit") or "")[:12]
    head = [
        MARKER,
        f"## Environment drift report: {verdict}",
        "",
        f"Git {code(source['path'])} at {code(source.get('ref') or source['label'])}"
        + (f" ({code(commit)})" if commit else "")
        + f" against {code(document['registry']['url'])}, {text(document['generated_at'])}.",
        "",
        f"**{summary['environments']}** environments: **{summary['in_sync']}** in sync, "
        f"**{summary['drift']}** with drift, **{summary['unmanaged']}** unmanaged. "
        f"Coverage: {coverage['managed']}/{coverage['total']} managed "
        f"({coverage['percent']}%).",
        "",
        "| class | environments | fails the check |",
        "|---|---:|:---:|",
    ]
    fail_on = set(document["fail_on"])
    for cls, count in summary["by_class"].items():
        head.append(
            f"| {_CLASS_TITLES.get(cls, cls)} | {count} | {'yes' if cls in fail_on else ''} |"
        )
    if not document["builds_checked"]:
        head += ["", "_Builds were not checked: no image registry configured._"]
    if summary["unknown"]:
        head += ["", f"_{summary['unknown']} check(s) could not be made (see `unknown`)._"]
    errors = [
        d
        for d in document["diagnostics"]
        if d["severity"] == "error" and not _policy(d) and not str(d["rule"]).startswith("ref-")
    ]
    head += policy_section(document["diagnostics"])
    head += references_section(document["diagnostics"])
    if errors:
        head += ["", "### Errors", ""]
        for d in errors[:50]:
            where = code(f"{d['path']}:{d['line']}" if d.get("line") else d.get("path") or "")
            head.append(f"- {where} {text(d['message'])} ({code(d['rule'])})")
        if len(errors) > 50:
            head.append(f"- … and {len(errors) - 50} more errors")
    body = "\n".join(head) + "\n"
    budget = limit - _RESERVE
    cut: list[str] = []

    drifting = [e for e in document["environments"] if e["status"] in ("drift",)]
    if drifting:
        body += "\n### Environments with drift\n\n"
        for index, env in enumerate(drifting):
            section = _environment(env)
            if len(body) + len(section) > budget:
                cut.append(f"{len(drifting) - index} more environments with drift")
                break
            body += section
    findings = list(_findings(document))
    if findings:
        header = (
            "\n### Findings\n\n| environment | severity | rule | where | finding |\n"
            "|---|---|---|---|---|\n"
        )
        if len(body) + len(header) < budget:
            body += header
            for index, row in enumerate(findings):
                if len(body) + len(row) + 1 > budget:
                    cut.append(f"{len(findings) - index} more findings")
                    break
                body += row + "\n"
        else:
            cut.append(f"{len(findings)} findings")
    if cut:
        body += (
            f"\n_Cut to fit {limit:,} characters: {', '.join(cut)} not shown. "
            "The full report is in `drift-report.json` (and `drift-report.html`)._\n"
        )
    return body


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def format_annotations(document: Mapping[str, Any]) -> list[str]:
    """`::warning file=...,line=...::` workflow commands for what is tied to a file."""
    out = []
    levels = {"warning": "warning", "info": "notice", "error": "error"}
    for d in document["diagnostics"]:
        if d.get("path") and d["severity"] in ("error", "warning"):
            props = f"file={_escape_property(d['path'])}"
            if d.get("line"):
                props += f",line={d['line']}"
            props += f",title={_escape_property(d['rule'])}"
            out.append(f"::{levels[d['severity']]} {props}::{_escape_data(d['message'])}")
    for env in document["environments"]:
        for item in env["items"]:
            if item["class"] != "finding" or not item.get("path"):
                continue
            props = f"file={_escape_property(item['path'])}"
            if item.get("line"):
                props += f",line={item['line']}"
            props += f",title={_escape_property(env['name'] + ': ' + item['rule'])}"
            level = levels.get(item.get("severity") or "", "notice")
            out.append(f"::{level} {props}::{_escape_data(item['reason'])}")
    return out


PLAN_MARKER = "<!-- reconciler:plan -->"
_SIGNS = {
    "create": "+",
    "new_version": "+",
    "update_metadata": "~",
    "restore": "~",
    "archive": "-",
    "noop": " ",
}


def _change_block(change: Mapping[str, Any]) -> str:
    target = change["name"] + (f":{change['version']}" if change.get("version") else "")
    if change["action"] == "new_version" and change.get("previous_version"):
        target += f" (from {change['previous_version']})"
    build = f" · image: {text(change['build'])}" if change.get("build") else ""
    if change.get("deferred"):
        build += f" · deferred: {text(change['deferred'])}"
    lines = [
        f"<details><summary><code>{_SIGNS.get(change['action'], '?')} {change['action']}"
        f"</code> <b>{text(target)}</b>{build}</summary>",
        "",
        text(change["reason"])
        + (f" ({code(change['source_path'])})" if change.get("source_path") else ""),
        "",
    ]
    lines.extend(f"- {_field(f)}" for f in shown_fields(change))
    packages = diff_lines(change)
    if packages:
        lines += ["Packages:", "", "```diff", *packages, "```"]
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def format_plan_markdown(document: Mapping[str, Any], limit: int = GITHUB_LIMIT) -> str:
    """A pull request comment for a plan: what merging does, per environment, with field
    diffs, image build predictions, findings and errors; under ``limit`` characters."""
    pr = document.get("pull_request") or {}
    changes = document["changes"]
    introduced = [c for c in changes if c.get("introduced", True)]
    pending = [c for c in changes if not c.get("introduced", True)]
    summary = document["summary"]
    if document["has_errors"]:
        title = "errors in the environment files"
    elif introduced:
        title = f"{len(introduced)} change(s) from this pull request"
    else:
        title = "no changes from this pull request"
    head_ref, base_ref = pr.get("head", {}), pr.get("base", {})
    lines = [PLAN_MARKER, f"## Environment plan: {title}", ""]
    if pr:
        lines.append(
            f"Merging {code(head_ref.get('ref'))} ({code((head_ref.get('commit') or '')[:12])}) "
            f"into {code(base_ref.get('ref'))} ({code((base_ref.get('commit') or '')[:12])}), "
            f"applied to {code(document['registry']['url'])}."
        )
    else:
        source = document["source"]
        lines.append(
            f"{code(source['label'])} ({code((source.get('commit') or '')[:12])}) "
            f"against {code(document['registry']['url'])}."
        )
    read = document["registry"].get("read") or {}
    if read.get("view") == "incremental":
        lines.append(
            f"Registry read incrementally: {read.get('read')} of {read.get('containers')} "
            "environment(s) changed since the last run were read (hand edits of tags show "
            "after a full read, `plan --refresh`)."
        )
    counts = ", ".join(
        f"{summary.get(a, 0)} {a.replace('_', ' ')}"
        for a in ("create", "new_version", "update_metadata", "restore", "archive")
    )
    lines += ["", f"**Plan:** {counts}; {summary.get('noop', 0)} in sync.", ""]
    errors = [
        d
        for d in document["diagnostics"]
        if d["severity"] == "error" and not _policy(d) and not str(d["rule"]).startswith("ref-")
    ]
    lines += policy_section(document["diagnostics"])
    if errors:
        lines += ["### Errors", ""]
        for d in errors[:50]:
            where = f"{d['path']}:{d['line']}" if d.get("line") else d.get("path") or ""
            lines.append(f"- {code(where)} {text(d['message'])} ({code(d['rule'])})")
        if len(errors) > 50:
            lines.append(f"- … and {len(errors) - 50} more")
        lines.append("")
    body = "\n".join(lines) + "\n"
    budget = limit - _RESERVE
    cut: list[str] = []

    def section(title: str, blocks: list[str], what: str) -> None:
        nonlocal body
        if not blocks:
            return
        body += f"\n### {title}\n\n"
        for index, block in enumerate(blocks):
            if len(body) + len(block) > budget:
                cut.append(f"{len(blocks) - index} {what}")
                return
            body += block

    heading = "Changes from this pull request" if pr else "Changes"
    section(heading, [_change_block(c) for c in introduced], "more changes")
    section(
        "Already pending on the base branch (not from this pull request)",
        [_change_block(c) for c in pending],
        "more pending changes",
    )
    section(
        "Drift in the registry (reported, not applied)",
        [_change_block(c) for c in document["drift"]],
        "more drift items",
    )
    section(
        "Consumers of the environments this pull request changes",
        consumers_blocks(pr.get("consumers") or []),
        "more environments with consumers",
    )
    findings = pr.get("findings") or []
    section(
        "Findings in the environments this pull request changes",
        [
            f"- {f['severity']} {code(f['rule'])} **{text(f['name'])}** "
            f"{code(f['path'] + (':' + str(f['line']) if f.get('line') else ''))}: "
            f"{text(f['message'])}\n"
            for f in findings
        ],
        "more findings",
    )
    if cut:
        body += (
            f"\n_Cut to fit {limit:,} characters: {', '.join(cut)} not shown. "
            "The full plan is in the JSON artifact (`plan.json`)._\n"
        )
    return body
