"""Property-based tests of the parser, the digest and the planner (hypothesis).

The planner runs over random desired states and random registry states held in a real
SQLite registry; its plan is applied by the engine's own apply loop. The parser runs over
random specifications written out as YAML files in many formats.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconciler.adapters.gitsource import DirectorySnapshot
from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.desired.load import load_desired
from reconciler.core.desired.selection import Selection
from reconciler.core.desired.types import DesiredEnvironment, DesiredState, LoadMemo
from reconciler.core.plan.options import PlanOptions
from reconciler.core.plan.planner import make_plan
from reconciler.core.plan.types import Action, Plan
from reconciler.core.spec.digest import build_content, content_digest
from reconciler.core.spec.model import (
    MANAGED_BY,
    STAMP_CONTENT_DIGEST,
    STAMP_MANAGED_BY,
    STAMP_METADATA_DIGEST,
    STAMP_OWNER,
    STAMP_SOURCE_COMMIT,
    STAMP_SOURCE_PATH,
    RegistryState,
    VersionWrite,
    metadata_digest,
)
from reconciler.engine import Engine
from reconciler.engine.apply import apply_plan
from reconciler.ports import Source

BOUNDED = settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
ME, OTHER = "example.com/me/envs", "example.com/other/envs"
NAMES = ["alpha", "beta", "gamma", "delta", "eps"]
CONTENTS = [
    build_content(image=f"img:{i}", conda=None, build=None, os_type="linux", inference_config=None)
    for i in range(4)
]
DIGESTS = [content_digest(c) for c in CONTENTS]

# -- random desired states -------------------------------------------------------------

descriptions = st.sampled_from([None, "one", "two"])
tag_sets = st.sampled_from([{}, {"team": "a"}, {"team": "b", "tier": "1"}])


@st.composite
def desired_states(draw: st.DrawFn) -> DesiredState:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    environments = {}
    for name in sorted(names):
        index = draw(st.integers(0, len(CONTENTS) - 1))
        environments[name] = DesiredEnvironment(
            name=name,
            version=draw(st.sampled_from([None, None, "1", "2", "5"])),
            description=draw(descriptions),
            tags=draw(tag_sets),
            content=CONTENTS[index],
            digest=DIGESTS[index],
            datastore=None,
            source_path=draw(
                st.sampled_from([f"environments/{name}.yml", f"environments/x/{name}.yml"])
            ),
        )
    return DesiredState(environments, [], commit="c0ffee", source="random")


# -- random registry states, written through the real SQLite adapter ---------------------


@dataclass(frozen=True)
class SeedVersion:
    version: str
    content: int
    managed: bool
    owner: str
    source_path: str
    description: str | None
    tags: dict[str, str]
    edited: bool  # metadata changed by hand after stamping (drift)
    archived: bool


@dataclass(frozen=True)
class SeedContainer:
    name: str
    archived: bool
    versions: tuple[SeedVersion, ...]


@st.composite
def seed_versions(draw: st.DrawFn, name: str) -> SeedVersion:
    return SeedVersion(
        version=draw(st.sampled_from(["1", "2", "3", "5", "1.5"])),
        content=draw(st.integers(0, len(CONTENTS) - 1)),
        managed=draw(st.booleans()),
        owner=draw(st.sampled_from([ME, ME, ME, OTHER])),
        source_path=draw(
            st.sampled_from([f"environments/{name}.yml", f"elsewhere/{name}.yml", "README.md"])
        ),
        description=draw(descriptions),
        tags=draw(tag_sets),
        edited=draw(st.booleans()),
        archived=draw(st.booleans()),
    )


@st.composite
def registry_seeds(draw: st.DrawFn) -> list[SeedContainer]:
    names = draw(st.lists(st.sampled_from([*NAMES, "zeta"]), unique=True, max_size=6))
    out = []
    for name in names:
        versions = draw(
            st.lists(seed_versions(name), min_size=1, max_size=3, unique_by=lambda v: v.version)
        )
        out.append(SeedContainer(name, draw(st.booleans()), tuple(versions)))
    return out


def _tags(seed: SeedVersion) -> dict[str, str]:
    tags = dict(seed.tags)
    if seed.managed:
        tags.update(
            {
                STAMP_MANAGED_BY: MANAGED_BY,
                STAMP_OWNER: seed.owner,
                STAMP_SOURCE_PATH: seed.source_path,
                STAMP_SOURCE_COMMIT: "0" * 40,
                STAMP_CONTENT_DIGEST: DIGESTS[seed.content],
                STAMP_METADATA_DIGEST: metadata_digest(seed.description, seed.tags),
            }
        )
        if seed.edited:
            tags["team"] = "edited-by-hand"
    return tags


def seed_registry(registry: SqliteRegistry, seeds: list[SeedContainer]) -> None:
    for container in seeds:
        for version in container.versions:
            registry.put_version(
                container.name,
                version.version,
                VersionWrite(
                    CONTENTS[version.content],
                    DIGESTS[version.content],
                    version.description,
                    _tags(version),
                ),
            )
        for version in container.versions:
            if version.archived:
                registry.set_version_archived(container.name, version.version, True)
        if container.archived:
            registry.set_container_archived(container.name, True)


def apply(registry: SqliteRegistry, plan: Plan) -> None:
    """The engine's own apply loop (the source is not used by it)."""
    engine = Engine(cast(Source, None), registry, Selection())
    outcome = apply_plan(engine, plan)
    assert not outcome.failed, outcome.failed


