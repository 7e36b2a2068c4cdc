"""The promotion matrix and the several-target documents as text, Markdown and HTML.
Pure functions from documents to strings."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from reconciler.render.markdown import GITHUB_LIMIT, MARKER, PLAN_MARKER, code, text
from reconciler.render.text import format_table

_STATE_TEXT = {
    "in_sync": "in sync",
    "pending": "pending",
    "deferred": "deferred",
    "drift": "drift",
    "build_failed": "build failed",
    "not_in_target": "not in this target",
    "unknown": "unknown",
}


def cell_text(cell: Mapping[str, Any]) -> str:
    """One cell: the version the target holds, its state and why."""
    version = f"{cell['version']} " if cell.get("version") else ""
    state = _STATE_TEXT.get(cell["state"], cell["state"])
    if cell["state"] == "not_in_target" and not version:
        return "-"
    detail = f" ({cell['detail']})" if cell.get("detail") else ""
    return f"{version}{state}{detail}"


def _rows(document: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    names = [t["name"] for t in document["targets"]]
    rows = [
        [env["name"], *(cell_text(env["targets"][name]) for name in names)]
        for env in document["environments"]
    ]
    return ["ENVIRONMENT", *names], rows


def _verdict(document: Mapping[str, Any]) -> str:
    counts: dict[str, int] = {}
    for target in document["targets"]:
        for state, count in target["counts"].items():
            counts[state] = counts.get(state, 0) + count
    shown = ", ".join(
        f"{counts[s]} {_STATE_TEXT[s]}" for s in _STATE_TEXT if counts.get(s) and s != "in_sync"
    )
    if document["in_sync"]:
        return "in sync"
    return f"not in sync: {shown}"


def format_status(document: Mapping[str, Any], rich: bool = False) -> str:
    """`reconciler status`: the matrix as a table (a rich table in a terminal)."""
    headers, rows = _rows(document)
    verdict = (
        f"Status: {_verdict(document)}. {len(document['environments'])} environment(s), "
        f"{len(document['targets'])} target(s)."
    )
    if not rows:
        return "No environments.\n" + verdict
    if not rich:
        return format_table(headers, rows) + "\n\n" + verdict
    from rich.console import Console
    from rich.table import Table

    colors = {"in_sync": "green", "pending": "yellow", "deferred": "cyan", "drift": "red"}
    colors |= {"build_failed": "red", "unknown": "magenta", "not_in_target": "dim"}
    table = Table(*headers, title="Promotion status")
    names = headers[1:]
    for env in document["environments"]:
        cells = [
            f"[{colors.get(env['targets'][n]['state'], 'white')}]"
            f"{escape_rich(cell_text(env['targets'][n]))}[/]"
            for n in names
        ]
        table.add_row(env["name"], *cells)
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=160).print(table)
    return out.getvalue().rstrip("\n") + "\n\n" + verdict


def escape_rich(value: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(value)


def status_markdown(document: Mapping[str, Any]) -> list[str]:
    headers, rows = _rows(document)
    lines = [f"### Promotion status: {text(_verdict(document))}", ""]
    if not rows:
        return [*lines, "No environments.", ""]
    lines.append("| " + " | ".join(text(h.lower()) for h in headers) + " |")
    lines.append("|" + "---|" * len(headers))
    for row in rows:
        lines.append("| " + " | ".join(text(c) for c in row) + " |")
    return [*lines, ""]


def status_html(document: Mapping[str, Any]) -> str:
    headers, _ = _rows(document)
    names = headers[1:]
    head = "".join(f"<th>{escape(h.lower())}</th>" for h in headers)
    body = "".join(
        f"<tr><td>{escape(env['name'])}</td>"
        + "".join(
            f"<td class='{escape(env['targets'][n]['state'])}'>"
            f"{escape(cell_text(env['targets'][n]))}</td>"
            for n in names
        )
        + "</tr>"
        for env in document["environments"]
    )
    return (
        f"<h2>Promotion status: {escape(_verdict(document))}</h2>"
        f"<table id=status><tr>{head}</tr>{body}</table>"
    )


# -- the drift report over several targets ----------------------------------------------------


def _url(section: Mapping[str, Any]) -> str:
    registry = section["registry"]
    return str(registry["url"] if isinstance(registry, Mapping) else registry)


def format_targets_markdown(document: Mapping[str, Any], limit: int = GITHUB_LIMIT) -> str:
    """The drift report of several targets: the promotion matrix, then each target's
    report (each cut to its share of the comment size limit)."""
    from reconciler.render.markdown import format_markdown

    sections = document["targets"]
    share = limit // (len(sections) + 1)
    lines = [MARKER, f"## Environment drift report: {len(sections)} target(s)", ""]
    lines += status_markdown(document["status"])
    for section in sections:
        lines += [f"## Target {text(section['target'])} ({code(_url(section))})", ""]
        if "error" in section:
            lines += [f"**Error:** {text(section['error'])}", ""]
            continue
        report = format_markdown(section, share).replace(MARKER + "\n", "")
        lines += [report.replace("\n## ", "\n### "), ""]
    return "\n".join(lines)


def _body(page: str) -> str:
    start, end = page.find("<body>"), page.rfind("</body>")
    return page[start + len("<body>") : end] if start >= 0 and end >= 0 else page


def format_targets_html(document: Mapping[str, Any]) -> str:
    from reconciler.render.html import _STYLE, format_html

    parts = []
    for section in document["targets"]:
        heading = (
            f"<h1>Target {escape(section['target'])} <code>{escape(_url(section))}</code></h1>"
        )
        if "error" in section:
            parts.append(
                f"<section>{heading}<p class=error>{escape(section['error'])}</p></section>"
            )
            continue
        body = _body(format_html(section)).replace("<h1>", "<h2>").replace("</h1>", "</h2>")
        parts.append(f"<section id='target-{escape(section['target'])}'>{heading}{body}</section>")
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>Environment drift report: {len(document['targets'])} targets</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Environment drift report</h1>{status_html(document['status'])}"
        + "".join(parts)
        + "</body></html>\n"
    )


# -- the pull request comment over several targets --------------------------------------------


def format_targets_plan_markdown(
    sections: Sequence[Mapping[str, Any]],
    landing: Mapping[str, Mapping[str, str]],
    limit: int = GITHUB_LIMIT,
) -> str:
    """A pull request comment for several targets: where each changed environment lands
    on merge and what waits (``landing``, per environment and target), then each target's
    plan."""
    from reconciler.render.markdown import format_plan_markdown

    names = [s["target"] for s in sections]
    lines = [PLAN_MARKER, f"## Environment plan: {len(sections)} target(s)", ""]
    if landing:
        lines += ["### On merge", ""]
        lines.append("| environment | " + " | ".join(text(n) for n in names) + " |")
        lines.append("|" + "---|" * (len(names) + 1))
        for env, row in landing.items():
            lines.append(
                f"| {text(env)} | " + " | ".join(text(row.get(n, "-")) for n in names) + " |"
            )
        lines.append("")
    else:
        lines += ["No environment changes in this pull request.", ""]
    share = limit // (len(sections) + 1)
    for section in sections:
        lines += [f"## Target {text(section['target'])} ({code(_url(section))})", ""]
        if "error" in section:
            lines += [f"**Error:** {text(section['error'])}", ""]
            continue
        plan = format_plan_markdown(section, share).replace(PLAN_MARKER + "\n", "")
        lines += [plan.replace("\n## ", "\n### ", 1).removeprefix("## "), ""]
    return "\n".join(lines)


def format_promotions_markdown(section: Mapping[str, Any]) -> str:
    """Evidence: every version of a target promoted from the one before it."""
    rows = section.get("promotions") or []
    if not rows:
        return ""
    lines = ["", f"## Promotions into {text(section['target'])}", ""]
    lines.append("| version | promoted from | registered there | at commit | promoted here |")
    lines.append("|---|---|---|---|---|")
    for row in rows:
        origin = row["from"]
        lines.append(
            f"| {text(row['name'])}:{text(row['version'])} "
            f"| {text(origin['target'])}:{text(origin['name'])}:{text(origin['version'])} "
            f"| {text(origin['registered_at'] or 'unknown')} "
            f"| {code((origin['commit'] or 'unknown')[:12])} "
            f"| {text(row['promoted_at'] or 'unknown')} |"
        )
    return "\n".join(lines) + "\n"
