"""The drift report as one self-contained HTML page: inline style, no scripts, no external
assets, so it opens from a CI artifact as is. Pure: document in, text out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from reconciler.render.packages import package_lines, shown_fields

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#1f2328}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d0d7de;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}
code{font:12px ui-monospace,monospace;background:#f6f8fa;padding:0 .2rem;word-break:break-all}
.verdict{display:inline-block;padding:.2rem .6rem;border-radius:1rem;color:#fff}
.in_sync{background:#1a7f37}.drift{background:#cf222e}.errors{background:#9a6700}
.env{border:1px solid #d0d7de;border-radius:.4rem;padding:.5rem 1rem;margin:1rem 0}
.tag{display:inline-block;font-size:12px;padding:0 .4rem;border-radius:.6rem;background:#ddf4ff;
margin-right:.3rem}.tag.drift{background:#ffebe9;color:#1f2328}.muted{color:#656d76}
"""


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return f"<code>{escape(text)}</code>"


def _fields(fields: list[Mapping[str, Any]]) -> str:
    if not fields:
        return ""
    rows = "".join(
        f"<tr><td>{_value(f['path'])}</td><td>{escape(f['kind'])}</td>"
        f"<td>{_value(f['before'])}</td><td>{_value(f['after'])}"
        + (
            " <span class=muted>(a masked credential changed)</span>"
            if f.get("masked") and f["before"] == f["after"]
            else ""
        )
        + "</td></tr>"
        for f in fields
    )
    return (
        "<table class=fields><tr><th>field</th><th>change</th><th>before</th><th>after</th>"
        f"</tr>{rows}</table>"
    )


def _item(item: Mapping[str, Any]) -> str:
    bits = [f"<b>{escape(item['class'])}</b>"]
    if item.get("severity"):
        bits.append(f"[{escape(item['severity'])} {escape(item.get('rule') or '')}]")
    if item.get("version"):
        bits.append(f"version {_value(item['version'])}")
    bits.append(escape(item["reason"]))
    if item.get("action"):
        bits.append(f"→ {_value(item['action'])}")
    if item.get("path"):
        where = item["path"] + (f":{item['line']}" if item.get("line") else "")
        bits.append(f"<span class=muted>{escape(where)}</span>")
    packages = "".join(f"<li><code>{escape(line)}</code></li>" for line in package_lines(item))
    if packages:
        packages = f"<ul class=packages>{packages}</ul>"
    return f"<li>{' '.join(bits)}{_fields(shown_fields(item))}{packages}</li>"


def _environment(env: Mapping[str, Any]) -> str:
    tags = (
        "".join(
            f"<span class='tag{' drift' if c not in ('finding', 'unmanaged') else ''}'>"
            f"{escape(c)}</span>"
            for c in env["classes"]
        )
        or "<span class=tag>in sync</span>"
    )
    meta = []
    if env.get("source_path"):
        meta.append(f"source {_value(env['source_path'])}")
    if env.get("latest_version"):
        meta.append(f"latest version {_value(env['latest_version'])}")
    if env.get("archived"):
        meta.append("archived")
    items = "".join(_item(i) for i in env["items"])
    unknown = "".join(f"<li>unknown: {escape(u)}</li>" for u in env.get("unknown", ()))
    return (
        f"<section class=env id='env-{escape(env['name'])}' data-status='{escape(env['status'])}'>"
        f"<h3>{escape(env['name'])} {tags}</h3><p class=muted>{' · '.join(meta)}</p>"
        f"<ul>{items}{unknown}</ul></section>"
    )


def format_html(document: Mapping[str, Any]) -> str:
    summary, coverage, source = document["summary"], document["coverage"], document["source"]
    if document["has_errors"]:
        verdict, css = "errors in the environment files", "errors"
    elif document["drift_found"]:
        verdict, css = "drift found", "drift"
    else:
        verdict, css = "in sync", "in_sync"
    rows = "".join(
        f"<tr><td>{escape(cls)}</td><td>{count}</td>"
        f"<td>{'yes' if cls in document['fail_on'] else ''}</td></tr>"
        for cls, count in summary["by_class"].items()
    )
    diagnostics = "".join(
        f"<li><b>{escape(d['severity'])}</b> {escape(d.get('path') or '')}"
        f"{':' + str(d['line']) if d.get('line') else ''} {escape(d['message'])} "
        f"<code>{escape(d['rule'])}</code></li>"
        for d in document["diagnostics"]
    )
    ordered = sorted(
        document["environments"],
        key=lambda e: ({"drift": 0, "unmanaged": 1}.get(e["status"], 2), e["name"]),
    )
    sections = "".join(_environment(e) for e in ordered)
    ref = source.get("ref") or source["label"]
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>Environment drift report: {escape(verdict)}</title><style>{_STYLE}</style>"
        "</head><body>"
        f"<h1>Environment drift report <span class='verdict {css}' id=verdict>"
        f"{escape(verdict)}</span></h1>"
        f"<p>Git <code>{escape(source['path'])}</code> at <code>{escape(str(ref))}</code> "
        f"(<code>{escape((source.get('commit') or '')[:12])}</code>) against "
        f"<code>{escape(document['registry']['url'])}</code>, "
        f"{escape(document['generated_at'])}.</p>"
        f"<h2>Summary</h2><p id=summary>{summary['environments']} environments: "
        f"{summary['in_sync']} in sync, {summary['drift']} with drift, "
        f"{summary['unmanaged']} unmanaged. Coverage {coverage['managed']}/{coverage['total']} "
        f"managed ({coverage['percent']}%).</p>"
        f"<table id=classes><tr><th>class</th><th>environments</th><th>fails the check</th></tr>"
        f"{rows}</table>"
        + (f"<h2>Diagnostics</h2><ul id=diagnostics>{diagnostics}</ul>" if diagnostics else "")
        + f"<h2>Environments</h2>{sections}</body></html>\n"
    )
