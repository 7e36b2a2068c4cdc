"""Field-level differences between two plain values, in the project's own type.

deepdiff does the comparison; only ``FieldChange`` leaves this module. It is imported
lazily because it is slow to import and a plan with no changes never needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str  # dotted, with [n] for list items: "conda.dependencies[2]"
    before: Any
    after: Any
    kind: str  # "added" | "removed" | "changed"

    def to_dict(self) -> dict[str, Any]:
        """The change as shown anywhere (plans, reports): credentials masked. ``masked``
        says a credential was hidden, so an unchanged-looking `*** -> ***` still reads as
        a change."""
        from reconciler.core.spec.secrets import last_key, mask

        key = last_key(self.path)
        before, after = mask(self.before, key), mask(self.after, key)
        doc = {"path": self.path, "kind": self.kind, "before": before, "after": after}
        if before != self.before or after != self.after:
            doc["masked"] = True
        return doc


def _dotted(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


_KINDS = {
    "values_changed": "changed",
    "type_changes": "changed",
    "dictionary_item_added": "added",
    "iterable_item_added": "added",
    "dictionary_item_removed": "removed",
    "iterable_item_removed": "removed",
}


def field_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    if before == after:
        return ()
    from deepdiff import DeepDiff

    tree = DeepDiff(
        dict(before), dict(after), view="tree", verbose_level=2, threshold_to_diff_deeper=0
    )
    changes: list[FieldChange] = []
    for report_type, kind in _KINDS.items():
        for level in tree.get(report_type, ()):
            t1 = None if level.t1.__class__.__name__ == "NotPresent" else level.t1
            t2 = None if level.t2.__class__.__name__ == "NotPresent" else level.t2
            changes.append(FieldChange(_dotted(level.path(output_format="list")), t1, t2, kind))
    return tuple(sorted(changes, key=lambda c: c.path))


def content_view(content: Mapping[str, Any]) -> dict[str, Any]:
    """Content for a field diff: build context files as a path -> blob mapping."""
    view = {k: v for k, v in content.items() if k != "format"}
    build = view.get("build")
    if isinstance(build, dict) and "files" in build:
        build = dict(build)
        build["files"] = {path: f"{mode}:{blob[:12]}" for path, mode, blob in build["files"]}
        view["build"] = build
    return view
