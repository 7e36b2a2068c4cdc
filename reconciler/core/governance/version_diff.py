"""Two versions of an environment side by side (`reconciler diff`): field-level and
package-level differences, as a document. Pure: both sides and the requirement file
texts are given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.governance.package_diff import content_diff, diff_document
from reconciler.core.spec.fielddiff import content_view, field_changes
from reconciler.core.spec.model import user_tags

DIFF_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Side:
    label: str  # `a:3`, or `a in git (working tree)`
    name: str
    version: str | None  # None: git's version of a floating file
    content: Mapping[str, Any]
    digest: str | None
    description: str | None
    tags: Mapping[str, str]
    source: str  # "registry" | "git"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "source": self.source,
        }


def _view(side: Side) -> dict[str, Any]:
    view = content_view(side.content)
    view["description"] = side.description
    view["tags"] = user_tags(side.tags)  # ownership stamps differ by design: not compared
    return view


def compare(left: Side, right: Side, texts: Mapping[str, str]) -> dict[str, Any]:
    """What changes from ``left`` to ``right``; ``texts``: requirement files by blob id."""
    fields = field_changes(_view(left), _view(right))
    packages = content_diff(left.content, right.content, texts)
    same_content = left.digest is not None and left.digest == right.digest
    document: dict[str, Any] = {
        "format_version": DIFF_FORMAT_VERSION,
        "kind": "version-diff",
        "left": left.to_dict(),
        "right": right.to_dict(),
        "identical": not fields,
        "same_content": same_content,
        "fields": [f.to_dict() for f in fields],
        "packages": [],
        "channels": [],
    }
    document.update(diff_document(packages))
    return document
