"""Audit evidence as Markdown: one table per environment, every version with its owner,
provenance, image and state. Pure: the evidence document in, text out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.render.markdown import code, text


def _cell(value: Any) -> str:
    return code(value) if value else "—"


def format_evidence_markdown(document: Mapping[str, Any]) -> str:
    summary = document["summary"]
    builds = ", ".join(f"{count} {status}" for status, count in summary["builds"].items())
    lines = [
        "# Environment audit evidence",
        "",
        f"Registry {code(document['registry']['url'])}, generated "
        f"{text(document['generated_at'])} (policy exceptions judged as of "
        f"{text(document['as_of'])}).",
        "",
        f"- **{summary['environments']}** environments ({summary['managed_environments']} "
        f"managed from git, {summary['archived_environments']} archived), "
        f"**{summary['versions']}** versions ({summary['archived_versions']} archived)",
        f"- environments without an `owner` tag: **{summary['without_owner']}**",
        f"- builds: {builds or 'none'}",
        f"- policy exceptions: {summary['exceptions_in_force']} in force, "
        f"{summary['exceptions_expired']} expired",
        "",
    ]
    for env in document["environments"]:
        state = "archived" if env["archived"] else "active"
        managed = "managed from " + code(env["source_path"]) if env["managed"] else "unmanaged"
        lines += [
            f"## {text(env['name'])}",
            "",
            f"{state}, {managed}; owner {_cell(env['owner'])}, team {_cell(env['team'])}; "
            f"latest version {_cell(env['latest_version'])}.",
            "",
        ]
        for exception in env["policy_exceptions"]:
            status = "in force" if exception["in_force"] else "**expired**"
            lines.append(
                f"- policy exception {code(exception['rule'])} ({status}, until "
                f"{text(exception['expires'])}): approved by {text(exception['approved_by'])}: "
                f"{text(exception['reason'])}"
            )
        if env["policy_exceptions"]:
            lines.append("")
        lines += [
            "| version | created | state | owner | team | commit | file | digest | build | image "
            "| consumers |",
            "|---|---|---|---|---|---|---|---|---|---|---:|",
        ]
        for v in env["versions"]:
            origin, build = v["provenance"], v["build"]
            state = "archived" if v["archived"] else "active"
            if v["archived_by_reconciler"]:
                state += " (by reconciler)"
            lines.append(
                f"| {code(v['version'])} | {text(v['created_at'][:19])} | {state} | "
                f"{_cell(v['owner'])} | {_cell(v['team'])} | "
                f"{_cell((origin['commit'] or '')[:12])} | {_cell(origin['path'])} | "
                f"{_cell((v['digest'] or '')[:19])} | {text(build['status'])} | "
                f"{_cell(build['image_digest'])} | {len(v.get('consumers', ()))} |"
            )
        if env.get("latest_consumers"):
            lines += ["", f"Following @latest: {len(env['latest_consumers'])} consumer(s)."]
        lines.append("")
    return "\n".join(lines)