def versions(state: RegistryState) -> dict[tuple[str, str], tuple[str | None, bool]]:
    return {
        (c.name, v.version): (v.digest, v.archived)
        for c in state.containers.values()
        for v in c.versions
    }


options_strategy = st.builds(
    PlanOptions,
    owner=st.just(ME),
    allow_mass_archive=st.booleans(),
    archive_limit_count=st.integers(0, 3),
    self_heal=st.booleans(),
)


@BOUNDED
@given(desired=desired_states(), seeds=registry_seeds(), options=options_strategy)
def test_planning_after_apply_finds_nothing_to_do_and_nothing_is_lost(
    desired: DesiredState, seeds: list[SeedContainer], options: PlanOptions
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        registry = SqliteRegistry(Path(tmp) / "registry.db")
        seed_registry(registry, seeds)
        before = registry.read_state()
        plan = make_plan(desired, before, Selection(), options)
        for change in plan.changes:
            assert change.action in set(Action) - {Action.NOOP}
        event(f"plan with errors: {plan.has_errors}")
        if plan.has_errors:
            return  # apply refuses such a plan (tested end to end elsewhere)
        event("actions: " + ", ".join(sorted({c.action.value for c in plan.changes})))
        apply(registry, plan)
        after = registry.read_state()
        # nothing lost: every version is still there with its content
        old, new = versions(before), versions(after)
        for key, (digest, _) in old.items():
            assert key in new and new[key][0] == digest
        assert set(before.containers) <= set(after.containers)
        again = make_plan(desired, after, Selection(), options)
        assert not again.has_errors, again.diagnostics
        assert again.changes == (), [(c.name, c.action, c.why) for c in again.changes]
        # changes made in the registry outside git stay (reported as drift) unless
        # self-heal repairs them
        drifting = {c.name for c in again.drift}
        assert not (options.self_heal and drifting), again.drift
        # every other environment in git is now registered, active, with its content latest
        for name, env in desired.environments.items():
            if name in drifting:
                continue
            container = after.containers[name]
            assert not container.archived
            chosen = container.get(env.version) if env.version else container.newest
            assert chosen is not None and chosen.effective_digest == env.digest
            assert not chosen.archived and chosen.managed
        registry.close()


@BOUNDED
@given(desired=desired_states(), seeds=registry_seeds(), options=options_strategy)
def test_archive_only_touches_what_this_owner_manages(
    desired: DesiredState, seeds: list[SeedContainer], options: PlanOptions
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        registry = SqliteRegistry(Path(tmp) / "registry.db")
        seed_registry(registry, seeds)
        before = registry.read_state()
        plan = make_plan(desired, before, Selection(), options)
        for change in plan.changes:
            if change.action is not Action.ARCHIVE:
                continue
            container = before.containers[change.name]
            assert container.managed and container.owner() == ME
            assert Selection().owns(container.owner_path() or "")
            assert change.name not in desired.environments
        if plan.has_errors:
            return
        apply(registry, plan)
        after = registry.read_state()
        for name, container in before.containers.items():
            mine = container.managed and container.owner() == ME
            newly_archived = after.containers[name].archived and not container.archived
            assert mine or not newly_archived, name
            if not mine and name not in desired.environments:
                assert after.containers[name] == container  # untouched, not even read-modified
        registry.close()


@settings(deadline=None, max_examples=25)
@given(seeds=registry_seeds())
def test_the_registry_refuses_deletes_whatever_it_holds(seeds: list[SeedContainer]) -> None:
    import sqlite3

    with tempfile.TemporaryDirectory() as tmp:
        registry = SqliteRegistry(Path(tmp) / "registry.db")
        seed_registry(registry, seeds)
        assert registry.conn is not None  # opening creates the schema, even when empty
        registry.close()
        conn = sqlite3.connect(Path(tmp) / "registry.db")
        for table in ("versions", "containers", "builds"):
            try:
                conn.execute(f"DELETE FROM {table}")
            except sqlite3.IntegrityError as exc:
                assert "never deleted" in str(exc)
            else:
                assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
        conn.close()


# -- the parser and the digest ----------------------------------------------------------

text = st.text(
    st.characters(categories=("L", "N", "P", "Zs", "S"), exclude_characters="\x85\u2028\u2029"),
    max_size=20,
)
packages = st.lists(
    st.from_regex(r"[a-z][a-z0-9_-]{0,10}(==[0-9]\.[0-9]{1,2})?", fullmatch=True),
    min_size=1,
    max_size=5,
    unique=True,
)
routes = st.fixed_dictionaries(
    {
        kind: st.fixed_dictionaries(
            {"port": st.integers(1, 65535), "path": st.from_regex(r"/[a-z]{0,8}", fullmatch=True)}
        )
        for kind in ("liveness_route", "readiness_route", "scoring_route")
    }
)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": draw(st.from_regex(r"[a-z]{1,8}(:[0-9]\.[0-9]{1,2})?", fullmatch=True)),
        "conda_file": {
            "channels": draw(st.lists(st.sampled_from(["conda-forge", "defaults"]), unique=True)),
            "dependencies": draw(packages),
        },
    }
    if draw(st.booleans()):
        spec["os_type"] = draw(st.sampled_from(["linux", "Linux", "LINUX", "windows"]))
    if draw(st.booleans()):
        spec["inference_config"] = draw(routes)
    return spec


tag_keys = st.from_regex(r"[a-z]{1,6}", fullmatch=True)
BUILD_CHANGES = ["image", "add-package", "package-order", "os_type", "inference_config"]


@st.composite
def metadata(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": draw(st.from_regex(r"e[a-z0-9-]{0,12}", fullmatch=True)),
        "version": draw(st.sampled_from([None, "1", "2", "1.10"])),
        "description": draw(st.none() | text),
        "tags": draw(
            st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), text, max_size=3)
        ),
    }
    return {k: v for k, v in out.items() if v is not None}


