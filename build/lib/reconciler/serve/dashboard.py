"""The dashboard: server-rendered pages of the status and environment documents (see
status.py). Inline style, no scripts, no external assets; a page refreshes itself with a
meta tag. Pure: document in, HTML out; every value escaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from reconciler.render.html import _STYLE, _fields, _item
from reconciler.render.packages import package_lines, shown_fields

REFRESH_SECONDS = 30
_EXTRA_STYLE = """
body{max-width:90rem;padding:0 1.5rem}
.badge{display:inline-block;padding:0 .5rem;border-radius:.8rem;color:#fff;
font-size:12px}.pending{background:#0969da}.unmanaged{background:#6e7781}
.failing,.error,.failed{background:#9a6700}.applied,.succeeded{background:#1f883d}
.starting,.not_built,.queued,.building{background:#8250df}.cards{display:flex;gap:1rem;
flex-wrap:wrap}.card{border:1px solid #d0d7de;border-radius:.4rem;padding:.5rem 1rem;min-width:8rem}
.card b{display:block;font-size:1.4rem}nav a{margin-right:1rem}
"""
_VERDICT_TEXT = {
    "in_sync": "in sync",
    "drift": "drift",
    "failing": "failing",
    "starting": "starting",
}


def _badge(value: str | None, text: str | None = None) -> str:
    if not value:
        return "<span class=muted>-</span>"
    return f"<span class='badge {escape(value)}'>{escape(text or value.replace('_', ' '))}</span>"


def _code(value: Any) -> str:
    return (
        "<span class=muted>-</span>"
        if value in (None, "")
        else f"<code>{escape(str(value))}</code>"
    )


def _page(title: str, body: str, refresh: bool = True) -> str:
    meta = f"<meta http-equiv=refresh content={REFRESH_SECONDS}>" if refresh else ""
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'>{meta}"
        f"<title>{escape(title)}</title><style>{_STYLE}{_EXTRA_STYLE}</style></head><body>"
        "<nav><a href='/'>Dashboard</a><a href='/api/status'>JSON</a>"
        "<a href='/metrics'>Metrics</a></nav>"
        f"{body}</body></html>\n"
    )


def verdict(document: Mapping[str, Any]) -> str:
    health = document["health"]
    if not health["cycles"]:
        return "starting"
    if health["consecutive_failures"]:
        return "failing"
    s = document["summary"]
    return "drift" if s["drift"] or s["pending"] else "in_sync"


def _environment_row(row: Mapping[str, Any]) -> str:
    name = str(row["name"])
    classes = "".join(
        f"<span class='tag{' drift' if c not in ('finding', 'unmanaged') else ''}'>"
        f"{escape(c)}</span>"
        for c in row["classes"]
    )
    return (
        f"<tr id='env-{escape(name)}' data-state='{escape(row['state'])}'>"
        f"<td><a href='/environments/{quote(name, safe='')}'>{escape(name)}</a></td>"
        f"<td>{_badge(row['state'])}</td><td>{_code(row['latest_version'])}</td>"
        f"<td>{_badge(row['build'])}</td><td>{classes or '<span class=muted>-</span>'}</td>"
        f"<td>{_code(row['source_path'])}</td></tr>"
    )


def _run_row(run: Mapping[str, Any]) -> str:
    counts = run["counts"]
    what = []
    if counts["applied"]:
        what.append(f"{counts['applied']} applied")
    if counts["failed"]:
        what.append(f"{counts['failed']} failed")
    if counts.get("drift"):
        what.append(f"drift in {counts['drift']}")
    if run.get("error"):
        what.append(str(run["error"]))
    return (
        f"<tr data-result='{escape(run['result'])}'><td>{run['number']}</td>"
        f"<td>{escape(run['started_at'])}</td><td>{escape(run['trigger'])}</td>"
        f"<td>{_badge(run['result'])}</td><td>{run['duration_ms']:.0f} ms</td>"
        f"<td>{escape('; '.join(what))}</td></tr>"
    )


def _card(label: str, value: Any, key: str) -> str:
    return f"<div class=card id='count-{key}'><b>{escape(str(value))}</b>{escape(label)}</div>"


def format_dashboard(document: Mapping[str, Any]) -> str:
    state = verdict(document)
    health, service, s = document["health"], document["service"], document["summary"]
    ordered = sorted(
        document["environments"],
        key=lambda r: ({"drift": 0, "pending": 1, "unmanaged": 2}.get(r["state"], 3), r["name"]),
    )
    rows = "".join(_environment_row(r) for r in ordered)
    runs = "".join(_run_row(r) for r in document["runs"])
    notes = "".join(
        f"<li>{escape(n['event'])} to <code>{escape(n['target'])}</code>: "
        f"{'sent' if n['ok'] else escape(n.get('error') or 'failed')}</li>"
        for n in document["notifications"]
    )
    source = document["source"]
    body = (
        f"<h1>Environments <span class='verdict {escape(state)}' id=verdict>"
        f"{escape(_VERDICT_TEXT[state])}</span></h1>"
        f"<p id=health>{'ready' if health['ready'] else 'not ready'} · "
        f"{health['cycles']} cycle(s) · {health['consecutive_failures']} consecutive failure(s)"
        f" · last success {_code(health.get('last_success_at'))} · next run "
        f"{_code(health.get('next_run_at'))}</p>"
        f"<p class=muted>Registry <code>{escape(str(service.get('registry')))}</code>, git "
        f"{_code(source.get('label'))} at {_code((source.get('commit') or '')[:12])}, "
        f"branch {_code(service.get('branch'))}, every {_code(service.get('interval'))}.</p>"
        "<div class=cards id=summary>"
        + _card("environments", s["environments"], "environments")
        + _card("in sync", s["in_sync"], "in_sync")
        + _card("pending", s["pending"], "pending")
        + _card("drift", s["drift"], "drift")
        + _card("unmanaged", s["unmanaged"], "unmanaged")
        + _card("builds failed", s["builds_failed"], "builds_failed")
        + "</div><h2>Environments</h2>"
        "<table id=environments><tr><th>name</th><th>state</th><th>latest</th><th>build</th>"
        f"<th>drift</th><th>source</th></tr>{rows}</table>"
        + ("" if rows else "<p class=muted>No environments yet.</p>")
        + "<h2>Last runs</h2><table id=runs><tr><th>#</th><th>started</th><th>trigger</th>"
        f"<th>result</th><th>took</th><th>what</th></tr>{runs}</table>"
        + (f"<h2>Notifications</h2><ul id=notifications>{notes}</ul>" if notes else "")
    )
    return _page(f"reconciler: {_VERDICT_TEXT[state]}", body)


def _version_rows(versions: Sequence[Mapping[str, Any]]) -> str:
    return "".join(
        f"<tr id='version-{escape(v['version'])}'><td>{_code(v['version'])}</td>"
        f"<td>{escape(v['created_at'] or '')}</td>"
        f"<td>{'archived' if v['archived'] else 'active'}</td>"
        f"<td>{_code((v.get('commit') or '')[:12])}</td><td>{_code(v.get('path'))}</td>"
        f"<td>{_badge(v.get('build'))}</td><td>{escape(v.get('description') or '')}</td></tr>"
        for v in versions
    )


def _diff(diff: Mapping[str, Any]) -> str:
    head = f"<h3>{escape(diff['from'])} → {escape(diff['to'])}</h3>"
    if not diff["fields"]:
        return f"<section class=diff>{head}<p class=muted>no difference</p></section>"
    packages = "".join(f"<li><code>{escape(line)}</code></li>" for line in package_lines(diff))
    return (
        f"<section class=diff data-from='{escape(diff['from'])}' data-to='{escape(diff['to'])}'>"
        f"{head}{_fields(shown_fields(diff))}"
        + (f"<ul class=packages>{packages}</ul>" if packages else "")
        + "</section>"
    )


def format_environment(document: Mapping[str, Any]) -> str:
    name = str(document["name"])
    row = document.get("row") or {}
    drift = "".join(_item(i) for i in document["drift"])
    findings = "".join(_item(i) for i in document["findings"])
    events = "".join(
        f"<li><code>{escape(e.get('at') or '')}</code> {escape(str(e.get('version') or '-'))} "
        f"{escape(str(e.get('action')))}</li>"
        for e in reversed(document["events"])
    )
    diffs = "".join(_diff(d) for d in document["diffs"])
    body = (
        f"<h1 id=name>{escape(name)} {_badge(document.get('state'))}</h1>"
        f"<p class=muted>latest {_code(row.get('latest_version'))} · build "
        f"{_badge(row.get('build'))} · source {_code(row.get('source_path'))}</p>"
        + ("" if document["registered"] else "<p>Not in the registry.</p>")
        + "<h2>Drift</h2>"
        + (f"<ul id=drift>{drift}</ul>" if drift else "<p id=drift class=muted>none</p>")
        + "<h2>Findings</h2>"
        + (f"<ul id=findings>{findings}</ul>" if findings else "<p class=muted>none</p>")
        + "<h2>Versions</h2><table id=versions><tr><th>version</th><th>created</th>"
        "<th>state</th><th>commit</th><th>source</th><th>build</th><th>description</th></tr>"
        f"{_version_rows(document['versions'])}</table>"
        + "<h2>Changes between versions</h2>"
        + (f"<div id=diffs>{diffs}</div>" if diffs else "<p class=muted>one version only</p>")
        + (f"<h2>History</h2><ul id=events>{events}</ul>" if events else "")
    )
    return _page(f"{name}: reconciler", body, refresh=False)
