"""Package diffs as lines of text, shared by the text, Markdown and HTML renderers.
Pure: change documents in, strings out (escaping is the caller's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_CONDA_PATHS = ("conda.dependencies", "conda.channels")


def package_line(entry: Mapping[str, Any], arrow: str = "->") -> str:
    """`numpy 1.26.4 -> 2.0.1`, `+ scipy 1.13.0`, `- pandas 2.2.0`."""
    name, before, after = entry["name"], entry.get("before"), entry.get("after")
    if entry["kind"] == "added":
        return f"+ {name} {after or ''}".rstrip()
    if entry["kind"] == "removed":
        return f"- {name} {before or ''}".rstrip()
    return f"{name} {before or '(any version)'} {arrow} {after or '(any version)'}"


def section(entry: Mapping[str, Any]) -> str:
    """Where an entry comes from: `conda`, `pip` (the conda file's pip section) or
    `pip, docker/requirements.txt`."""
    if entry["source"] == "conda_file":
        return str(entry["manager"])
    return f"{entry['manager']}, {entry['source']}"


def channel_line(entry: Mapping[str, Any]) -> str:
    what = "channel" if entry["manager"] == "conda" else "pip index"
    if entry["kind"] == "changed":
        return f"! {what} {entry['channel']} (a masked credential changed)"
    sign = "+" if entry["kind"] == "added" else "-"
    return f"{sign} {what} {entry['channel']}"


def package_lines(change: Mapping[str, Any], arrow: str = "->") -> list[str]:
    """One line per package or channel change, with its section: `conda: numpy 1 -> 2`."""
    lines = [f"{section(p)}: {package_line(p, arrow)}" for p in change.get("packages", ())]
    lines += [f"{section(c)}: {channel_line(c)}" for c in change.get("channels", ())]
    lines += [f"{path}: not read" for path in change.get("requirements_unread", ())]
    return lines


def shown_fields(change: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The field diffs worth showing beside the package diff: list-index diffs of the conda
    dependencies, and blob ids of requirement files that were read, say less than it."""
    fields: list[Mapping[str, Any]] = list(change.get("fields", ()))
    if "packages" not in change:
        return fields
    read = {p["source"] for p in change["packages"]} | {c["source"] for c in change["channels"]}
    covered = {f"build.files.{source}" for source in read if source != "conda_file"}
    return [
        f
        for f in fields
        if f["path"] != "conda"
        and not f["path"].startswith(_CONDA_PATHS)
        and f["path"] not in covered
    ]


def diff_lines(change: Mapping[str, Any]) -> list[str]:
    """Lines for a ```diff block: the sign first (`+`, `-`, `!` changed), so GitHub colours
    them; backticks are replaced so no value can close the fence."""
    lines = []
    for p in change.get("packages", ()):
        sign = {"added": "+", "removed": "-"}.get(p["kind"], "!")
        text = package_line(p, "→").removeprefix(f"{sign} ")
        lines.append(f"{sign} {text}  ({section(p)})")
    for c in change.get("channels", ()):
        lines.append(f"{channel_line(c)}  ({section(c)})")
    lines += [f"? {path}: not read" for path in change.get("requirements_unread", ())]
    return [line.replace("`", "'") for line in lines]
