"""The planner: desired state + actual state -> a Plan (a value). No I/O.

A plan lists typed changes (what git asks for) and drift (what someone changed in the
registry outside git) separately. Apply consumes a plan and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from reconciler.core import diagnostics as diag
from reconciler.core.desired import DesiredEnvironment, DesiredState
from reconciler.core.diagnostics import Diagnostic
from reconciler.core.fielddiff import FieldChange, field_changes
from reconciler.core.model import (
    MANAGED_BY,
    STAMP_ARCHIVED,
    STAMP_CONTENT_DIGEST,
    STAMP_MANAGED_BY,
    STAMP_METADATA_DIGEST,
    STAMP_OWNER,
    STAMP_SOURCE_COMMIT,
    STAMP_SOURCE_PATH,
    RegisteredContainer,
    RegisteredVersion,
    RegistryState,
    metadata_digest,
    user_tags,
)
from reconciler.core.options import PlanOptions
from reconciler.core.plan_memo import EnvironmentPlan, PlanMemo
from reconciler.core.selection import Selection

if TYPE_CHECKING:
    from reconciler.core.package_diff import PackageDiff

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


@dataclass(frozen=True, slots=True)
class VersionWrite:
    """Everything apply sends for one version: content and metadata, stamps included."""

    content: Mapping[str, Any]
    digest: str
    description: str | None
    tags: Mapping[str, str]
    datastore: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    name: str
    action: Action
    reason: str
    version: str | None = None  # the version acted on (None: the whole container)
    previous_version: str | None = None  # the newest version before this change
    fields: tuple[FieldChange, ...] = ()
    write: VersionWrite | None = None
    source_path: str | None = None
    # Archive and restore of a container also rewrite the tags of this version (the
    # archive stamp); create, new_version and update_metadata write ``version`` itself.
    stamp_version: str | None = None
    # Package-level view of a content change (see plan_packages.py); None: not computed.
    packages: PackageDiff | None = None
    # What a create or new version waits for in the targets before this one (the gate,
    # see promotion.py); a deferred change stays in the plan and apply skips it.
    deferred: str | None = None

    @property
    def target(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name


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


def stamps(desired: DesiredEnvironment, commit: str | None, owner: str = "") -> dict[str, str]:
    return {
        STAMP_MANAGED_BY: MANAGED_BY,
        STAMP_OWNER: owner,
        STAMP_SOURCE_PATH: desired.source_path,
        STAMP_SOURCE_COMMIT: commit or "none",
        STAMP_CONTENT_DIGEST: desired.digest,
        STAMP_METADATA_DIGEST: metadata_digest(desired.description, desired.tags),
    }


def _write(desired: DesiredEnvironment, commit: str | None, owner: str) -> VersionWrite:
    tags = dict(desired.tags)
    tags.update(stamps(desired, commit, owner))
    return VersionWrite(
        content=desired.content,
        digest=desired.digest,
        description=desired.description,
        tags=tags,
        datastore=desired.datastore,
    )


def _metadata_view(
    description: str | None, tags: Mapping[str, str], path: str | None
) -> dict[str, Any]:
    view: dict[str, Any] = {"description": description, "tags": user_tags(tags)}
    if path is not None:
        view["source_path"] = path
    return view


class _Planner:
    def __init__(
        self,
        desired: DesiredState,
        actual: RegistryState,
        selection: Selection,
        options: PlanOptions,
        memo: PlanMemo | None = None,
    ) -> None:
        self.memo = memo
        self.desired = desired
        self.actual = actual
        self.selection = selection
        self.options = options
        self.changes: list[Change] = []
        self.drift: list[Change] = []
        self.noops: list[Change] = []
        self.diagnostics: list[Diagnostic] = list(desired.diagnostics)
        # version-level archives planned by retention, with the version's creation time
        self.retention: list[tuple[str, Change]] = []

    def run(self) -> Plan:
        memo = self.memo
        if memo is None:
            for name, desired in self.desired.environments.items():
                self._plan_environment(desired, self.actual.containers.get(name))
        else:
            self._plan_environments(memo)
        self._plan_archives()
        self._reference_findings()
        changes = sorted(self.changes, key=lambda c: (APPLY_ORDER[c.action], c.name))
        summary = {action.value: 0 for action in Action}
        for change in changes:
            summary[change.action.value] += 1
        summary[Action.NOOP.value] = len(self.noops)
        summary["drift"] = len(self.drift)
        return Plan(
            changes=tuple(changes),
            drift=tuple(self.drift),
            noops=tuple(self.noops),
            diagnostics=tuple(self.diagnostics),
            source=self.desired.source,
            commit=self.desired.commit,
            registry_token=self.actual.token,
            summary=summary,
        )

    def _plan_environments(self, memo: PlanMemo) -> None:
        """As ``run`` does without a memo, reusing the results of unchanged environments."""
        memo.start((self.desired.commit, self.options))
        kept: dict[str, EnvironmentPlan] = {}
        containers = self.actual.containers
        for name, desired in self.desired.environments.items():
            container = containers.get(name)
            found = memo.hit(name, desired, container)
            if found is None:
                marks = (len(self.changes), len(self.drift), len(self.noops))
                diagnostics, retention = len(self.diagnostics), len(self.retention)
                self._plan_environment(desired, container)
                found = EnvironmentPlan(
                    desired,
                    container,
                    tuple(self.changes[marks[0] :]),
                    tuple(self.drift[marks[1] :]),
                    tuple(self.noops[marks[2] :]),
                    tuple(self.diagnostics[diagnostics:]),
                    tuple(self.retention[retention:]),
                )
            elif found.changes or found.drift or found.diagnostics or found.retention:
                self.changes.extend(found.changes)
                self.drift.extend(found.drift)
                self.noops.extend(found.noops)
                self.diagnostics.extend(found.diagnostics)
                self.retention.extend(found.retention)
            else:  # in sync: the common case
                self.noops.extend(found.noops)
            kept[name] = found
        memo.environments = kept

    def _managed_active(self, name: str, container: RegisteredContainer) -> bool:
        if self.memo is None:
            return not container.archived and container.managed
        return self.memo.managed_active(name, container)

    def _out_of_band(self, change: Change) -> None:
        """A repair of something changed in the registry outside git: applied only with
        self-heal, else reported as drift."""
        if self.options.self_heal:
            self.changes.append(_with_reason(change, f"self-heal: {change.reason}"))
        else:
            self.drift.append(change)

    def _stamp_write(self, version: RegisteredVersion, archived: bool) -> VersionWrite | None:
        """``version`` as it is, with the archive stamp set or cleared."""
        if version.content is None or version.effective_digest is None:
            return None  # the backend cannot return content: no stamp (reported as unknown)
        tags = dict(version.tags)
        if archived:
            tags[STAMP_ARCHIVED] = self.desired.commit or "none"
        else:
            tags.pop(STAMP_ARCHIVED, None)
        return VersionWrite(
            version.content, version.effective_digest, version.description, tags, version.datastore
        )

    # -- one environment ------------------------------------------------------------

    def _plan_environment(
        self, desired: DesiredEnvironment, container: RegisteredContainer | None
    ) -> None:
        commit = self.desired.commit
        if container is None or not container.versions:
            version = desired.version or "1"
            self.changes.append(
                Change(
                    desired.name,
                    Action.CREATE,
                    "new environment in git",
                    version,
                    None,
                    (),
                    _write(desired, commit, self.options.owner),
                    desired.source_path,
                )
            )
            return
        other = container.owner()
        if container.managed and other is not None and other != self.options.owner:
            self.diagnostics.append(
                diag.error(
                    "owned-elsewhere",
                    f"environment {desired.name!r} is managed by another repository "
                    f"({other or 'unknown'}); one environment must have one source of truth. "
                    "Rename it here, or set `owner` if this repository took over",
                    desired.source_path,
                    desired.line,
                )
            )
            return
        newest = container.newest
        start = len(self.changes)
        mark = len(self.diagnostics)  # diagnostics are only appended
        if desired.version is not None:
            self._plan_pinned(desired, container)
        else:
            self._plan_floating(desired, container)
        if not any(d.severity is diag.Severity.ERROR for d in self.diagnostics[mark:]):
            self._plan_retention(desired, container, self.changes[start:])
        stamped = container.newest_managed()
        if container.archived:
            restore = Change(
                desired.name,
                Action.RESTORE,
                "back in git: restore the archived environment",
                None,
                newest.version if newest else None,
                (),
                self._stamp_write(stamped, archived=False) if stamped else None,
                desired.source_path,
                stamped.version if stamped else None,
            )
            if container.archive_stamped or not container.managed:
                self.changes.insert(start, restore)
            elif len(self.changes) > start:
                # git changed too: the change cannot land in an archived container
                reason = "archived in the registry outside git; restored for the change in git"
                self.changes.insert(start, _with_reason(restore, reason))
            else:
                self._out_of_band(_with_reason(restore, "archived in the registry outside git"))
        elif stamped is not None and container.archive_stamped:
            # Restored (by hand, or by an apply interrupted before it cleared the stamp)
            # and in git: clear the stamp, so a later removal from git archives again.
            written = {c.version for c in self.changes[start:]}
            if stamped.version not in written:
                write = self._stamp_write(stamped, archived=False)
                if write is not None:
                    self.changes.append(
                        Change(
                            desired.name,
                            Action.UPDATE_METADATA,
                            "active and in git: clear the archive stamp",
                            stamped.version,
                            stamped.version,
                            (),
                            write,
                            desired.source_path,
                        )
                    )

    def _plan_pinned(self, desired: DesiredEnvironment, container: RegisteredContainer) -> None:
        assert desired.version is not None
        existing = container.get(desired.version)
        newest = container.newest
        if existing is None:
            self._new_version(
                desired,
                container,
                desired.version,
                f"version {desired.version} is not registered yet",
            )
            return
        if existing.effective_digest != desired.digest:
            self.diagnostics.append(
                diag.error(
                    "version-collision",
                    f"{desired.name}:{desired.version} is already registered with different "
                    "content; versions are immutable: bump `version` (or remove it to number "
                    "automatically)",
                    desired.source_path,
                    desired.line,
                )
            )
            return
        self._same_content(desired, container, existing, newest)

    def _plan_floating(self, desired: DesiredEnvironment, container: RegisteredContainer) -> None:
        newest = container.newest
        assert newest is not None
        if newest.effective_digest == desired.digest:
            self._same_content(desired, container, newest, newest)
            return
        older = next((v for v in container.versions if v.effective_digest == desired.digest), None)
        stamped = container.newest_managed()
        if (
            not newest.managed
            and stamped is not None
            and stamped.effective_digest == desired.digest
        ):
            # git did not change since the reconciler's last version: someone made a
            # newer one by hand
            self._new_version(
                desired,
                container,
                container.next_version(),
                f"version {newest.version} was created in the registry outside git; a new "
                "version makes latest match git",
                out_of_band=True,
            )
            return
        if older is not None:
            reason = (
                f"content equals older version {older.version}; a new version makes "
                "latest match git"
            )
        else:
            reason = "build-relevant content changed"
        self._new_version(desired, container, container.next_version(), reason)

    def _new_version(
        self,
        desired: DesiredEnvironment,
        container: RegisteredContainer,
        version: str,
        reason: str,
        out_of_band: bool = False,
    ) -> None:
        newest = container.newest
        before = _content_view(newest.content if newest and newest.content is not None else {})
        after = _content_view(desired.content)
        if newest is not None:  # a new version carries git's metadata too: show its change
            before.update(_metadata_view(newest.description, newest.tags, None))
            after.update(_metadata_view(desired.description, desired.tags, None))
        fields = field_changes(before, after)
        (self._out_of_band if out_of_band else self.changes.append)(
            Change(
                desired.name,
                Action.NEW_VERSION,
                reason,
                version,
                newest.version if newest else None,
                fields,
                _write(desired, self.desired.commit, self.options.owner),
                desired.source_path,
            )
        )

    def _same_content(
        self,
        desired: DesiredEnvironment,
        container: RegisteredContainer,
        existing: RegisteredVersion,
        newest: RegisteredVersion | None,
    ) -> None:
        if existing.archived:
            restore = Change(
                desired.name,
                Action.RESTORE,
                "in git, but this version was archived",
                existing.version,
                newest.version if newest else None,
                (),
                None,
                desired.source_path,
            )
            if STAMP_ARCHIVED in existing.tags or not existing.managed:
                self.changes.append(restore)
            else:  # the reconciler never archived this version: someone did, by hand
                self._out_of_band(
                    _with_reason(restore, "this version was archived in the registry outside git")
                )
        before = _metadata_view(existing.description, existing.tags, existing.source_path)
        after = _metadata_view(desired.description, desired.tags, desired.source_path)
        if before == after and existing.managed:
            self.noops.append(
                Change(
                    desired.name,
                    Action.NOOP,
                    "in sync",
                    existing.version,
                    existing.version,
                    source_path=desired.source_path,
                )
            )
            return
        fields = field_changes(before, after)
        edited = existing.metadata_edited
        git_view = existing.tags.get(STAMP_METADATA_DIGEST)
        git_changed = git_view != metadata_digest(desired.description, desired.tags)
        change = Change(
            desired.name,
            Action.UPDATE_METADATA,
            "",
            existing.version,
            existing.version,
            fields,
            _write(desired, self.desired.commit, self.options.owner),
            desired.source_path,
        )
        if not existing.managed:
            self.changes.append(
                _with_reason(change, "adopt: content matches git; stamp ownership and set metadata")
            )
        elif edited and not git_changed:
            self._out_of_band(
                _with_reason(change, "description or tags edited in the registry outside git")
            )
        elif edited:
            self.changes.append(
                _with_reason(
                    change,
                    "metadata changed in git (overwrites an edit made in the registry outside git)",
                )
            )
        elif git_changed:
            self.changes.append(_with_reason(change, "description or tags changed in git"))
        else:
            self.changes.append(_with_reason(change, "source file moved"))

    def _plan_retention(
        self,
        desired: DesiredEnvironment,
        container: RegisteredContainer,
        planned: list[Change],
    ) -> None:
        """Archive the managed versions older than the newest ``keep`` active ones, as they
        will be after this plan. Never the latest, never git's version (or one with its
        content), never what git pins; only versions this repository stamped."""
        keep = self.options.keep_versions(desired.name)
        if keep <= 0 or container.archived:
            return
        created = [
            c.version
            for c in planned
            if c.action in (Action.CREATE, Action.NEW_VERSION) and c.version is not None
        ]
        active = [v for v in reversed(container.versions) if not v.archived]
        order = created + [v.version for v in active if v.version not in created]
        protected = set(order[:keep])
        if desired.version is not None:
            protected.add(desired.version)
        if not created and (stamped := container.newest_managed()) is not None:
            protected.add(stamped.version)  # it carries the container's archive stamp
        newest = container.newest
        for version in active:
            if (
                version.version in protected
                or version.effective_digest == desired.digest
                or not version.managed
                or version.tags.get(STAMP_OWNER) != self.options.owner
            ):
                continue
            write = self._stamp_write(version, archived=True)
            change = Change(
                desired.name,
                Action.ARCHIVE,
                f"retention: keep the newest {keep} version(s)",
                version.version,
                newest.version if newest else None,
                (),
                write,
                desired.source_path,
                version.version if write is not None else None,
            )
            self.retention.append((version.created_at, change))

    # -- environments gone from git ---------------------------------------------------

    def _plan_archives(self) -> None:
        archives: list[Change] = []
        managed_active = 0
        for name, container in self.actual.containers.items():
            if not self._managed_active(name, container):
                continue
            managed_active += 1
            if name in self.desired.environments:
                continue
            owner = container.owner_path()
            if owner is None or not self.selection.owns(owner):
                continue  # managed from another directory or repository selection
            if container.owner() != self.options.owner:
                continue  # managed by another repository
            newest = container.newest
            stamped = container.newest_managed()
            archive = Change(
                name,
                Action.ARCHIVE,
                f"removed from git ({owner})",
                None,
                newest.version if newest else None,
                (),
                self._stamp_write(stamped, archived=True) if stamped else None,
                owner,
                stamped.version if stamped else None,
            )
            if container.archive_stamped:
                archive = _with_reason(
                    archive, f"restored in the registry outside git; not in git ({owner})"
                )
                if not self.options.self_heal:
                    self.drift.append(archive)
                    continue
                archive = _with_reason(archive, f"self-heal: {archive.reason}")
            archives.append(archive)
        retention = [change for _, change in sorted(self.retention, key=lambda r: r[0])]
        if not archives and not retention:
            return
        if not self.desired.has_errors:  # (withheld below: no refusal needed)
            archives, retention = self._spare_referenced(archives, retention)
        if self.desired.has_errors:
            # A file that failed to parse may be the one that defines these environments.
            self.diagnostics.append(
                diag.warning(
                    "archive-withheld",
                    f"{len(archives) + len(retention)} archive(s) withheld while environment "
                    "files have errors",
                )
            )
            return
        limit = max(
            self.options.archive_limit_count,
            int(managed_active * self.options.archive_limit_fraction),
        )
        if len(archives) > limit and not self.options.allow_mass_archive:
            self.diagnostics.append(
                diag.error(
                    "archive-guard",
                    f"this plan would archive {len(archives)} environments, more than the limit of "
                    f"{limit} (the larger of {self.options.archive_limit_count} and "
                    f"{self.options.archive_limit_fraction:.0%} of {managed_active} managed); "
                    "check the --path and the repository, or pass --allow-mass-archive",
                )
            )
        self.changes.extend(archives)
        # Retention counts against the same limit; what does not fit waits for a later
        # apply (oldest versions first), so retention alone never trips the guard.
        room = len(retention) if self.options.allow_mass_archive else limit - len(archives)
        room = max(room, 0)
        if len(retention) > room:
            self.diagnostics.append(
                diag.warning(
                    "retention-deferred",
                    f"{len(retention) - room} of {len(retention)} version archive(s) planned by "
                    f"retention deferred: the archive limit is {limit} per plan (with "
                    f"{len(archives)} environment archive(s)); later applies continue, or "
                    "pass --allow-mass-archive",
                )
            )
        self.changes.extend(retention[:room])

    # -- consumers in the repository (cross-environment rules) -------------------------

    def _spare_referenced(
        self, archives: list[Change], retention: list[Change]
    ) -> tuple[list[Change], list[Change]]:
        """Retention never archives a version a consumer pins; an archive of an environment
        (or version) consumers still reference is refused, naming each of them."""
        index = self.desired.consumers
        if index is None or (not archives and not retention):
            return archives, retention
        from reconciler.core.governance.pins import consumer_list, pinned_versions

        pinned = pinned_versions(index)
        kept = [c for c in retention if c.version not in pinned.get(c.name, ())]
        if self.options.allow_referenced_archive:
            return archives, kept
        for change in archives:
            users = index.of(change.name)
            if change.version is not None:
                users = [r for r in users if r.version == change.version]
            if users:
                self.diagnostics.append(
                    diag.error(
                        "archive-referenced",
                        f"{change.target} would be archived ({change.reason}) but "
                        f"{len(users)} consumer(s) in the repository still use it: "
                        f"{consumer_list(users)}; move them first (`reconciler refs "
                        f"{change.name}`), or pass --allow-referenced-archive",
                        change.source_path,
                    )
                )
        return archives, kept

    def _reference_findings(self) -> None:
        index = self.desired.consumers
        if index is None:
            return
        from reconciler.core.governance.pins import Levels, Scope, reference_findings

        created = {
            c.name: c.version
            for c in self.changes
            if c.action in (Action.CREATE, Action.NEW_VERSION) and c.version is not None
        }
        self.diagnostics.extend(
            reference_findings(
                index,
                self.desired,
                self.actual,
                created,
                Levels(self.options.reference_levels),
                Scope(self.options.registry_scope),
            )
        )


def _with_reason(change: Change, reason: str) -> Change:
    return replace(change, reason=reason)


def _content_view(content: Mapping[str, Any]) -> dict[str, Any]:
    """Content for a field diff: build context files as a path -> blob mapping."""
    view = {k: v for k, v in content.items() if k != "format"}
    build = view.get("build")
    if isinstance(build, dict) and "files" in build:
        build = dict(build)
        build["files"] = {path: f"{mode}:{blob[:12]}" for path, mode, blob in build["files"]}
        view["build"] = build
    return view


def make_plan(
    desired: DesiredState,
    actual: RegistryState,
    selection: Selection,
    options: PlanOptions | None = None,
    memo: PlanMemo | None = None,
) -> Plan:
    """``memo`` (kept by a long-running reconciler) only makes it faster."""
    return _Planner(desired, actual, selection, options or PlanOptions(), memo).run()
