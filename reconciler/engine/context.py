"""The ports one engine works with, wired together: what every verb is given.

Verb modules take a Context; the Engine (engine/wiring.py) is a Context with one method
per verb.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.core.desired.selection import Selection
from reconciler.core.plan.options import PlanOptions
from reconciler.ports import (
    AppliedStore,
    BaseImages,
    Cache,
    ImageRegistry,
    NoCache,
    Progress,
    QuietProgress,
    Registry,
    Source,
    Stage,
)

if TYPE_CHECKING:
    from datetime import date

    from reconciler.core.desired.consumers import ConsumerSettings
    from reconciler.core.governance.policy import Policy
    from reconciler.engine.build_runner import BuildRunner


@dataclass
class Context:
    source: Source
    registry: Registry
    selection: Selection
    options: PlanOptions = field(default_factory=PlanOptions)
    cache: Cache = field(default_factory=NoCache)
    lock_timeout: float = 60.0
    progress: Progress = field(default_factory=QuietProgress)  # a terminal's display
    builds: BuildRunner | None = None  # None: registering only, no images
    inventory: AppliedStore | None = None  # what was applied, for `missing` drift
    policy: Policy | None = None  # governance rules (see core/governance/policy.py)
    images: ImageRegistry | None = None  # drift: what the OCI registry holds
    bases: BaseImages | None = None  # drift: what base image references point at now
    consumers: ConsumerSettings | None = None  # which files to scan for references (None: none)
    stage: Stage | None = None  # one of several targets (see engine/promote.py); None: the only one
    # Build targets by environment, reused while its environment and container are the
    # same objects (a long-running reconciler's kept state); see engine/apply.py.
    targets: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def today(self) -> date:
        """The date policy exceptions are judged at (UTC)."""
        from datetime import UTC, datetime

        return datetime.now(UTC).date()
