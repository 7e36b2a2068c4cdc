"""Desired state as values: each environment git asks for, the whole state of a load,
and the parse memo (results keyed by git blob id)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.core.spec import diagnostics as diag
from reconciler.core.spec.diagnostics import Diagnostic

if TYPE_CHECKING:
    from reconciler.core.desired.consumers import ConsumerIndex


@dataclass(frozen=True, slots=True)
class DesiredEnvironment:
    name: str
    version: str | None  # None: latest if identical, else the next number
    description: str | None
    tags: Mapping[str, str]  # the user's tags (ownership stamps are added by the planner)
    content: Mapping[str, Any]  # everything that enters the digest (see digest.py)
    digest: str
    datastore: str | None
    source_path: str
    line: int | None = None
    build_root: str | None = None  # the local build context directory, repository-relative
    lines: Mapping[str, int] = field(default_factory=dict)  # field -> line in source_path
    conda_path: str | None = None  # the conda file, repository-relative (None: inline)

    @property
    def dockerfile_path(self) -> str | None:
        """The Dockerfile of a local build context, repository-relative (None: no context)."""
        build = self.content.get("build")
        if self.build_root is None or not isinstance(build, Mapping):
            return None
        return f"{self.build_root}/{build.get('dockerfile_path', 'Dockerfile')}".lstrip("/")


@dataclass(slots=True)
class DesiredState:
    environments: dict[str, DesiredEnvironment]
    diagnostics: list[Diagnostic]
    commit: str | None
    source: str
    candidates: int = 0
    references: frozenset[str] = frozenset()  # files the environments use (conda, context)
    # Who uses the environments (see desired/consumers.py); None: not scanned.
    consumers: ConsumerIndex | None = None

    @property
    def has_errors(self) -> bool:
        return diag.has_errors(self.diagnostics)


@dataclass(slots=True)
class LoadMemo:
    """Results keyed by git blob id. Plain data only, so it can be stored as is."""

    parsed: dict[str, dict[str, Any]] = field(default_factory=dict)
    conda: dict[str, dict[str, Any]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    consumers: dict[str, dict[str, Any]] = field(default_factory=dict)  # "yaml:BLOB" -> scan
    changed: bool = False
