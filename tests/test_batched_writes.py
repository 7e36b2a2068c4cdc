"""The SQLite registry's batched write and the state apply patches with what it returns."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.spec.model import RegistryState, with_written
from reconciler.ports import VersionConflict
from tests.test_registry_contract import write


def _state(registry: SqliteRegistry) -> list[tuple[Any, ...]]:
    return [
        (c.name, c.archived, [(v.version, v.digest, v.archived, dict(v.tags)) for v in c.versions])
        for c in registry.read_state().containers.values()
    ]


def _log(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        events = conn.execute("SELECT name, version, action, detail FROM events ORDER BY seq")
        generation = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return [*events, generation]


def _writes(count: int) -> list[tuple[str, str, Any]]:
    return [
        (f"env-{i:03d}", "1", write(f"busybox:1.{i}", tags={"n": str(i)})) for i in range(count)
    ]


def test_batched_creates_equal_one_put_version_each(tmp_path: Path) -> None:
    batched, single = (SqliteRegistry(tmp_path / f"{n}.db") for n in ("batched", "single"))
    for registry in (batched, single):
        registry.put_version("env-001", "1", write("busybox:1.1", tags={"n": "1"}))
        registry.set_container_archived("env-001", True)  # a version under it is archived
    sent = [(n, "2" if n == "env-001" else v, w) for n, v, w in _writes(40)]
    returned = batched.put_versions(sent)
    expected = [single.put_version(*item) for item in sent]
    assert [(v.name, v.version, v.digest, v.archived, dict(v.tags)) for v in returned] == [
        (v.name, v.version, v.digest, v.archived, dict(v.tags)) for v in expected
    ]
    assert returned[1].archived  # env-001:2, created under the archived container
    assert _state(batched) == _state(single)
    assert _log(batched.path) == _log(single.path)  # same history, same triggers fired


def test_a_batched_write_that_fails_half_way_leaves_nothing_written(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    registry.put_version("env-010", "1", write("busybox:9"))
    before, log, token = _state(registry), _log(registry.path), registry.state_token()
    with registry.batch():  # inside apply's batch: the rest of the batch goes on
        with pytest.raises(VersionConflict):
            registry.put_versions(_writes(20))  # env-010:1 with other content, half way
        registry.put_version("later", "1", write("busybox:8"))
    assert [c for c in _state(registry) if c[0] != "later"] == before
    assert _log(registry.path)[: len(log) - 1] == log[:-1]  # no event of the failed call
    assert registry.state_token() != token  # the later write alone was committed
    assert registry.get_version("env-000", "1") is None


def test_the_patched_state_equals_a_fresh_read(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    registry.put_version("env-000", "1", write("busybox:1.0", tags={"n": "0"}))
    registry.put_version("env-001", "1", write("busybox:1.1", tags={"n": "1"}))
    registry.set_container_archived("env-001", True)
    state = registry.read_state()
    sent = [
        *_writes(30)[1:],  # env-001:1 as it is: returned unchanged
        ("env-001", "2", write("busybox:2")),  # archived: its container is
        ("env-000", "1", write("busybox:1.0", description="new", tags={"n": "0"})),
    ]
    patched = with_written(state, registry.put_versions(sent))
    fresh = registry.read_state()
    assert patched.token is None and isinstance(patched, RegistryState)
    assert dict(patched.containers) == dict(fresh.containers)
