"""What a plan is made of: actions, reasons, changes, per-environment results, the plan.

All frozen values. A change says what to do (its action), why (a reason from a closed set,
with a human text), to which version, and carries everything apply writes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import TYPE_CHECKING

from reconciler.core.spec import diagnostics as diag

if TYPE_CHECKING:
    from reconciler.core.build.jobs import BuildOutcome
    from reconciler.core.desired.types import DesiredEnvironment
    from reconciler.core.governance.package_diff import PackageDiff
    from reconciler.core.spec.diagnostics import Diagnostic
    from reconciler.core.spec.fielddiff import FieldChange
    from reconciler.core.spec.model import RegisteredContainer, VersionWrite

PLAN_FORMAT_VERSION = 1


class Action(StrEnum):
    CREATE = "create"
    NEW_VERSION = "new_version"
    UPDATE_METADATA = "update_metadata"
    ARCHIVE = "archive"
    RESTORE = "restore"
    NOOP = "noop"


# The order apply runs actions in: a container is restored before a version is created
# under it (else the new version would be archived too), archives come last.
APPLY_ORDER = {
    Action.RESTORE: 0,
    Action.CREATE: 1,
    Action.NEW_VERSION: 1,
    Action.UPDATE_METADATA: 2,
    Action.ARCHIVE: 3,
    Action.NOOP: 4,
}

SELF_HEAL = "self-heal: "


class Reason(Enum):
    """Why a change is planned; the value is its human text, with ``{placeholders}``
    filled from the change's ``detail``."""

    NEW_ENVIRONMENT = "new environment in git"
    VERSION_NOT_REGISTERED = "version {version} is not registered yet"
    CREATED_OUTSIDE_GIT = (
        "version {version} was created in the registry outside git; a new version makes "
        "latest match git"
    )
    EQUALS_OLDER_VERSION = (
        "content equals older version {version}; a new version makes latest match git"
    )
    CONTENT_CHANGED = "build-relevant content changed"
    BACK_IN_GIT = "back in git: restore the archived environment"
    RESTORED_FOR_CHANGE = "archived in the registry outside git; restored for the change in git"
    ARCHIVED_OUTSIDE_GIT = "archived in the registry outside git"
    CLEAR_ARCHIVE_STAMP = "active and in git: clear the archive stamp"
    VERSION_ARCHIVED = "in git, but this version was archived"
    VERSION_ARCHIVED_OUTSIDE_GIT = "this version was archived in the registry outside git"
    IN_SYNC = "in sync"
    ADOPT = "adopt: content matches git; stamp ownership and set metadata"
    METADATA_EDITED_OUTSIDE_GIT = "description or tags edited in the registry outside git"
    METADATA_OVERWRITES_EDIT = (
        "metadata changed in git (overwrites an edit made in the registry outside git)"
    )
    METADATA_CHANGED = "description or tags changed in git"
    SOURCE_MOVED = "source file moved"
    RETENTION = "retention: keep the newest {keep} version(s)"
    REMOVED_FROM_GIT = "removed from git ({path})"
    RESTORED_OUTSIDE_GIT = "restored in the registry outside git; not in git ({path})"
    # A change read back from a saved plan whose text matches no reason above.
    AS_SAVED = "{text}"

    def text(self, detail: Mapping[str, str]) -> str:
        return self.value.format(**detail)

    @classmethod
    def parse(cls, text: str) -> tuple[Reason, dict[str, str], bool]:
        """(reason, detail, self-heal) of a reason's human text (a saved plan's)."""
        healed = text.startswith(SELF_HEAL)
        body = text.removeprefix(SELF_HEAL) if healed else text
        for reason in cls:
            if reason is Reason.AS_SAVED:
                continue
            found = _patterns()[reason].fullmatch(body)
            if found is not None:
                return reason, found.groupdict(), healed
        return Reason.AS_SAVED, {"text": body}, healed


_PATTERNS: dict[Reason, re.Pattern[str]] = {}


def _patterns() -> dict[Reason, re.Pattern[str]]:
    if not _PATTERNS:
        for reason in Reason:
            parts = re.split(r"\{(\w+)\}", reason.value)
            pattern = "".join(
                re.escape(part) if i % 2 == 0 else f"(?P<{part}>.*?)"
                for i, part in enumerate(parts)
            )
            _PATTERNS[reason] = re.compile(pattern, re.DOTALL)
    return _PATTERNS


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    name: str
    action: Action
    reason: Reason
    detail: tuple[tuple[str, str], ...] = ()  # the reason's placeholders, as pairs
    self_heal: bool = False  # a repair of out-of-band drift, applied because asked to
    version: str | None = None  # the version acted on (None: the whole container)
    previous_version: str | None = None  # the newest version before this change
    fields: tuple[FieldChange, ...] = ()  # before/after, field by field
    write: VersionWrite | None = None  # the version as it will be after the change
    source_path: str | None = None
    # Archive and restore of a container also rewrite the tags of this version (the
    # archive stamp); create, new_version and update_metadata write ``version`` itself.
    stamp_version: str | None = None
    # Package-level view of a content change (see plan/packages.py); None: not computed.
    packages: PackageDiff | None = None
    # What a create or new version waits for in the targets before this one (the gate,
    # see core/promotion/gate.py); a deferred change stays in the plan and apply skips it.
    deferred: str | None = None

    @property
    def why(self) -> str:
        """The reason as shown to people."""
        text = self.reason.text(dict(self.detail))
        return SELF_HEAL + text if self.self_heal else text

    @property
    def target(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name


@dataclass(frozen=True, slots=True)
class EnvironmentPlan:
    """Planning one environment: a pure function of its desired environment, its
    registered container, the commit and the options. Retention candidates carry the
    creation time of their version; the whole plan decides how many of them fit."""

    desired: DesiredEnvironment
    container: RegisteredContainer | None
    changes: tuple[Change, ...] = ()
    drift: tuple[Change, ...] = ()
    noops: tuple[Change, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    retention: tuple[tuple[str, Change], ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[Change, ...]
    drift: tuple[Change, ...]
    noops: tuple[Change, ...]
    diagnostics: tuple[Diagnostic, ...]
    source: str
    commit: str | None
    registry_token: str | None = None
    summary: Mapping[str, int] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def has_errors(self) -> bool:
        return diag.has_errors(self.diagnostics)


@dataclass
class ApplyOutcome:
    """What apply did with a plan: applied and failed changes, and the builds."""

    plan: Plan
    applied: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, str]] = field(default_factory=list)
    builds: BuildOutcome | None = None
    deferred: list[Change] = field(default_factory=list)  # held by the promotion gate

    @property
    def ok(self) -> bool:
        return not self.failed and (self.builds is None or not self.builds.broken)
