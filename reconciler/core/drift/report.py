"""The drift report: every environment classified against git, as a value. No I/O.

Classes, after driftctl and Argo CD: `pending` (git moved, the registry has not yet),
`out_of_band` (the registry was changed outside git), `missing` (applied once, gone
now), `unmanaged` (no ownership stamp), `build` (the image is missing, failed or never
built), `base_image_moved` (a base tag now points elsewhere than when it was built) and
`finding` (advice: unpinned packages, floating tags). What could not be checked is listed
as `unknown`, never as drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.core.build.jobs import BuildRecord, BuildStatus, image_tag
from reconciler.core.desired.types import DesiredState
from reconciler.core.governance.findings import environment_findings
from reconciler.core.governance.package_diff import PackageDiff, diff_document
from reconciler.core.plan.types import Action, Change, Plan
from reconciler.core.spec.fielddiff import FieldChange
from reconciler.core.spec.model import RegistryState

DRIFT_FORMAT_VERSION = 1


class DriftClass(StrEnum):
    PENDING = "pending"
    OUT_OF_BAND = "out_of_band"
    MISSING = "missing"
    UNMANAGED = "unmanaged"
    BUILD = "build"
    BASE_IMAGE_MOVED = "base_image_moved"
    FINDING = "finding"


# What makes `drift` exit 2 unless --fail-on says otherwise: everything that means the
# registry does not match git. Unmanaged assets and findings are reported, not failed on.
DEFAULT_FAIL_ON = frozenset(
    {
        DriftClass.PENDING,
        DriftClass.OUT_OF_BAND,
        DriftClass.MISSING,
        DriftClass.BUILD,
        DriftClass.BASE_IMAGE_MOVED,
    }
)


def parse_classes(text: str) -> frozenset[DriftClass]:
    """`--fail-on` values: a comma list of classes (`-` or `_`), `all`, `none` or `default`."""
    words = [w.strip().lower().replace("-", "_") for w in text.split(",") if w.strip()]
    out: set[DriftClass] = set()
    for word in words:
        if word == "all":
            out.update(DriftClass)
        elif word == "default":
            out.update(DEFAULT_FAIL_ON)
        elif word != "none":
            try:
                out.add(DriftClass(word))
            except ValueError:
                known = ", ".join(c.value for c in DriftClass)
                raise ValueError(
                    f"unknown drift class {word!r}; expected one of: {known}, all, none, default"
                ) from None
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class DriftItem:
    cls: DriftClass
    reason: str
    version: str | None = None
    action: str | None = None  # what apply (or apply --self-heal) would do about it
    fields: tuple[FieldChange, ...] = ()
    path: str | None = None
    line: int | None = None
    severity: str | None = None  # findings only
    rule: str | None = None  # findings only
    packages: PackageDiff | None = None  # pending new versions: what changed, by package

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "class": self.cls.value,
            "reason": self.reason,
            "version": self.version,
            "action": self.action,
            "fields": [f.to_dict() for f in self.fields],
            "path": self.path,
            "line": self.line,
        }
        if self.severity is not None:
            doc["severity"] = self.severity
            doc["rule"] = self.rule
        doc.update(diff_document(self.packages))
        return doc


@dataclass
class EnvironmentReport:
    name: str
    in_git: bool
    managed: bool
    source_path: str | None = None
    line: int | None = None
    latest_version: str | None = None
    archived: bool = False
    items: list[DriftItem] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # checks that could not be made

    @property
    def classes(self) -> list[DriftClass]:
        return sorted({i.cls for i in self.items}, key=list(DriftClass).index)

    @property
    def status(self) -> str:
        drifting = [c for c in self.classes if c not in (DriftClass.FINDING, DriftClass.UNMANAGED)]
        if drifting:
            return "drift"
        if DriftClass.UNMANAGED in self.classes:
            return "unmanaged"
        return "in_sync"


@dataclass(frozen=True, slots=True)
class Observations:
    """What the engine looked up for the report (all optional: missing means unknown)."""

    applied: Mapping[str, str] = field(default_factory=dict)  # name -> version applied
    build_records: Mapping[tuple[str, str], BuildRecord] = field(default_factory=dict)
    builds_configured: bool = False
    build_targets: Mapping[str, str] = field(default_factory=dict)  # name -> version in git
    image_tags: frozenset[str] | None = None  # tags in the OCI image repository
    image_lookup_error: str | None = None
    base_digests: Mapping[str, str | None] = field(default_factory=dict)  # ref -> digest now
    base_errors: Mapping[str, str] = field(default_factory=dict)  # ref -> why unknown
    dockerfile_bases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    finding_lines: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (path, text)


@dataclass
class DriftReport:
    environments: list[EnvironmentReport]
    plan: Plan
    fail_on: frozenset[DriftClass]
    coverage: tuple[int, int]  # managed, total active containers
    builds_configured: bool
    # name -> the files in the repository that use it (see governance/documents.py)
    consumers: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)

    def count(self, cls: DriftClass) -> int:
        return sum(1 for e in self.environments if cls in e.classes)

    @property
    def drift_found(self) -> bool:
        return any(c in self.fail_on for e in self.environments for c in e.classes)

    @property
    def has_errors(self) -> bool:
        return self.plan.has_errors


def _item(change: Change, cls: DriftClass, reason: str | None = None) -> DriftItem:
    return DriftItem(
        cls,
        reason or change.why,
        change.version or change.previous_version,
        change.action.value,
        change.fields,
        change.source_path,
        packages=change.packages,
    )


class _Classifier:
    def __init__(
        self, plan: Plan, desired: DesiredState, state: RegistryState, seen: Observations
    ) -> None:
        self.plan, self.desired, self.state, self.seen = plan, desired, state, seen
        self.reports: dict[str, EnvironmentReport] = {}

    def env(self, name: str) -> EnvironmentReport:
        report = self.reports.get(name)
        if report is None:
            wanted = self.desired.environments.get(name)
            container = self.state.containers.get(name)
            newest = container.newest if container else None
            report = EnvironmentReport(
                name,
                in_git=wanted is not None,
                managed=bool(container and container.managed),
                source_path=wanted.source_path
                if wanted
                else (container.owner_path() if container else None),
                line=wanted.line if wanted else None,
                latest_version=newest.version if newest else None,
                archived=bool(container and container.archived),
            )
            self.reports[name] = report
        return report

    def run(self) -> list[EnvironmentReport]:
        for name in self.desired.environments:
            self.env(name)
        self._plan_items()
        self._registry_items()
        self._build_items()
        self._findings()
        return sorted(self.reports.values(), key=lambda r: r.name)

    def _plan_items(self) -> None:
        for change in self.plan.changes:
            applied = self.seen.applied.get(change.name)
            container = self.state.containers.get(change.name)
            lost = applied is not None and (container is None or container.get(applied) is None)
            if lost and change.action in (Action.CREATE, Action.NEW_VERSION):
                reason = (
                    f"applied before as version {applied}, but not in the registry now; "
                    f"apply will {change.action.value.replace('_', ' ')} it"
                )
                self.env(change.name).items.append(_item(change, DriftClass.MISSING, reason))
            else:
                self.env(change.name).items.append(_item(change, DriftClass.PENDING))
        for change in self.plan.drift:
            self.env(change.name).items.append(_item(change, DriftClass.OUT_OF_BAND))

    def _registry_items(self) -> None:
        for name, container in self.state.containers.items():
            if container.archived and name not in self.desired.environments:
                continue  # archived and out of git: as it should be
            if not container.managed:
                if not container.archived:
                    self.env(name).items.append(
                        DriftItem(
                            DriftClass.UNMANAGED,
                            "in the registry without an ownership stamp: not managed from git",
                            container.newest.version if container.newest else None,
                        )
                    )
                continue
            report = self.env(name)
            # the planner already reports a hand-made latest version it would replace
            replaced = any(
                i.cls is DriftClass.OUT_OF_BAND and i.action == Action.NEW_VERSION.value
                for i in report.items
            )
            newest = container.newest_managed()
            for version in container.versions:
                if version.managed or (replaced and version is container.newest):
                    continue
                after = newest is not None and version.created_at > newest.created_at
                if not after:
                    continue  # older than the managed history: adopted or pre-existing
                report.items.append(
                    DriftItem(
                        DriftClass.OUT_OF_BAND,
                        f"version {version.version} was created in the registry outside git",
                        version.version,
                    )
                )

    def _build_items(self) -> None:
        seen = self.seen
        if not seen.builds_configured:
            return
        for name, version in seen.build_targets.items():
            wanted = self.desired.environments.get(name)
            if wanted is None:
                continue
            build = wanted.content.get("build")
            if isinstance(build, Mapping) and "url" in build:
                continue  # URL contexts are built by the service
            report = self.env(name)
            record = seen.build_records.get((name, version))
            path = wanted.source_path
            if record is None or record.digest != wanted.digest:
                report.items.append(
                    DriftItem(DriftClass.BUILD, "never built", version, "build", path=path)
                )
                continue
            if record.status is BuildStatus.NOT_BUILT:
                why = f": {record.message}" if record.message else ""
                report.items.append(
                    DriftItem(DriftClass.BUILD, f"never built{why}", version, "build", path=path)
                )
            elif record.status is BuildStatus.FAILED:
                where = f" (log: {record.log_path})" if record.log_path else ""
                report.items.append(
                    DriftItem(
                        DriftClass.BUILD,
                        f"build failed: {record.message}{where}",
                        version,
                        "build",
                        path=path,
                    )
                )
            elif record.status is not BuildStatus.SUCCEEDED:
                report.items.append(
                    DriftItem(
                        DriftClass.BUILD,
                        f"build {record.status.value} and never finished (interrupted?)",
                        version,
                        "build",
                        path=path,
                    )
                )
            elif seen.image_tags is None:
                report.unknown.append(
                    f"image of {name}:{version}: {seen.image_lookup_error or 'not checked'}"
                )
            elif image_tag(record.digest) not in seen.image_tags:
                report.items.append(
                    DriftItem(
                        DriftClass.BUILD,
                        f"image {record.image or image_tag(record.digest)} is missing from the "
                        "OCI registry",
                        version,
                        "build",
                        path=path,
                    )
                )
            else:
                self._base_items(report, version, record)

    def _base_items(self, report: EnvironmentReport, version: str, record: BuildRecord) -> None:
        for ref, then in record.bases.items():
            if then is None:
                report.unknown.append(f"base image {ref}: its digest was not known at build time")
                continue
            if ref in self.seen.base_errors:
                report.unknown.append(f"base image {ref}: {self.seen.base_errors[ref]}")
                continue
            if ref not in self.seen.base_digests:
                continue
            now = self.seen.base_digests[ref]
            if now == then:
                continue
            reason = (
                f"base image {ref} no longer exists in its registry"
                if now is None
                else f"base image {ref} now points to another image than the one built on"
            )
            report.items.append(
                DriftItem(
                    DriftClass.BASE_IMAGE_MOVED,
                    reason,
                    version,
                    "build",
                    (FieldChange(f"base[{ref}]", then, now, "changed"),),
                    self.desired.environments[report.name].source_path,
                )
            )

    def _findings(self) -> None:
        for name, wanted in self.desired.environments.items():
            report = self.env(name)
            for finding in environment_findings(wanted, self.seen.dockerfile_bases.get(name, ())):
                line = finding.line
                if line is None and finding.path is not None:
                    line = self.seen.finding_lines.get((finding.path, finding.subject))
                report.items.append(
                    DriftItem(
                        DriftClass.FINDING,
                        finding.message,
                        None,
                        None,
                        (),
                        finding.path,
                        line,
                        finding.severity,
                        finding.rule,
                    )
                )


def make_report(
    plan: Plan,
    desired: DesiredState,
    state: RegistryState,
    seen: Observations,
    fail_on: Iterable[DriftClass] = DEFAULT_FAIL_ON,
) -> DriftReport:
    environments = _Classifier(plan, desired, state, seen).run()
    active = [c for c in state.containers.values() if not c.archived]
    coverage = (sum(1 for c in active if c.managed), len(active))
    from reconciler.core.governance.documents import consumers_by_version

    consumers = consumers_by_version(desired.consumers, (e.name for e in environments))
    return DriftReport(
        environments, plan, frozenset(fail_on), coverage, seen.builds_configured, consumers
    )


def finding_subjects(desired: DesiredState, seen: Observations) -> set[tuple[str, str]]:
    """(file, text) pairs whose line the engine may look up for annotations."""
    out: set[tuple[str, str]] = set()
    for wanted in desired.environments.values():
        for finding in environment_findings(wanted, seen.dockerfile_bases.get(wanted.name, ())):
            if finding.line is None and finding.path and finding.subject:
                out.add((finding.path, finding.subject))
    return out