def write_yaml(data: dict[str, Any], rng: random.Random) -> str:
    """The same data in one of many YAML spellings: key order, quoting, flow or block
    style, comments."""
    items = list(data.items())
    rng.shuffle(items)
    shuffled = dict(items)
    style = rng.choice([None, '"', "'"])
    dumped = yaml.safe_dump(
        shuffled,
        default_flow_style=rng.choice([False, True, None]),
        default_style=style if style != "'" or rng.random() < 0.5 else None,
        sort_keys=rng.random() < 0.3,
        allow_unicode=rng.random() < 0.5,
        indent=rng.choice([2, 4]),
        width=rng.choice([40, 80, 10_000]),
    )
    return f"# generated\n{dumped}# end\n" if rng.random() < 0.5 else dumped


def load_one(root: Path, files: dict[str, str]) -> DesiredEnvironment:
    for path, content in files.items():
        full = root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(content, encoding="utf-8")
    state = load_desired(DirectorySnapshot(root), Selection(), LoadMemo())
    assert not state.has_errors, [d.to_dict() for d in state.diagnostics]
    [env] = state.environments.values()
    return env


def _with_conda_file(spec: dict[str, Any], rng: random.Random) -> dict[str, str]:
    """The conda specification inline, or in a file beside the environment or elsewhere."""
    spec = dict(spec)
    conda = spec.pop("conda_file")
    where = rng.choice(["inline", "conda.yml", "deps/other-name.yaml"])
    if where == "inline":
        return {"environments/env.yml": write_yaml({**spec, "conda_file": conda}, rng)}
    return {
        "environments/env.yml": write_yaml({**spec, "conda_file": where}, rng),
        f"environments/{where}": write_yaml(conda, rng),
    }


