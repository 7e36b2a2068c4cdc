"""The Engine: the ports a reconciler works with (a Context), and one method per verb.

Each verb lives in a module of its own (read, plan, apply, drift, diff, build, inspect);
the methods here only hand the ports to it. Verb modules are imported when called, so a
plan answered from the cache never imports the planner.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reconciler.engine.context import Context

if TYPE_CHECKING:
    from reconciler.core.build.jobs import BuildOutcome, BuildRecord
    from reconciler.core.desired.consumers import ConsumerIndex
    from reconciler.core.desired.types import DesiredState
    from reconciler.core.drift.report import DriftClass, DriftReport
    from reconciler.core.plan.types import ApplyOutcome, Plan
    from reconciler.core.spec.diagnostics import Diagnostic
    from reconciler.core.spec.model import RegisteredContainer, RegistryState
    from reconciler.engine.plan import Validity


class Engine(Context):
    # -- read -----------------------------------------------------------------------

    def desired(self, ref: str | None = None, only: Iterable[str] | None = None) -> DesiredState:
        from reconciler.engine.read import read

        return read(self, ref, only)[0]

    # -- plan -----------------------------------------------------------------------

    def plan(self, ref: str | None = None) -> Plan:
        from reconciler.engine.plan import plan

        return plan(self, ref)

    def plan_document(self, ref: str | None = None) -> dict[str, Any]:
        from reconciler.engine.plan import plan_document

        return plan_document(self, ref)

    def checked_plan_document(
        self, ref: str | None = None
    ) -> tuple[dict[str, Any], Validity | None]:
        from reconciler.engine.plan import checked_plan_document

        return checked_plan_document(self, ref)

    def saved_plan(self, ref: str | None = None) -> dict[str, Any]:
        from reconciler.engine.plan import saved_plan

        return saved_plan(self, ref)

    def pull_request_plan(self, base: str, head: str) -> dict[str, Any]:
        from reconciler.engine.plan import pull_request_plan

        return pull_request_plan(self, base, head)

    def plan_with_state(self, ref: str | None = None) -> tuple[Plan, DesiredState, RegistryState]:
        from reconciler.engine.plan import plan_with_state

        return plan_with_state(self, ref)

    def reference_findings(self, state: DesiredState) -> list[Diagnostic]:
        from reconciler.engine.consumers import reference_findings

        return reference_findings(self, state)

    # -- inspect --------------------------------------------------------------------

    def containers(self) -> RegistryState:
        from reconciler.engine.inspect import containers

        return containers(self)

    def container(
        self, name: str
    ) -> tuple[RegisteredContainer, dict[tuple[str, str], BuildRecord]]:
        from reconciler.engine.inspect import container

        return container(self, name)

    def history(self, name: str) -> tuple[RegisteredContainer, list[dict[str, Any]]]:
        from reconciler.engine.inspect import history

        return history(self, name)

    def evidence(
        self,
        now: datetime,
        consumers: ConsumerIndex | None = None,
        state: RegistryState | None = None,
    ) -> dict[str, Any]:
        from reconciler.engine.inspect import evidence

        return evidence(self, now, consumers, state)

    # -- apply ----------------------------------------------------------------------

    def apply(self, ref: str | None = None) -> ApplyOutcome:
        from reconciler.engine.apply import apply

        return apply(self, ref)

    def apply_saved(self, data: Any, where: str) -> ApplyOutcome:
        from reconciler.engine.apply import apply_saved

        return apply_saved(self, data, where)

    # -- drift, diff, build -----------------------------------------------------------

    def drift(self, ref: str | None, fail_on: Iterable[DriftClass] | None = None) -> DriftReport:
        from reconciler.engine.drift import drift

        return drift(self, ref, fail_on)

    def version_diff(
        self, left: tuple[str, str], right: tuple[str, str] | None, ref: str | None = None
    ) -> dict[str, Any]:
        from reconciler.engine.diff import version_diff

        return version_diff(self, left, right, ref)

    def build(self, name: str, version: str | None = None, ref: str | None = None) -> BuildOutcome:
        from reconciler.engine.build import build

        return build(self, name, version, ref)
