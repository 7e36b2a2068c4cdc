"""Each engine verb called directly (engine/<verb>.py), on a real git repository and a
real SQLite registry: the Engine only wires ports, the verbs do the work."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from reconciler.adapters.gitsource import GitSource
from reconciler.adapters.inventory import Inventory
from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.desired.selection import Selection
from reconciler.core.plan.options import PlanOptions
from reconciler.core.plan.types import Action, Reason
from reconciler.engine import ApplyRefused, Engine
from reconciler.engine import apply as apply_verb
from reconciler.engine import build as build_verb
from reconciler.engine import diff as diff_verb
from reconciler.engine import drift as drift_verb
from reconciler.engine import inspect as inspect_verb
from reconciler.engine import plan as plan_verb
from reconciler.engine import read as read_verb
from reconciler.ports import BuildError, NotFound
from tests.conftest import CONDA, Cli, GitRepo, conda_env, image_env


def seed(repo: GitRepo) -> None:
    repo.write("environments/base.yml", image_env("base", description="Base image"))
    repo.write("environments/pydata/env.yml", conda_env("pydata", tags="team: ds"))
    repo.write("environments/pydata/conda.yml", CONDA)
    repo.commit("seed")


def engine_of(repo: GitRepo) -> Engine:
    source = GitSource(repo.root)
    repo.registry_db.parent.mkdir(exist_ok=True)
    registry = SqliteRegistry(repo.registry_db)
    return Engine(
        source,
        registry,
        Selection(),
        PlanOptions(owner=source.default_owner()),
        inventory=Inventory(repo.root / ".reconciler" / "inventory", registry.url),
    )


def test_read_gives_the_desired_state(repo: GitRepo) -> None:
    seed(repo)
    desired, watch = read_verb.read(engine_of(repo), None)
    assert sorted(desired.environments) == ["base", "pydata"]
    assert not desired.has_errors
    assert watch is not None and "environments" in watch


def test_plan_then_apply_then_nothing_to_do(repo: GitRepo) -> None:
    seed(repo)
    engine = engine_of(repo)
    plan = plan_verb.plan(engine)
    assert [(c.action, c.name, c.reason) for c in plan.changes] == [
        (Action.CREATE, "base", Reason.NEW_ENVIRONMENT),
        (Action.CREATE, "pydata", Reason.NEW_ENVIRONMENT),
    ]
    assert plan.changes[0].why == "new environment in git"
    outcome = apply_verb.apply(engine)
    assert outcome.ok and [c.name for c in outcome.applied] == ["base", "pydata"]
    assert engine.inventory is not None
    assert engine.inventory.load() == {"base": "1", "pydata": "1"}
    assert plan_verb.plan(engine).changes == ()


def test_a_refused_apply_carries_the_plan_it_was_refused_with(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(repo)
    repo.write("environments/bad.yml", "name: bad\nimage: busybox\nimgae: typo\n")
    repo.commit("typo")
    from reconciler.core.plan import planner

    plans: list[Any] = []
    real = planner.make_plan

    def counted(*args: Any, **kwargs: Any) -> Any:
        plans.append(real(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(planner, "make_plan", counted)
    with pytest.raises(ApplyRefused) as refused:
        apply_verb.apply(engine_of(repo))
    assert len(plans) == 1  # planned once, inside the lock
    assert refused.value.plan is not None
    assert refused.value.plan.diagnostics == plans[0].diagnostics
    assert [d.rule for d in refused.value.plan.diagnostics if d.severity == "error"] == ["schema"]


def test_a_refused_apply_is_reported_once_through_the_cli(
    repo: GitRepo, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(repo)
    repo.write("environments/bad.yml", "name: bad\nimage: busybox\nimgae: typo\n")
    repo.commit("typo")
    from reconciler.core.plan import planner

    calls: list[int] = []
    real = planner.make_plan

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(planner, "make_plan", counted)
    code, document = cli.json("apply")
    assert code == 1 and len(calls) == 1
    assert document["error"].startswith("apply refused: 1 error(s)")
    assert [d["rule"] for d in document["plan"]["diagnostics"]] == ["schema"]
    assert [c["name"] for c in document["plan"]["changes"]] == ["base", "pydata"]


def test_drift_diff_and_inspect(repo: GitRepo) -> None:
    seed(repo)
    engine = engine_of(repo)
    apply_verb.apply(engine)
    report = drift_verb.drift(engine, None)
    assert not report.drift_found and not report.has_errors
    repo.write("environments/base.yml", image_env("base", description="Changed"))
    document = diff_verb.version_diff(engine, ("base", "1"), None)
    assert not document["identical"]
    state = inspect_verb.containers(engine)
    assert sorted(state.containers) == ["base", "pydata"]
    container, records = inspect_verb.container(engine, "pydata")
    assert [v.version for v in container.versions] == ["1"] and records == {}
    with pytest.raises(NotFound, match="no environment 'nope'"):
        inspect_verb.history(engine, "nope")
    evidence = inspect_verb.evidence(engine, datetime(2030, 1, 1, tzinfo=UTC))
    assert evidence["summary"]["environments"] == 2


def test_build_needs_builds_configured(repo: GitRepo) -> None:
    seed(repo)
    with pytest.raises(BuildError, match="builds are not configured"):
        build_verb.build(engine_of(repo), "base")
