"""The verbs of the reconciler, one module each, and the Engine that wires the ports.

- read.py: git's desired state (validate);
- plan.py: the plan, its document (cached), saved plans, pull request plans;
- apply.py: apply a plan (or a saved plan) under the lock, with retries;
- drift.py: the drift report (observations through the ports);
- diff.py: two versions side by side;
- build.py: build an environment's image now; build_runner.py runs builds;
- inspect.py: what the registry holds (list, show, history, evidence).
"""

from typing import TYPE_CHECKING, Any

from reconciler.engine.refusal import ApplyRefused
from reconciler.engine.wiring import Engine

if TYPE_CHECKING:
    from reconciler.core.plan.types import ApplyOutcome

__all__ = ["ApplyOutcome", "ApplyRefused", "Engine"]


def __getattr__(name: str) -> Any:
    # The plan's types are imported when used, not when a cached plan is answered.
    if name == "ApplyOutcome":
        from reconciler.core.plan.types import ApplyOutcome

        return ApplyOutcome
    raise AttributeError(name)
