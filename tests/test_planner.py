"""The planner on plain data: no git, no SQLite."""

from __future__ import annotations

from typing import Any

from reconciler.core.desired.selection import Selection
from reconciler.core.desired.types import DesiredEnvironment, DesiredState
from reconciler.core.plan.environment import stamps
from reconciler.core.plan.options import PlanOptions
from reconciler.core.plan.planner import make_plan
from reconciler.core.spec.digest import build_content, content_digest
from reconciler.core.spec.model import (
    STAMP_ARCHIVED,
    STAMP_METADATA_DIGEST,
    RegisteredContainer,
    RegisteredVersion,
    RegistryState,
)


def content(image: str) -> dict[str, Any]:
    return build_content(
        image=image, conda=None, build=None, os_type="linux", inference_config=None
    )


def desired(
    name: str,
    image: str = "img:1",
    version: str | None = None,
    tags: dict[str, str] | None = None,
    description: str | None = None,
) -> DesiredEnvironment:
    body = content(image)
    return DesiredEnvironment(
        name,
        version,
        description,
        tags or {},
        body,
        content_digest(body),
        None,
        f"environments/{name}.yml",
    )


def state(*envs: DesiredEnvironment, errors: bool = False) -> DesiredState:
    from reconciler.core.spec import diagnostics as diag

    found = [diag.error("schema", "broken", "environments/x.yml")] if errors else []
    return DesiredState({e.name: e for e in envs}, found, "c0ffee", "working tree")


def registered(
    env: DesiredEnvironment,
    version: str = "1",
    archived: bool = False,
    managed: bool = True,
    **tag_overrides: str,
) -> RegisteredVersion:
    tags = dict(env.tags)
    if managed:
        tags.update(stamps(env, "c0ffee"))
    tags.update(tag_overrides)
    return RegisteredVersion(
        env.name, version, env.content, env.digest, env.description, tags, archived
    )


def registry(*containers: RegisteredContainer) -> RegistryState:
    return RegistryState({c.name: c for c in containers})


def plan_actions(plan: Any) -> list[tuple[str, str, str | None]]:
    return [(c.action.value, c.name, c.version) for c in plan.changes]


SEL = Selection()


def test_empty_registry_creates() -> None:
    plan = make_plan(state(desired("a"), desired("b", version="7")), registry(), SEL)
    assert plan_actions(plan) == [("create", "a", "1"), ("create", "b", "7")]
    write = plan.changes[0].write
    assert write is not None and write.tags["reconciler.managed-by"] == "reconciler"
    assert write.tags["reconciler.source-commit"] == "c0ffee"


def test_in_sync_is_noop() -> None:
    env = desired("a")
    plan = make_plan(state(env), registry(RegisteredContainer("a", False, (registered(env),))), SEL)
    assert plan.changes == () and [n.name for n in plan.noops] == ["a"]


def test_metadata_change_updates_in_place() -> None:
    old = desired("a", tags={"team": "x"})
    new = desired("a", tags={"team": "y"})
    plan = make_plan(state(new), registry(RegisteredContainer("a", False, (registered(old),))), SEL)
    assert plan_actions(plan) == [("update_metadata", "a", "1")]
    assert [(f.path, f.before, f.after) for f in plan.changes[0].fields] == [
        ("tags.team", "x", "y")
    ]


def test_content_change_numbers_the_next_version() -> None:
    old = desired("a", image="img:1")
    versions = (
        registered(old, "1"),
        registered(desired("a", image="img:0"), "9"),
        registered(old, "10"),
    )
    plan = make_plan(
        state(desired("a", image="img:2")), registry(RegisteredContainer("a", False, versions)), SEL
    )
    assert plan_actions(plan) == [("new_version", "a", "11")]
    assert plan.changes[0].previous_version == "10"


def test_archive_only_managed_and_owned() -> None:
    mine = desired("mine")
    theirs = desired("theirs")
    other_dir = RegisteredVersion(
        "elsewhere",
        "1",
        mine.content,
        mine.digest,
        None,
        {**stamps(mine, "c"), "reconciler.source-path": "other/x.yml"},
    )
    plan = make_plan(
        state(),
        registry(
            RegisteredContainer("mine", False, (registered(mine),)),
            RegisteredContainer("theirs", False, (registered(theirs, managed=False),)),
            RegisteredContainer("elsewhere", False, (other_dir,)),
        ),
        SEL,
    )
    assert plan_actions(plan) == [("archive", "mine", None)]


def test_archived_container_restored_before_new_version() -> None:
    old = desired("a", image="img:1")
    plan = make_plan(
        state(desired("a", image="img:2")),
        registry(RegisteredContainer("a", True, (registered(old),))),
        SEL,
    )
    assert plan_actions(plan) == [("restore", "a", None), ("new_version", "a", "2")]


def test_version_archived_by_hand_is_drift_until_self_heal() -> None:
    env = desired("a")
    actual = registry(RegisteredContainer("a", False, (registered(env, archived=True),)))
    plan = make_plan(state(env), actual, SEL)
    assert plan_actions(plan) == []
    assert [(c.action.value, c.version) for c in plan.drift] == [("restore", "1")]
    assert "outside git" in plan.drift[0].why
    healed = make_plan(state(env), actual, SEL, PlanOptions(self_heal=True))
    assert plan_actions(healed) == [("restore", "a", "1")]
    assert healed.changes[0].why.startswith("self-heal: ")


