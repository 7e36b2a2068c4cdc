"""The planner: desired state + actual state -> a Plan (a value). No I/O.

The plan is a fold over the environments in git (each planned by the pure function of
plan/environment.py) plus the rules that look across environments: archives of what left
git, retention and the archive guard. A plan lists typed changes (what git asks for) and
drift (what someone changed in the registry outside git) separately. Apply consumes a plan
and nothing else.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.core.desired.selection import Selection
from reconciler.core.desired.types import DesiredState
from reconciler.core.plan.environment import because, plan_environment, stamp_write
from reconciler.core.plan.memo import PlanMemo
from reconciler.core.plan.options import PlanOptions
from reconciler.core.plan.types import (
    APPLY_ORDER,
    Action,
    Change,
    EnvironmentPlan,
    Plan,
    Reason,
)
from reconciler.core.spec import diagnostics as diag
from reconciler.core.spec.diagnostics import Diagnostic
from reconciler.core.spec.model import RegisteredContainer, RegistryState


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
        self._plan_environments()
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

    def _plan_environments(self) -> None:
        """The fold: each environment's plan, looked up by its inputs when a memo is kept."""
        commit, options, memo = self.desired.commit, self.options, self.memo
        if memo is not None:
            memo.start((commit, options))
        kept: dict[str, EnvironmentPlan] = {}
        containers = self.actual.containers
        for name, desired in self.desired.environments.items():
            container = containers.get(name)
            found = memo.hit(name, desired, container) if memo is not None else None
            if found is None:
                found = plan_environment(desired, container, commit, options)
            if found.changes or found.drift or found.diagnostics or found.retention:
                self.changes.extend(found.changes)
                self.drift.extend(found.drift)
                self.diagnostics.extend(found.diagnostics)
                self.retention.extend(found.retention)
            self.noops.extend(found.noops)
            if memo is not None:
                kept[name] = found
        if memo is not None:
            memo.environments = kept

    def _managed_active(self, name: str, container: RegisteredContainer) -> bool:
        if self.memo is None:
            return not container.archived and container.managed
        return self.memo.managed_active(name, container)

    # -- environments gone from git ---------------------------------------------------

    def _plan_archives(self) -> None:
        archives: list[Change] = []
        managed_active = 0
        commit = self.desired.commit
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
                name=name,
                action=Action.ARCHIVE,
                reason=Reason.REMOVED_FROM_GIT,
                detail=(("path", owner),),
                previous_version=newest.version if newest else None,
                write=stamp_write(stamped, True, commit) if stamped else None,
                source_path=owner,
                stamp_version=stamped.version if stamped else None,
            )
            if container.archive_stamped:
                archive = because(archive, Reason.RESTORED_OUTSIDE_GIT, path=owner)
                if not self.options.self_heal:
                    self.drift.append(archive)
                    continue
                archive = replace(archive, self_heal=True)
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
                        f"{change.target} would be archived ({change.why}) but "
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


def make_plan(
    desired: DesiredState,
    actual: RegistryState,
    selection: Selection,
    options: PlanOptions | None = None,
    memo: PlanMemo | None = None,
) -> Plan:
    """``memo`` (kept by a long-running reconciler) only makes it faster."""
    return _Planner(desired, actual, selection, options or PlanOptions(), memo).run()
