"""The JSON document pages, rendered from the JSON Schemas shipped in
`reconciler/schemas/`: one table per object (the document, then each `$defs` entry), so
the pages say exactly what the schemas enforce."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import reconciler

SCHEMA_DIR = Path(reconciler.__file__).parent / "schemas"
SUFFIX = ".schema.json"


@dataclass(frozen=True)
class Schema:
    slug: str  # file name without .schema.json: the page's name
    file: Path
    data: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.data.get("title", self.slug))


def schemas() -> list[Schema]:
    return [
        Schema(p.name.removesuffix(SUFFIX), p, json.loads(p.read_text(encoding="utf-8")))
        for p in sorted(SCHEMA_DIR.glob("*" + SUFFIX))
    ]


def _anchor(name: str) -> str:
    return "def-" + name.replace("_", "-")


def type_text(node: dict[str, Any]) -> str:
    """A short, linked description of one schema node's type."""
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    for combinator in ("oneOf", "anyOf"):
        if combinator in node:
            return " or ".join(type_text(n) for n in node[combinator])
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    parts = []
    for k in kinds:
        if k == "array":
            parts.append("array of " + type_text(node.get("items", {})))
        elif k == "object" and isinstance(node.get("additionalProperties"), dict):
            parts.append("map of string to " + type_text(node["additionalProperties"]))
        else:
            parts.append(str(k))
    text = " or ".join(parts) if parts else "any"
    limits = []
    if "minimum" in node:
        limits.append(f"≥ {node['minimum']}")
    if "maximum" in node:
        limits.append(f"≤ {node['maximum']}")
    if "pattern" in node:
        limits.append(f"matches `{node['pattern']}`")
    if "format" in node:
        limits.append(f"format {node['format']}")
    return text + (f" ({', '.join(limits)})" if limits else "")


def _rows(node: dict[str, Any], prefix: str, out: list[str]) -> None:
    required = set(node.get("required", ()))
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        description = str(child.get("description", "")).replace("\n", " ").replace("|", "\\|")
        flag = "yes" if name in required else ""
        kind = type_text(child).replace("|", "\\|")
        out.append(f"| `{path}` | {kind} | {flag} | {description} |")
        # Nested objects and arrays of objects read best inline, as dotted paths.
        if "properties" in child:
            _rows(child, path + ".", out)
        items = child.get("items")
        if isinstance(items, dict) and "properties" in items:
            _rows(items, path + "[].", out)


def _table(node: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    _rows(node, "", rows)
    if not rows:
        return [f"Type: {type_text(node)}.", ""]
    head = ["| field | type | required | description |", "|---|---|---|---|"]
    extra = node.get("additionalProperties")
    tail = [""]
    if extra is False:
        tail = ["", "No other fields are allowed.", ""]
    return head + rows + tail


def schema_markdown(schema: Schema) -> str:
    data = schema.data
    lines = [
        f"Rendered from [`reconciler/schemas/{schema.file.name}`]({schema.file.name}) "
        f"(JSON Schema `{data.get('$schema', '')}`), shipped with the package.",
        "",
    ]
    if "description" in data:
        lines += [str(data["description"]), ""]
    lines += ["## The document", "", *_table(data)]
    for name, node in data.get("$defs", {}).items():
        lines += [f"## `{name}` {{#{_anchor(name)}}}", ""]
        if "description" in node:
            lines += [str(node["description"]), ""]
        lines += _table(node)
    return "\n".join(lines)