def test_archive_stamp_tells_git_removal_from_hand_archive() -> None:
    env = desired("a")
    # (every parameter named, so the stamp can only be a tag)
    stamped = registered(
        env, version="1", archived=False, managed=True, **{STAMP_ARCHIVED: "c0ffee"}
    )
    # archived by the reconciler, back in git: restore, and clear the stamp
    plan = make_plan(state(env), registry(RegisteredContainer("a", True, (stamped,))), SEL)
    assert plan_actions(plan) == [("restore", "a", None)]
    write = plan.changes[0].write
    assert write is not None and STAMP_ARCHIVED not in write.tags
    assert plan.changes[0].stamp_version == "1"
    # archived by hand while in git: drift, not a change
    by_hand = make_plan(
        state(env), registry(RegisteredContainer("a", True, (registered(env),))), SEL
    )
    assert plan_actions(by_hand) == []
    assert [c.action.value for c in by_hand.drift] == ["restore"]
    # archived by the reconciler, then restored by hand while still out of git: drift
    restored = make_plan(state(), registry(RegisteredContainer("a", False, (stamped,))), SEL)
    assert plan_actions(restored) == []
    assert [c.action.value for c in restored.drift] == ["archive"]
    # removed from git: the archive writes the stamp onto the newest managed version
    removed = make_plan(state(), registry(RegisteredContainer("a", False, (registered(env),))), SEL)
    archive = removed.changes[0]
    assert archive.action.value == "archive" and archive.write is not None
    assert archive.write.tags[STAMP_ARCHIVED] == "c0ffee"


def test_latest_version_made_by_hand_is_drift() -> None:
    env = desired("a")
    hand = registered(desired("a", image="img:hand"), version="2", managed=False)
    actual = registry(RegisteredContainer("a", False, (registered(env), hand)))
    plan = make_plan(state(env), actual, SEL)
    assert plan_actions(plan) == []
    assert [(c.action.value, c.version) for c in plan.drift] == [("new_version", "3")]
    # git changed as well: the new version is a change in git, applied without self-heal
    moved = make_plan(state(desired("a", image="img:3")), actual, SEL)
    assert plan_actions(moved) == [("new_version", "a", "3")]


def test_pinned_version_collision_is_a_diagnostic() -> None:
    old = desired("a", image="img:1", version="2")
    plan = make_plan(
        state(desired("a", image="img:9", version="2")),
        registry(RegisteredContainer("a", False, (registered(old, "2"),))),
        SEL,
    )
    assert plan.changes == ()
    assert [d.rule for d in plan.diagnostics] == ["version-collision"]
    assert plan.has_errors


def test_hand_edit_is_drift_and_git_edit_wins_over_it() -> None:
    env = desired("a", tags={"team": "x"})
    edited = registered(env, team="hand")
    plan = make_plan(state(env), registry(RegisteredContainer("a", False, (edited,))), SEL)
    assert plan.changes == () and [c.name for c in plan.drift] == ["a"]
    moved_on = desired("a", tags={"team": "git"})
    plan = make_plan(state(moved_on), registry(RegisteredContainer("a", False, (edited,))), SEL)
    assert plan_actions(plan) == [("update_metadata", "a", "1")]
    assert "overwrites an edit" in plan.changes[0].why


def test_unmanaged_equal_content_is_adopted() -> None:
    env = desired("a")
    plan = make_plan(
        state(env),
        registry(RegisteredContainer("a", False, (registered(env, managed=False),))),
        SEL,
    )
    assert plan_actions(plan) == [("update_metadata", "a", "1")]
    assert plan.changes[0].why.startswith("adopt")
    write = plan.changes[0].write
    assert write is not None and STAMP_METADATA_DIGEST in write.tags


def test_archive_guard_and_its_override() -> None:
    envs = [desired(f"e{i}") for i in range(40)]
    reg = registry(*(RegisteredContainer(e.name, False, (registered(e),)) for e in envs))
    keep = state(*envs[:29])  # 11 removed: over max(10, 25% of 40 = 10)
    plan = make_plan(keep, reg, SEL)
    assert "archive-guard" in [d.rule for d in plan.diagnostics]
    plan = make_plan(keep, reg, SEL, PlanOptions(allow_mass_archive=True))
    assert not plan.has_errors and len(plan.changes) == 11
    plan = make_plan(state(*envs[:30]), reg, SEL)  # exactly 10: allowed
    assert not plan.has_errors and len(plan.changes) == 10


def test_errors_withhold_archives() -> None:
    env = desired("a")
    plan = make_plan(
        state(errors=True), registry(RegisteredContainer("a", False, (registered(env),))), SEL
    )
    assert plan.changes == ()
    assert "archive-withheld" in [d.rule for d in plan.diagnostics]


def test_planning_after_apply_is_stable() -> None:
    """Apply a plan to plain data, plan again: no changes."""
    envs = [desired("a"), desired("b", tags={"t": "1"}), desired("c", version="5")]
    plan = make_plan(state(*envs), registry(), SEL)
    containers = {}
    for change in plan.changes:
        assert change.write is not None and change.version is not None
        w = change.write
        version = RegisteredVersion(
            change.name, change.version, w.content, w.digest, w.description, w.tags
        )
        containers[change.name] = RegisteredContainer(change.name, False, (version,))
    again = make_plan(state(*envs), RegistryState(containers), SEL)
    assert again.changes == () and len(again.noops) == 3
