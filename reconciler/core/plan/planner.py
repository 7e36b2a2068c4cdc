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
        self.changed: set[str] | None = None  # names whose inputs changed since the memo's plan

    def run(self) -> Plan:
        self._plan_environments()
        self._plan_archives()
        self._reference_findings()
        if self.memo is not None:
            self.memo.completed(self.desired.environments, self.actual.containers)
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
        """The fold: each environment's plan, looked up by its inputs when a memo is kept;
        with a memo of the last plan, only the names whose inputs changed are visited."""
        commit, options, memo = self.desired.commit, self.options, self.memo
        environments, containers = self.desired.environments, self.actual.containers
        if memo is not None:
            memo.start((commit, options))
            self.changed = memo.changed(environments, containers)
            if self.changed is not None:
                self._patch_environments(memo, self.changed)
                return
        kept: dict[str, EnvironmentPlan] = {}
        notable: list[str] = []
        for name, desired in environments.items():
            container = containers.get(name)
            found = memo.hit(name, desired, container) if memo is not None else None
            if found is None:
                found = plan_environment(desired, container, commit, options)
            if _notable(found):
                self._gather(found)
                notable.append(name)
            self.noops.extend(found.noops)
            if memo is not None:
                kept[name] = found
        if memo is not None:
            memo.environments = kept
            memo.notable = notable
            memo.noops = list(self.noops)

    def _patch_environments(self, memo: PlanMemo, changed: set[str]) -> None:
        """The last plan's fold, with the changed names planned again (the same names in
        the same order, so what they gather keeps its place)."""
        commit, options = self.desired.commit, self.options
        environments, containers = self.desired.environments, self.actual.containers
        memo.patches += 1
        notable_moved = noops_moved = False
        for name in changed:
            desired = environments.get(name)
            if desired is None:
                continue  # a container alone: archives look at it
            container = containers.get(name)
            found = memo.hit(name, desired, container)
            if found is None:
                found = plan_environment(desired, container, commit, options)
            old = memo.environments.get(name)
            memo.environments[name] = found
            if old is None or _notable(old) != _notable(found):
                notable_moved = True
            if old is None or old.noops != found.noops:
                noops_moved = True
        if notable_moved:
            memo.notable = [n for n, found in memo.environments.items() if _notable(found)]
        if noops_moved:
            memo.noops = [c for found in memo.environments.values() for c in found.noops]
        for name in memo.notable:
            self._gather(memo.environments[name])
        self.noops = list(memo.noops)

    def _gather(self, found: EnvironmentPlan) -> None:
        self.changes.extend(found.changes)
        self.drift.extend(found.drift)
        self.diagnostics.extend(found.diagnostics)
        self.retention.extend(found.retention)

    def _managed_active(self, name: str, container: RegisteredContainer) -> bool:
        if self.memo is None:
            return not container.archived and container.managed
        return self.memo.managed_active(name, container)

    # -- environments gone from git ---------------------------------------------------

    def _gone_from_git(self) -> tuple[int, list[str]]:
        """How many containers are managed and active, and which of them git no longer
        holds (in the registry's order); from the memo's last answer when only some
        containers changed and no name came or went."""
        memo, changed = self.memo, self.changed
        environments, containers = self.desired.environments, self.actual.containers
        if memo is not None and changed is not None and memo.archive_scan is not None:
            count, gone = memo.archive_scan
            for name in changed:
                container = containers.get(name)
                if container is None:
                    continue
                before = memo.active.get(name)
                now = self._managed_active(name, container)
                if before is None or (before[1] != now and name not in environments):
                    break  # the list of names gone from git moves: scan again
                count += now - before[1]
            else:
                memo.archive_scan = (count, gone)
                return count, gone
        count, gone = 0, []
        for name, container in containers.items():
            if not self._managed_active(name, container):
                continue
            count += 1
            if name not in environments:
                gone.append(name)
        if memo is not None:
            memo.archive_scan = (count, gone)
        return count, gone

    def _plan_archives(self) -> None:
        archives: list[Change] = []
        commit = self.desired.commit
        managed_active, gone = self._gone_from_git()
        for name in gone:
            container = self.actual.containers[name]
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


def _notable(found: EnvironmentPlan) -> bool:
    return bool(found.changes or found.drift or found.diagnostics or found.retention)


def make_plan(
    desired: DesiredState,
    actual: RegistryState,
    selection: Selection,
    options: PlanOptions | None = None,
    memo: PlanMemo | None = None,
) -> Plan:
    """``memo`` (kept by a long-running reconciler) only makes it faster."""
    return _Planner(desired, actual, selection, options or PlanOptions(), memo).run()