@BOUNDED
@given(spec=specs(), first=metadata(), second=metadata(), seeds=st.randoms())
def test_digest_ignores_name_metadata_and_formatting(
    spec: dict[str, Any], first: dict[str, Any], second: dict[str, Any], seeds: random.Random
) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        one = load_one(Path(a), _with_conda_file({**first, **spec}, seeds))
        two = load_one(Path(b), _with_conda_file({**second, **spec}, seeds))
    assert one.digest == two.digest
    assert one.name == first["name"] and one.description == first.get("description")
    assert dict(one.tags) == first["tags"]
    assert one.version == first.get("version")


def _changed(spec: dict[str, Any], change: str, data: st.DataObject) -> dict[str, Any]:
    out = {**spec, "conda_file": dict(spec["conda_file"])}
    deps = list(out["conda_file"]["dependencies"])
    if change == "image":
        out["image"] = spec["image"] + "-other"
    elif change == "add-package":
        out["conda_file"]["dependencies"] = [*deps, "added-package==9.9"]
    elif change == "package-order":
        out["conda_file"]["dependencies"] = [*deps[1:], deps[0]]
    elif change == "os_type":
        now = str(spec.get("os_type", "linux")).lower()
        out["os_type"] = "windows" if now == "linux" else "linux"
    elif change == "inference_config":
        config: dict[str, Any] = spec.get("inference_config") or data.draw(routes)
        port = config["scoring_route"]["port"]
        out["inference_config"] = {
            **config,
            "scoring_route": {**config["scoring_route"], "port": port % 65535 + 1},
        }
        if "inference_config" not in spec:
            out["inference_config"] = config
    return out


@BOUNDED
@given(
    spec=specs(),
    meta=metadata(),
    change=st.sampled_from(
        ["image", "add-package", "package-order", "os_type", "inference_config"]
    ),
    data=st.data(),
    seeds=st.randoms(),
)
def test_digest_changes_with_every_build_relevant_change(
    spec: dict[str, Any],
    meta: dict[str, Any],
    change: str,
    data: st.DataObject,
    seeds: random.Random,
) -> None:
    changed = _changed(spec, change, data)
    if change == "package-order" and len(spec["conda_file"]["dependencies"]) < 2:
        changed["conda_file"]["dependencies"] = [*changed["conda_file"]["dependencies"], "x"]
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        one = load_one(Path(a), _with_conda_file({**meta, **spec}, seeds))
        two = load_one(Path(b), _with_conda_file({**meta, **changed}, seeds))
    assert one.digest != two.digest, change


@BOUNDED
@given(
    files=st.dictionaries(
        st.from_regex(r"[a-z]{1,6}(/[a-z]{1,6})?\.(txt|py|sh)", fullmatch=True),
        st.binary(max_size=64),
        min_size=1,
        max_size=4,
    ),
    which=st.integers(0, 3),
    edit=st.sampled_from(["content", "rename", "add", "mode"]),
    meta=metadata(),
)
def test_build_context_digest_follows_every_file(
    files: dict[str, bytes], which: int, edit: str, meta: dict[str, Any]
) -> None:
    def load(context: dict[str, bytes], executable: set[str]) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            env = {**meta, "build": {"path": "ctx"}}
            (root / "environments/ctx").mkdir(parents=True)
            (root / "environments/env.yml").write_text(yaml.safe_dump(env))
            (root / "environments/ctx/Dockerfile").write_text("FROM scratch\n")
            for path, content in context.items():
                full = root / "environments/ctx" / path
                full.parent.mkdir(parents=True, exist_ok=True)
                full.write_bytes(content)
                if path in executable:
                    full.chmod(0o755)
            state = load_desired(DirectorySnapshot(root), Selection(), LoadMemo())
            assert not state.has_errors, state.diagnostics
            return next(iter(state.environments.values())).digest

    target = sorted(files)[which % len(files)]
    changed = dict(files)
    executable: set[str] = set()
    if edit == "content":
        changed[target] = files[target] + b"!"
    elif edit == "rename":
        changed["renamed-" + target.replace("/", "-")] = changed.pop(target)
    elif edit == "add":
        changed["added.txt"] = b""
        if "added.txt" in files:
            changed["added.txt"] = files["added.txt"] + b"+"
    else:
        executable = {target}
    assert load(files, set()) == load(dict(files), set())  # stable
    assert load(files, set()) != load(changed, executable), edit
