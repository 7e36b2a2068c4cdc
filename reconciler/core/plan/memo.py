"""Per-environment planning results kept between plans of a long-running reconciler.

Planning one environment is a function of its desired environment, its registered
container, the commit and the options only. The desired-state memo and the kept registry
state hand back the very same immutable objects for what did not change, so an identity
check is enough to reuse a result: it is what planning that environment again would give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.core.desired.types import DesiredEnvironment
    from reconciler.core.plan.types import EnvironmentPlan
    from reconciler.core.spec.model import RegisteredContainer


@dataclass(slots=True)
class PlanMemo:
    key: Any = None  # what every result depends on besides its two inputs
    environments: dict[str, EnvironmentPlan] = field(default_factory=dict)
    # name -> (container, active and managed): counted for the archive guard
    active: dict[str, tuple[RegisteredContainer, bool]] = field(default_factory=dict)

    def start(self, key: Any) -> None:
        if key != self.key:
            self.key = key
            self.environments = {}

    def hit(
        self, name: str, desired: DesiredEnvironment, container: RegisteredContainer | None
    ) -> EnvironmentPlan | None:
        found = self.environments.get(name)
        if found is not None and found.desired is desired and found.container is container:
            return found
        return None

    def managed_active(self, name: str, container: RegisteredContainer) -> bool:
        found = self.active.get(name)
        if found is not None and found[0] is container:
            return found[1]
        value = not container.archived and container.managed
        self.active[name] = (container, value)
        return value
