"""Each engine verb on in-memory fakes of the ports (tests/fakes.py): no git, no SQLite
file, no Docker Engine. tests/test_engine_verbs.py runs the verbs on the real adapters;
tests/test_fakes_contract.py keeps the fake registry equal to the real one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.build.jobs import BuildStatus, image_tag
from reconciler.core.desired.selection import Selection
from reconciler.core.drift.report import DriftClass, DriftReport
from reconciler.core.plan.options import PlanOptions
from reconciler.core.plan.types import Action, Reason
from reconciler.core.spec.model import RegisteredVersion, VersionWrite
from reconciler.engine import ApplyRefused, Engine
from reconciler.engine import apply as apply_verb
from reconciler.engine import build as build_verb
from reconciler.engine import diff as diff_verb
from reconciler.engine import drift as drift_verb
from reconciler.engine import inspect as inspect_verb
from reconciler.engine import plan as plan_verb
from reconciler.engine import read as read_verb
from reconciler.engine.build_runner import BuildRunner
from reconciler.ports import (
    AppliedStore,
    Builder,
    BuildError,
    NoCache,
    NotFound,
    Registry,
    SourceError,
    TransientRegistryError,
    VersionConflict,
)
from tests.fakes import (
    MemoryAppliedStore,
    MemoryBuilder,
    MemoryRegistry,
    MemorySource,
)

OWNER = "https://example.invalid/ml/environments.git"
CONDA = "channels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - numpy==1.26.4\n"


def seeded() -> MemorySource:
    source = MemorySource(
        {
            "environments/base.yml": "name: base\nimage: busybox:1.36\ndescription: Base\n",
            "environments/pydata/env.yml": (
                "name: pydata\nimage: busybox:1.36\nconda_file: conda.yml\ntags:\n  team: ds\n"
            ),
            "environments/pydata/conda.yml": CONDA,
            "README.md": "not an environment\n",
        }
    )
    source.commit()
    return source


def engine_of(
    source: MemorySource,
    registry: MemoryRegistry | None = None,
    builder: MemoryBuilder | None = None,
    log_dir: Path | None = None,
    **options: Any,
) -> Engine:
    registry = registry or MemoryRegistry()
    port: Registry = registry  # the fakes stand where the ports are expected
    inventory: AppliedStore = MemoryAppliedStore()
    builds = None
    if builder is not None:
        assert log_dir is not None
        image_port: Builder = builder
        builds = BuildRunner(image_port, port, log_dir)
    return Engine(
        source,
        port,
        Selection(),
        PlanOptions(owner=OWNER, **options),
        cache=NoCache(),
        inventory=inventory,
        builds=builds,
        images=builder,
    )


def fake_registry(engine: Engine) -> MemoryRegistry:
    assert isinstance(engine.registry, MemoryRegistry)
    return engine.registry


def actions(engine: Engine) -> list[tuple[Action, str, str | None, Reason]]:
    return [(c.action, c.name, c.version, c.reason) for c in plan_verb.plan(engine).changes]


# -- read ---------------------------------------------------------------------------------


def test_read_gives_the_desired_state_of_the_working_tree_or_a_ref() -> None:
    source = seeded()
    source.write("environments/extra.yml", "name: extra\nimage: busybox:1.37\n")
    engine = engine_of(source)
    desired, watch = read_verb.read(engine, None)
    assert sorted(desired.environments) == ["base", "extra", "pydata"]
    assert not desired.has_errors and watch is None  # nothing to stat in memory
    pydata = desired.environments["pydata"]
    assert pydata.source_path == "environments/pydata/env.yml"
    assert pydata.conda_path == "environments/pydata/conda.yml"
    assert dict(pydata.tags) == {"team": "ds"}
    assert "environments/pydata/conda.yml" in desired.references
    committed, _ = read_verb.read(engine, "main")  # the ref holds what was committed
    assert sorted(committed.environments) == ["base", "pydata"]
    assert committed.commit == desired.commit is not None
    with pytest.raises(SourceError, match="unknown git ref 'nope'"):
        read_verb.read(engine, "nope")


def test_read_names_the_file_and_line_of_bad_input() -> None:
    source = seeded()
    source.write("environments/broken.yml", "name: broken\n  image: busybox:1.36\n")
    source.write("environments/typo.yml", "name: typo\nimage: busybox:1.36\nimgae: x\n")
    source.write("environments/pydata/conda.yml", "dependencies: [unclosed\n")
    desired, _ = read_verb.read(engine_of(source), None)
    assert desired.has_errors
    found = {(d.path, d.line, d.rule) for d in desired.diagnostics if d.severity == "error"}
    assert ("environments/broken.yml", 2, "yaml-syntax") in found
    assert ("environments/typo.yml", 3, "schema") in found
    assert any(path == "environments/pydata/conda.yml" for path, _, _ in found)
    typo = next(d for d in desired.diagnostics if d.path == "environments/typo.yml")
    assert "imgae" in typo.message
    assert sorted(desired.environments) == ["base"]  # the valid one still loads


# -- plan -------------------------------------------------------------------------------


def test_plan_creates_then_new_version_update_metadata_archive_and_restore() -> None:
    source = seeded()
    engine = engine_of(source)
    assert actions(engine) == [
        (Action.CREATE, "base", "1", Reason.NEW_ENVIRONMENT),
        (Action.CREATE, "pydata", "1", Reason.NEW_ENVIRONMENT),
    ]
    apply_verb.apply(engine)

    source.write("environments/base.yml", "name: base\nimage: busybox:1.37\ndescription: Base\n")
    source.write(
        "environments/pydata/env.yml",
        "name: pydata\nimage: busybox:1.36\nconda_file: conda.yml\ntags:\n  team: platform\n",
    )
    plan = plan_verb.plan(engine)
    assert [(c.action, c.name, c.version, c.reason) for c in plan.changes] == [
        (Action.NEW_VERSION, "base", "2", Reason.CONTENT_CHANGED),
        (Action.UPDATE_METADATA, "pydata", "1", Reason.METADATA_CHANGED),
    ]
    image = next(f for f in plan.changes[0].fields if f.path == "image")
    assert (image.before, image.after) == ("busybox:1.36", "busybox:1.37")
    apply_verb.apply(engine)
    stored = fake_registry(engine).get_version("pydata", "1")
    assert stored is not None and stored.tags["team"] == "platform"

    source.remove("environments/pydata/env.yml")
    source.remove("environments/pydata/conda.yml")
    assert actions(engine) == [(Action.ARCHIVE, "pydata", None, Reason.REMOVED_FROM_GIT)]
    apply_verb.apply(engine)
    assert fake_registry(engine).read_state().containers["pydata"].archived

    source.write(
        "environments/pydata/env.yml",
        "name: pydata\nimage: busybox:1.36\nconda_file: conda.yml\ntags:\n  team: platform\n",
    )
    source.write("environments/pydata/conda.yml", CONDA)
    assert actions(engine) == [(Action.RESTORE, "pydata", None, Reason.BACK_IN_GIT)]
    apply_verb.apply(engine)
    state = fake_registry(engine).read_state()
    assert not state.containers["pydata"].archived
    assert [v.version for v in state.containers["pydata"].versions] == ["1"]  # nothing new
    assert plan_verb.plan(engine).changes == ()


def test_the_archive_guard_refuses_a_mass_archive_and_nothing_is_written() -> None:
    source = seeded()
    registry = MemoryRegistry()
    engine = engine_of(source, registry, archive_limit_count=1, archive_limit_fraction=0.0)
    apply_verb.apply(engine)
    source.files = {}  # a wrong --path, or an emptied checkout
    plan = plan_verb.plan(engine)
    guard = [d for d in plan.diagnostics if d.rule == "archive-guard"]
    assert len(guard) == 1 and guard[0].severity == "error"
    assert "--allow-mass-archive" in guard[0].message
    token = registry.state_token()
    with pytest.raises(ApplyRefused) as refused:
        apply_verb.apply(engine)
    assert refused.value.plan is not None and refused.value.plan.has_errors
    assert registry.state_token() == token
    assert not any(c.archived for c in registry.read_state().containers.values())
    allowed = engine_of(source, registry, allow_mass_archive=True)
    assert [c.name for c in apply_verb.apply(allowed).applied] == ["base", "pydata"]
    assert all(c.archived for c in registry.read_state().containers.values())


# -- apply ------------------------------------------------------------------------------


def test_apply_is_idempotent_and_records_what_it_applied() -> None:
    engine = engine_of(seeded())
    registry = fake_registry(engine)
    outcome = apply_verb.apply(engine)
    assert outcome.ok and [c.name for c in outcome.applied] == ["base", "pydata"]
    assert engine.inventory is not None and engine.inventory.load() == {"base": "1", "pydata": "1"}
    assert [e["action"] for e in registry.history("base")] == ["create"]
    token = registry.state_token()
    assert plan_verb.plan(engine).changes == ()
    again = apply_verb.apply(engine)
    assert again.ok and again.applied == []
    assert registry.state_token() == token  # the second apply wrote nothing
    assert [e["action"] for e in registry.history("base")] == ["create"]


def test_a_refused_apply_carries_its_plan_and_writes_nothing() -> None:
    source = seeded()
    source.write("environments/bad.yml", "name: bad\nimage: busybox\nimgae: typo\n")
    engine = engine_of(source)
    registry = fake_registry(engine)
    token = registry.state_token()
    with pytest.raises(ApplyRefused, match="1 error") as refused:
        apply_verb.apply(engine)
    plan = refused.value.plan
    assert plan is not None
    assert [(d.rule, d.path, d.line) for d in plan.diagnostics if d.severity == "error"] == [
        ("schema", "environments/bad.yml", 3)
    ]
    assert [c.name for c in plan.changes] == ["base", "pydata"]  # what it would have done
    assert registry.state_token() == token and registry.read_state().containers == {}
    assert engine.inventory is not None and engine.inventory.load() == {}


def test_a_failing_environment_stops_only_itself_and_transient_errors_are_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(apply_verb, "RETRY_BASE_DELAY", 0.0)
    engine = engine_of(seeded())
    registry = fake_registry(engine)
    registry.fail_next("base", TransientRegistryError("throttled"))
    registry.fail_next("pydata", VersionConflict("pydata:1 already exists"))
    outcome = apply_verb.apply(engine)
    assert [c.name for c in outcome.applied] == ["base"]  # retried after the throttle
    assert [(c.name, error) for c, error in outcome.failed] == [
        ("pydata", "pydata:1 already exists")
    ]
    assert not outcome.ok
    assert sorted(registry.read_state().containers) == ["base"]
    assert actions(engine) == [(Action.CREATE, "pydata", "1", Reason.NEW_ENVIRONMENT)]


def test_an_error_escaping_a_batch_leaves_nothing_of_it() -> None:
    engine = engine_of(seeded())
    apply_verb.apply(engine)
    registry = fake_registry(engine)
    token, before = registry.state_token(), registry.read_state()
    base = before.containers["base"].versions[0]
    with pytest.raises(RuntimeError), registry.batch():
        registry.set_container_archived("base", True)
        registry.put_version("fresh", "1", _write_of(base))
        raise RuntimeError("the process is interrupted")
    assert registry.state_token() == token
    assert registry.read_state() == before
    assert [e["action"] for e in registry.history("base")] == ["create"]


# -- drift ------------------------------------------------------------------------------


def classes(report: DriftReport) -> dict[str, list[DriftClass]]:
    return {e.name: e.classes for e in report.environments if e.classes}


def test_drift_finds_pending_changes_and_hand_edits_in_the_registry() -> None:
    source = seeded()
    engine = engine_of(source)
    report = drift_verb.drift(engine, None)
    loose = [DriftClass.FINDING]  # python=3.11 in the conda file: reported, not failed on
    assert classes(report) == {
        "base": [DriftClass.PENDING],
        "pydata": [DriftClass.PENDING, *loose],
    }
    finding = next(e for e in report.environments if e.name == "pydata").items[-1]
    assert (finding.rule, finding.path, finding.line) == (
        "conda-loose-pin",
        "environments/pydata/conda.yml",
        4,
    )
    apply_verb.apply(engine)
    report = drift_verb.drift(engine, None)
    assert not report.drift_found and classes(report) == {"pydata": loose}
    registry = fake_registry(engine)
    stored = registry.get_version("base", "1")
    assert stored is not None
    registry.edit_version("base", "1", tags={**stored.tags, "team": "hand-made"})
    report = drift_verb.drift(engine, None)
    assert report.drift_found
    assert classes(report) == {"base": [DriftClass.OUT_OF_BAND], "pydata": loose}
    item = next(e for e in report.environments if e.name == "base").items[0]
    assert item.version == "1" and "outside git" in item.reason


def test_drift_reports_what_was_applied_but_is_missing_from_the_registry() -> None:
    source = seeded()
    engine = engine_of(source)
    assert engine.inventory is not None
    engine.inventory.save({"base": "1", "pydata": "1"})  # applied to a registry now empty
    report = drift_verb.drift(engine, None)
    assert classes(report) == {
        "base": [DriftClass.MISSING],
        "pydata": [DriftClass.MISSING, DriftClass.FINDING],
    }


def test_drift_reports_a_built_image_missing_from_the_oci_registry(tmp_path: Path) -> None:
    builder = MemoryBuilder()
    engine = engine_of(seeded(), builder=builder, log_dir=tmp_path)
    outcome = apply_verb.apply(engine)
    assert outcome.ok and outcome.builds is not None
    assert not drift_verb.drift(engine, None).drift_found
    base = fake_registry(engine).get_version("base", "1")
    assert base is not None and base.digest is not None
    builder.remove(image_tag(base.digest))
    report = drift_verb.drift(engine, None)
    assert classes(report) == {"base": [DriftClass.BUILD], "pydata": [DriftClass.FINDING]}
    item = next(e for e in report.environments if e.name == "base").items[0]
    assert "missing from the OCI registry" in item.reason and item.action == "build"
    builder.lookup_error = "the OCI registry does not answer"
    unknown = drift_verb.drift(engine, None)
    assert not unknown.drift_found  # unknown is not drift, and it says why
    assert any("does not answer" in line for e in unknown.environments for line in e.unknown)


# -- diff -------------------------------------------------------------------------------


def test_diff_a_version_against_git_and_against_another_version() -> None:
    source = seeded()
    engine = engine_of(source)
    apply_verb.apply(engine)
    same = diff_verb.version_diff(engine, ("base", "1"), None)
    assert same["identical"] and same["fields"] == []
    source.write("environments/base.yml", "name: base\nimage: busybox:1.37\ndescription: New\n")
    changed = diff_verb.version_diff(engine, ("base", "1"), None)
    assert not changed["identical"] and not changed["same_content"]
    fields = {f["path"]: (f["before"], f["after"]) for f in changed["fields"]}
    assert fields["image"] == ("busybox:1.36", "busybox:1.37")
    assert fields["description"] == ("Base", "New")
    apply_verb.apply(engine)
    versions = diff_verb.version_diff(engine, ("base", "1"), ("base", "2"))
    assert versions["right"]["version"] == "2" and not versions["identical"]
    with pytest.raises(NotFound, match="no version base:9"):
        diff_verb.version_diff(engine, ("base", "9"), None)
    registry = fake_registry(engine)
    registry.put_version(
        "gone", "1", _write_of(registry.read_state().containers["base"].versions[0])
    )
    with pytest.raises(SourceError, match="no environment 'gone' in git"):
        diff_verb.version_diff(engine, ("gone", "1"), None)


# -- build ------------------------------------------------------------------------------


def test_identical_content_is_built_once(tmp_path: Path) -> None:
    source = seeded()
    source.write("environments/twin.yml", "name: twin\nimage: busybox:1.36\n")
    builder = MemoryBuilder()
    engine = engine_of(source, builder=builder, log_dir=tmp_path)
    outcome = apply_verb.apply(engine)
    assert outcome.ok and outcome.builds is not None
    assert len(builder.builds) == 2 and outcome.builds.builds_run == 2  # base=twin, pydata
    built = {r.name: r for r in outcome.builds.built}
    assert sorted(built) == ["base", "pydata", "twin"]
    assert built["base"].image == built["twin"].image != built["pydata"].image
    records = fake_registry(engine).build_records()
    assert {k: r.status for k, r in records.items()} == {
        ("base", "1"): BuildStatus.SUCCEEDED,
        ("pydata", "1"): BuildStatus.SUCCEEDED,
        ("twin", "1"): BuildStatus.SUCCEEDED,
    }
    again = apply_verb.apply(engine)  # recorded as built: nothing to do
    assert again.builds is not None and again.builds.builds_run == 0
    assert len(builder.builds) == 2


def test_a_failing_build_is_reported_and_the_others_still_build(tmp_path: Path) -> None:
    source = seeded()
    builder = MemoryBuilder()
    engine = engine_of(source, builder=builder, log_dir=tmp_path)
    desired, _ = read_verb.read(engine, None)
    builder.fail(desired.environments["pydata"].digest, "conda: package numpy not found")
    outcome = apply_verb.apply(engine)
    assert outcome.builds is not None and not outcome.ok
    assert [c.name for c in outcome.applied] == ["base", "pydata"]  # registered all the same
    assert [r.name for r in outcome.builds.built] == ["base"]
    [failed] = outcome.builds.failed
    assert failed.name == "pydata" and failed.status is BuildStatus.FAILED
    assert "numpy not found" in failed.message and "numpy not found" in failed.log_tail
    assert failed.next_attempt_at is not None  # tried again after a backoff
    assert fake_registry(engine).build_records()[("pydata", "1")].status is BuildStatus.FAILED


def test_the_build_verb_builds_now_and_names_what_it_cannot_build(tmp_path: Path) -> None:
    source = seeded()
    builder = MemoryBuilder()
    engine = engine_of(source, builder=builder, log_dir=tmp_path)
    with pytest.raises(BuildError, match="builds are not configured"):
        build_verb.build(engine_of(source), "base")
    apply_verb.apply(engine)
    assert len(builder.builds) == 2
    outcome = build_verb.build(engine, "base")  # built already: built again, as asked
    assert [r.name for r in outcome.built] == ["base"] and len(builder.builds) == 3
    with pytest.raises(BuildError, match="no environment 'nope'"):
        build_verb.build(engine, "nope")
    with pytest.raises(BuildError, match="no version base:7"):
        build_verb.build(engine, "base", "7")
    builder.unavailable_reason = "no Docker Engine reachable"
    waiting = build_verb.build(engine, "pydata")
    assert waiting.unavailable == "no Docker Engine reachable" and len(builder.builds) == 3


# -- inspect ----------------------------------------------------------------------------


def test_inspect_lists_shows_and_tells_the_history() -> None:
    source = seeded()
    engine = engine_of(source)
    apply_verb.apply(engine)
    source.write("environments/base.yml", "name: base\nimage: busybox:1.36\ndescription: New\n")
    apply_verb.apply(engine)
    source.remove("environments/base.yml")
    apply_verb.apply(engine)
    state = inspect_verb.containers(engine)
    assert sorted(state.containers) == ["base", "pydata"]
    assert state.containers["base"].archived and not state.containers["pydata"].archived
    container, records = inspect_verb.container(engine, "pydata")
    assert [v.version for v in container.versions] == ["1"] and records == {}
    container, events = inspect_verb.history(engine, "base")
    assert [(e["action"], e["version"]) for e in events] == [
        ("create", "1"),
        ("update_metadata", "1"),
        ("archive", None),
        ("update_metadata", "1"),  # the archive stamp, after the flag
    ]
    assert set(events[3]["detail"]["tags"]) - set(events[1]["detail"]["tags"])
    assert events[1]["detail"]["description"] == "New"
    for verb in (inspect_verb.container, inspect_verb.history):
        with pytest.raises(NotFound, match="no environment 'nope' in memory://registry"):
            verb(engine, "nope")
    evidence = inspect_verb.evidence(engine, datetime(2030, 1, 1, tzinfo=UTC))
    assert evidence["summary"]["environments"] == 2
    assert evidence["summary"]["archived_environments"] == 1


def _write_of(version: RegisteredVersion) -> VersionWrite:
    """What writing this version again would send."""
    assert version.content is not None and version.digest is not None
    return VersionWrite(
        version.content, version.digest, version.description, version.tags, version.datastore
    )
