"""The terminal form of plans, applies, builds, listings and diagnostics (rich): colour,
tables, clickable file:line links and a transient progress display.

It reads the same documents as render/text.py and decides nothing: the command line
picks this form only when a person watches a terminal (see cli.terminal_wanted), and
imports this module only then, so plain runs never pay for rich.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from reconciler.render import text
from reconciler.render.packages import package_lines, shown_fields
from reconciler.render.terminal_progress import TerminalProgress

MARKER_STYLES = {"+": "green", "~": "yellow", "-": "red", "!": "magenta"}
SEVERITY_STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan"}
BUILD_STATES = (
    ("built", "built", "green"),
    ("cache_hits", "cache hit", "cyan"),
    ("failed", "FAILED", "bold red"),
    ("waiting", "failed, waiting to retry", "yellow"),
    ("not_built", "not built", "dim"),
)


class Terminal:
    """Where one command's output goes when a person is watching: stdout for results,
    stderr for the progress display (None when stderr is not a terminal)."""

    def __init__(self, progress: bool, root: Path | None = None) -> None:
        self.out = Console(highlight=False)
        self.progress = (
            TerminalProgress(Console(stderr=True, highlight=False)) if progress else None
        )
        self.root = root  # file links are made absolute against it

    def close(self) -> None:
        """Take the progress display off the screen (the results stay)."""
        if self.progress is not None:
            self.progress.close()

    def _print(self, *items: Any) -> None:
        self.close()
        for item in items:  # one per line (print(*items) would join them with spaces)
            self.out.print(item)

    # -- pieces -----------------------------------------------------------------------

    def diagnostic(self, d: Mapping[str, Any]) -> Text:
        line = Text()
        line.append(d["severity"], SEVERITY_STYLES.get(d["severity"], ""))
        line.append(": ")
        where = d.get("path") or ""
        if where:
            location = f"{where}:{d['line']}" if d.get("line") else where
            line.append(location, self._link(where))
            line.append(": ")
        line.append(d["message"])
        line.append(f" [{d['rule']}]", "dim")
        return line

    def _link(self, path: str) -> str:
        if self.root is None:
            return "underline"
        return f"underline link {(self.root / path).resolve().as_uri()}"

    def _change(self, change: Mapping[str, Any], marker: str | None = None) -> list[Text]:
        mark = marker or text.MARKERS.get(change["action"], "?")
        head = Text("  ")
        head.append(mark, f"bold {MARKER_STYLES.get(mark, '')}")
        head.append(f" {change['action']:<15} ")
        head.append(f"{_target(change):<36}", "bold")
        head.append(f" {change['reason']}")
        if change.get("build"):
            head.append(f" [build: {change['build']}]", "dim")
        lines = [head]
        lines.extend(Text(f"        {text.format_field(f)}") for f in shown_fields(change))
        lines.extend(Text(f"        {line}", "cyan") for line in package_lines(change))
        return lines

    # -- documents --------------------------------------------------------------------

    def diagnostics(self, diagnostics: Sequence[Mapping[str, Any]]) -> None:
        for d in diagnostics:
            self._print(self.diagnostic(d))

    def validation(self, diagnostics: Sequence[Mapping[str, Any]], summary: str) -> None:
        self.diagnostics(diagnostics)
        errors = any(d["severity"] == "error" for d in diagnostics)
        self._print(Text(summary, "bold red" if errors else "bold green"))

    def plan(self, doc: Mapping[str, Any]) -> None:
        source = doc["source"]
        commit = (source.get("commit") or "no commit")[:12]
        out: list[Any] = [
            Text.assemble(
                ("Plan: ", "bold"),
                f"{source['label']} ({commit}), path {source['path']!r} -> ",
                (doc["registry"]["url"], "bold"),
            )
        ]
        if doc["changes"]:
            out.append(Text())
            for change in doc["changes"]:
                out.extend(self._change(change))
        if doc["drift"]:
            out.append(Text())
            out.append(
                Text(
                    "Drift: changed in the registry outside git (reported, not applied):", "magenta"
                )
            )
            for change in doc["drift"]:
                out.extend(self._change(change, "!"))
        if doc["diagnostics"]:
            out.append(Text())
            out.extend(self.diagnostic(d) for d in doc["diagnostics"])
        out.append(Text())
        if doc["has_errors"]:
            out.append(Text("Plan has errors: apply will refuse until they are fixed.", "bold red"))
        if doc["changes"]:
            out.append(Text("Changes: " + _summary(doc["summary"]) + ".", "bold"))
        else:
            noop = doc["summary"].get("noop", 0)
            out.append(Text(f"No changes. {noop} environment(s) in sync.", "bold green"))
        self._print(*out)

    def apply(
        self,
        diagnostics: Sequence[Mapping[str, Any]],
        applied: Sequence[Mapping[str, Any]],
        failed: Sequence[tuple[Mapping[str, Any], str]],
        builds: Mapping[str, Any] | None,
    ) -> None:
        out: list[Any] = [self.diagnostic(d) for d in diagnostics]
        for change in applied:
            out.extend(self._change(change))
        for change, error in failed:
            line = Text("  ")
            line.append("!", "bold red")
            line.append(f" {change['action']:<15} {_target(change)}: ")
            line.append(error, "red")
            out.append(line)
        out.append(Text())
        if failed:
            out.append(
                Text(
                    f"Apply finished with errors: {len(applied)} change(s) applied, "
                    f"{len(failed)} failed. Run apply again once the cause is fixed.",
                    "bold red",
                )
            )
        elif applied:
            out.append(Text(f"Apply complete: {len(applied)} change(s) applied.", "bold green"))
        else:
            out.append(Text("Nothing to do: the registry matches git.", "bold green"))
        self._print(*out)
        if builds is not None:
            self.builds(builds)

    def builds(self, builds: Mapping[str, Any]) -> None:
        table = Table(
            "IMAGE",
            "STATE",
            Column("TIME", justify="right"),
            Column("DETAIL", overflow="fold"),
            box=box.SIMPLE_HEAD,
            header_style="bold",
        )
        logs: list[Any] = []
        for key, label, style in BUILD_STATES:
            if key == "not_built" and builds.get("unavailable"):
                continue
            for row in builds[key]:
                table.add_row(
                    f"{row['name']}:{row['version']}",
                    Text(label, style),
                    _elapsed(row),
                    row.get("image") or row.get("message") or "",
                )
                if key == "failed" and row.get("log_tail"):
                    logs.append(Text(f"{row['name']}:{row['version']} build log:", "bold red"))
                    logs.extend(
                        Text(f"  | {line}", "dim") for line in row["log_tail"].splitlines()[-10:]
                    )
                    if row.get("log_path"):
                        logs.append(
                            Text.assemble(
                                "  full log: ", (row["log_path"], self._link(row["log_path"]))
                            )
                        )
        out: list[Any] = []
        if table.row_count:
            out.append(table)
        out.extend(logs)
        if builds.get("unavailable"):
            out.append(Text(f"Builds skipped: {builds['unavailable']}", "yellow"))
        total = sum(len(builds[key]) for key, _, _ in BUILD_STATES)
        out.append(
            Text(
                f"Images: {len(builds['built'])} built, {len(builds['cache_hits'])} cache "
                f"hit(s), {len(builds['failed'])} failed, {len(builds['not_built'])} not built "
                f"({total} version(s) needed attention).",
                "bold red" if builds["failed"] else "bold",
            )
        )
        self._print(*out)

    def drift(self, document: Mapping[str, Any], written: Sequence[Path]) -> None:
        # The text form with its colours, read back as rich text: one layout for both.
        self._print(Text.from_ansi(text.format_drift(document, text.Style(True))))
        self.files("Report", written)

    def files(self, title: str, written: Sequence[Path]) -> None:
        line = Text(f"{title}: ", "bold")
        for index, path in enumerate(written):
            if index:
                line.append(", ")
            line.append(str(path), f"link {Path(path).resolve().as_uri()}")
        self._print(line)

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        title: str | None = None,
        states: int | None = None,
    ) -> None:
        """A listing; column ``states`` holds active/archived, managed/unmanaged words."""
        table = Table(
            *headers, box=box.SIMPLE_HEAD, header_style="bold", title=title, title_justify="left"
        )
        for row in rows:
            cells: list[Any] = list(row)
            if states is not None:
                cells[states] = Text(row[states], _STATE_STYLES.get(row[states], ""))
            table.add_row(*cells)
        self._print(table)

    def mapping(self, document: Mapping[str, Any], title: str) -> None:
        table = Table(
            Column("FIELD", style="bold"),
            Column("VALUE", overflow="fold"),
            box=box.SIMPLE_HEAD,
            title=title,
            title_justify="left",
            show_header=False,
        )
        for key, value in _flatten(document):
            table.add_row(key, value)
        self._print(table)

    def line(self, value: str) -> None:
        self._print(Text(value))


_STATE_STYLES = {
    "active": "green",
    "archived": "dim",
    "managed": "",
    "unmanaged": "yellow",
}


def _flatten(value: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            rows.extend(_flatten(item, name + "."))
        elif item is None:
            rows.append((name, "-"))
        elif isinstance(item, str):
            rows.append((name, item))
        else:
            rows.append((name, json.dumps(item, ensure_ascii=False)))
    return rows


def _target(change: Mapping[str, Any]) -> str:
    version = change.get("version")
    target = f"{change['name']}:{version}" if version else str(change["name"])
    previous = change.get("previous_version")
    if change["action"] == "new_version" and previous:
        target += f" (from {previous})"
    return target


def _summary(summary: Mapping[str, int]) -> str:
    return (
        f"{summary.get('create', 0)} to create, {summary.get('new_version', 0)} new version(s), "
        f"{summary.get('update_metadata', 0)} to update, {summary.get('restore', 0)} to restore, "
        f"{summary.get('archive', 0)} to archive; {summary.get('noop', 0)} in sync"
    )


def _elapsed(row: Mapping[str, Any]) -> str:
    started, ended = row.get("started_at"), row.get("ended_at")
    if not started or not ended:
        return ""
    seconds = (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds()
    return f"{seconds:.1f}s"
