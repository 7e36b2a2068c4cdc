"""Per-environment planning results kept between plans of a long-running reconciler.

Planning one environment is a function of its desired environment, its registered
container, the commit and the options only. The desired-state memo and the kept registry
state hand back the very same immutable objects for what did not change, so an identity
check is enough to reuse a result: it is what planning that environment again would give.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.core.desired.types import DesiredEnvironment
    from reconciler.core.plan.types import Change, EnvironmentPlan
    from reconciler.core.spec.model import RegisteredContainer

# More changed names than this: the fold runs over every environment (as cheap by then).
MAX_CHANGED_NAMES = 500


@dataclass(slots=True)
class PlanMemo:
    key: Any = None  # what every result depends on besides its two inputs
    environments: dict[str, EnvironmentPlan] = field(default_factory=dict)
    # name -> (container, active and managed): counted for the archive guard
    active: dict[str, tuple[RegisteredContainer, bool]] = field(default_factory=dict)
    # The last completed plan's inputs (git's environments, the registry's containers) and
    # what its fold gathered: the names with anything to say, in order, and every no-op;
    # the managed active count and the managed names gone from git (for archives).
    inputs: tuple[Mapping[str, DesiredEnvironment], Mapping[str, RegisteredContainer]] | None = None
    notable: list[str] = field(default_factory=list)
    noops: list[Change] = field(default_factory=list)
    archive_scan: tuple[int, list[str]] | None = None
    patches: int = 0  # for tests: how many folds visited only the changed names

    def start(self, key: Any) -> None:
        if key != self.key:
            self.key = key
            self.environments = {}
            self.inputs = None

    def changed(
        self,
        environments: Mapping[str, DesiredEnvironment],
        containers: Mapping[str, RegisteredContainer],
    ) -> set[str] | None:
        """The names whose environment or container is not the same object as in the last
        completed plan; None: unknown (no such plan, or names came or went). The memo is
        marked incomplete until ``completed``, so a plan that fails half way is not
        patched from."""
        last, self.inputs = self.inputs, None
        if last is None:
            return None
        old_environments, old_containers = last
        if len(environments) != len(old_environments) or len(containers) != len(old_containers):
            return None
        out: set[str] = set()
        for new, old in ((environments, old_environments), (containers, old_containers)):
            for name, value in new.items():
                if old.get(name) is not value:
                    if name not in old:
                        return None
                    out.add(name)
        return out if len(out) <= MAX_CHANGED_NAMES else None

    def completed(
        self,
        environments: Mapping[str, DesiredEnvironment],
        containers: Mapping[str, RegisteredContainer],
    ) -> None:
        self.inputs = (environments, containers)

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
