"""Planning one environment: (desired environment, its container, commit, options) ->
EnvironmentPlan. A pure function of those inputs, so a result can be reused for as long
as they stay the same (see plan/memo.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reconciler.core.desired.types import DesiredEnvironment
from reconciler.core.plan.options import PlanOptions
from reconciler.core.plan.types import Action, Change, EnvironmentPlan, Reason
from reconciler.core.spec import diagnostics as diag
from reconciler.core.spec.diagnostics import Diagnostic
from reconciler.core.spec.fielddiff import content_view, field_changes
from reconciler.core.spec.model import (
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
    VersionWrite,
    metadata_digest,
    user_tags,
)


def stamps(desired: DesiredEnvironment, commit: str | None, owner: str = "") -> dict[str, str]:
    return {
        STAMP_MANAGED_BY: MANAGED_BY,
        STAMP_OWNER: owner,
        STAMP_SOURCE_PATH: desired.source_path,
        STAMP_SOURCE_COMMIT: commit or "none",
        STAMP_CONTENT_DIGEST: desired.digest,
        STAMP_METADATA_DIGEST: metadata_digest(desired.description, desired.tags),
    }


def desired_write(desired: DesiredEnvironment, commit: str | None, owner: str) -> VersionWrite:
    """The version git asks for, stamps included."""
    tags = dict(desired.tags)
    tags.update(stamps(desired, commit, owner))
    return VersionWrite(
        content=desired.content,
        digest=desired.digest,
        description=desired.description,
        tags=tags,
        datastore=desired.datastore,
    )


def stamp_write(
    version: RegisteredVersion, archived: bool, commit: str | None
) -> VersionWrite | None:
    """``version`` as it is, with the archive stamp set or cleared."""
    if version.content is None or version.effective_digest is None:
        return None  # the backend cannot return content: no stamp (reported as unknown)
    tags = dict(version.tags)
    if archived:
        tags[STAMP_ARCHIVED] = commit or "none"
    else:
        tags.pop(STAMP_ARCHIVED, None)
    return VersionWrite(
        version.content, version.effective_digest, version.description, tags, version.datastore
    )


def because(change: Change, reason: Reason, **detail: str) -> Change:
    return replace(change, reason=reason, detail=tuple(detail.items()))


def _metadata_view(
    description: str | None, tags: Mapping[str, str], path: str | None
) -> dict[str, Any]:
    view: dict[str, Any] = {"description": description, "tags": user_tags(tags)}
    if path is not None:
        view["source_path"] = path
    return view


def plan_environment(
    desired: DesiredEnvironment,
    container: RegisteredContainer | None,
    commit: str | None,
    options: PlanOptions,
) -> EnvironmentPlan:
    """What one environment in git asks of its container in the registry."""
    return _EnvironmentPlanner(desired, container, commit, options).run()


class _EnvironmentPlanner:
    """Collects one environment's results; used once, by ``plan_environment``."""

    def __init__(
        self,
        desired: DesiredEnvironment,
        container: RegisteredContainer | None,
        commit: str | None,
        options: PlanOptions,
    ) -> None:
        self.desired = desired
        self.container = container
        self.commit = commit
        self.options = options
        self.changes: list[Change] = []
        self.drift: list[Change] = []
        self.noops: list[Change] = []
        self.diagnostics: list[Diagnostic] = []
        self.retention: list[tuple[str, Change]] = []

    def run(self) -> EnvironmentPlan:
        self._plan()
        return EnvironmentPlan(
            self.desired,
            self.container,
            tuple(self.changes),
            tuple(self.drift),
            tuple(self.noops),
            tuple(self.diagnostics),
            tuple(self.retention),
        )

    def _out_of_band(self, change: Change) -> None:
        """A repair of something changed in the registry outside git: applied only with
        self-heal, else reported as drift."""
        if self.options.self_heal:
            self.changes.append(replace(change, self_heal=True))
        else:
            self.drift.append(change)

    def _write(self) -> VersionWrite:
        return desired_write(self.desired, self.commit, self.options.owner)

    def _plan(self) -> None:
        desired, container = self.desired, self.container
        if container is None or not container.versions:
            self.changes.append(
                Change(
                    name=desired.name,
                    action=Action.CREATE,
                    reason=Reason.NEW_ENVIRONMENT,
                    version=desired.version or "1",
                    write=self._write(),
                    source_path=desired.source_path,
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
        if desired.version is not None:
            self._plan_pinned(container)
        else:
            self._plan_floating(container)
        if not any(d.severity is diag.Severity.ERROR for d in self.diagnostics):
            self._plan_retention(container)
        stamped = container.newest_managed()
        if container.archived:
            restore = Change(
                name=desired.name,
                action=Action.RESTORE,
                reason=Reason.BACK_IN_GIT,
                previous_version=newest.version if newest else None,
                write=stamp_write(stamped, False, self.commit) if stamped else None,
                source_path=desired.source_path,
                stamp_version=stamped.version if stamped else None,
            )
            if container.archive_stamped or not container.managed:
                self.changes.insert(0, restore)
            elif self.changes:
                # git changed too: the change cannot land in an archived container
                self.changes.insert(0, because(restore, Reason.RESTORED_FOR_CHANGE))
            else:
                self._out_of_band(because(restore, Reason.ARCHIVED_OUTSIDE_GIT))
        elif stamped is not None and container.archive_stamped:
            # Restored (by hand, or by an apply interrupted before it cleared the stamp)
            # and in git: clear the stamp, so a later removal from git archives again.
            written = {c.version for c in self.changes}
            if stamped.version not in written:
                write = stamp_write(stamped, False, self.commit)
                if write is not None:
                    self.changes.append(
                        Change(
                            name=desired.name,
                            action=Action.UPDATE_METADATA,
                            reason=Reason.CLEAR_ARCHIVE_STAMP,
                            version=stamped.version,
                            previous_version=stamped.version,
                            write=write,
                            source_path=desired.source_path,
                        )
                    )

    def _plan_pinned(self, container: RegisteredContainer) -> None:
        desired = self.desired
        assert desired.version is not None
        existing = container.get(desired.version)
        if existing is None:
            self._new_version(
                container,
                desired.version,
                Reason.VERSION_NOT_REGISTERED,
                {"version": desired.version},
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
        self._same_content(existing, container.newest)

    def _plan_floating(self, container: RegisteredContainer) -> None:
        desired = self.desired
        newest = container.newest
        assert newest is not None
        if newest.effective_digest == desired.digest:
            self._same_content(newest, newest)
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
                container,
                container.next_version(),
                Reason.CREATED_OUTSIDE_GIT,
                {"version": newest.version},
                out_of_band=True,
            )
            return
        if older is not None:
            self._new_version(
                container,
                container.next_version(),
                Reason.EQUALS_OLDER_VERSION,
                {"version": older.version},
            )
        else:
            self._new_version(container, container.next_version(), Reason.CONTENT_CHANGED, {})

    def _new_version(
        self,
        container: RegisteredContainer,
        version: str,
        reason: Reason,
        detail: Mapping[str, str],
        out_of_band: bool = False,
    ) -> None:
        desired = self.desired
        newest = container.newest
        before = content_view(newest.content if newest and newest.content is not None else {})
        after = content_view(desired.content)
        if newest is not None:  # a new version carries git's metadata too: show its change
            before.update(_metadata_view(newest.description, newest.tags, None))
            after.update(_metadata_view(desired.description, desired.tags, None))
        change = Change(
            name=desired.name,
            action=Action.NEW_VERSION,
            reason=reason,
            detail=tuple(detail.items()),
            version=version,
            previous_version=newest.version if newest else None,
            fields=field_changes(before, after),
            write=self._write(),
            source_path=desired.source_path,
        )
        (self._out_of_band if out_of_band else self.changes.append)(change)

    def _same_content(self, existing: RegisteredVersion, newest: RegisteredVersion | None) -> None:
        desired = self.desired
        if existing.archived:
            restore = Change(
                name=desired.name,
                action=Action.RESTORE,
                reason=Reason.VERSION_ARCHIVED,
                version=existing.version,
                previous_version=newest.version if newest else None,
                source_path=desired.source_path,
            )
            if STAMP_ARCHIVED in existing.tags or not existing.managed:
                self.changes.append(restore)
            else:  # the reconciler never archived this version: someone did, by hand
                self._out_of_band(because(restore, Reason.VERSION_ARCHIVED_OUTSIDE_GIT))
        before = _metadata_view(existing.description, existing.tags, existing.source_path)
        after = _metadata_view(desired.description, desired.tags, desired.source_path)
        if before == after and existing.managed:
            self.noops.append(
                Change(
                    name=desired.name,
                    action=Action.NOOP,
                    reason=Reason.IN_SYNC,
                    version=existing.version,
                    previous_version=existing.version,
                    source_path=desired.source_path,
                )
            )
            return
        edited = existing.metadata_edited
        git_view = existing.tags.get(STAMP_METADATA_DIGEST)
        git_changed = git_view != metadata_digest(desired.description, desired.tags)
        change = Change(
            name=desired.name,
            action=Action.UPDATE_METADATA,
            reason=Reason.METADATA_CHANGED,
            version=existing.version,
            previous_version=existing.version,
            fields=field_changes(before, after),
            write=self._write(),
            source_path=desired.source_path,
        )
        if not existing.managed:
            self.changes.append(because(change, Reason.ADOPT))
        elif edited and not git_changed:
            self._out_of_band(because(change, Reason.METADATA_EDITED_OUTSIDE_GIT))
        elif edited:
            self.changes.append(because(change, Reason.METADATA_OVERWRITES_EDIT))
        elif git_changed:
            self.changes.append(because(change, Reason.METADATA_CHANGED))
        else:
            self.changes.append(because(change, Reason.SOURCE_MOVED))

    def _plan_retention(self, container: RegisteredContainer) -> None:
        """Archive the managed versions older than the newest ``keep`` active ones, as they
        will be after this plan. Never the latest, never git's version (or one with its
        content), never what git pins; only versions this repository stamped."""
        desired = self.desired
        keep = self.options.keep_versions(desired.name)
        if keep <= 0 or container.archived:
            return
        created = [
            c.version
            for c in self.changes
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
            write = stamp_write(version, True, self.commit)
            change = Change(
                name=desired.name,
                action=Action.ARCHIVE,
                reason=Reason.RETENTION,
                detail=(("keep", str(keep)),),
                version=version.version,
                previous_version=newest.version if newest else None,
                write=write,
                source_path=desired.source_path,
                stamp_version=version.version if write is not None else None,
            )
            self.retention.append((version.created_at, change))
