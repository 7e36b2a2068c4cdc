"""The fake registry (tests/fakes.py) and the real SQLite registry agree: one scenario
(create, update tags, new version, archive, restore, a refused delete and a refused change
of an immutable field) runs against both, and what read_state() and history() return is
compared. A fake is never the only test of an adapter; this keeps it honest."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.build.jobs import BuildRecord, BuildStatus
from reconciler.core.spec.digest import build_content, content_digest
from reconciler.core.spec.model import RegistryState, VersionWrite
from reconciler.ports import NotFound, Registry, RegistryError, VersionConflict
from tests.fakes import MemoryRegistry

REFUSED = (RegistryError, sqlite3.DatabaseError)


class Interrupted(Exception):
    pass


def write(
    image: str, tags: dict[str, str], description: str | None = "an environment"
) -> VersionWrite:
    content = build_content(
        image=image, conda=None, build=None, os_type="linux", inference_config=None
    )
    return VersionWrite(content, content_digest(content), description, tags)


class Backend:
    """A registry behind its port, and its raw surface: what a person with direct access
    (SQL on the file, the fake's dicts) could try beside the port."""

    def __init__(
        self,
        registry: Registry,
        delete_version: Callable[[str, str], None],
        delete_container: Callable[[str], None],
        change_content: Callable[[str, str], None],
    ) -> None:
        self.registry = registry
        self.delete_version = delete_version
        self.delete_container = delete_container
        self.change_content = change_content


def sqlite_backend(path: Path) -> Backend:
    registry = SqliteRegistry(path)

    def sql(statement: str, *args: str) -> None:
        conn = sqlite3.connect(path)
        try:
            with conn:
                conn.execute(statement, args)
        finally:
            conn.close()

    return Backend(
        registry,
        lambda name, version: sql("DELETE FROM versions WHERE name=? AND version=?", name, version),
        lambda name: sql("DELETE FROM containers WHERE name=?", name),
        lambda name, version: sql(
            "UPDATE versions SET content='{}' WHERE name=? AND version=?", name, version
        ),
    )


def memory_backend(path: Path) -> Backend:
    registry = MemoryRegistry()
    return Backend(
        registry,
        registry.delete_version,
        registry.delete_container,
        lambda name, version: registry.edit_version(name, version, content={}),
    )


BACKENDS = {"memory": memory_backend, "sqlite": sqlite_backend}


def state_of(state: RegistryState) -> list[dict[str, Any]]:
    """Everything read_state() returns but the moments and the token, in its order."""
    return [
        {
            "name": name,
            "archived": container.archived,
            "versions": [
                {
                    "version": v.version,
                    "archived": v.archived,
                    "content": dict(v.content) if v.content is not None else None,
                    "digest": v.digest,
                    "description": v.description,
                    "tags": dict(v.tags),
                    "datastore": v.datastore,
                }
                for v in container.versions
            ],
        }
        for name, container in state.containers.items()
    ]


def history_of(registry: Registry, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name in names:
        events = registry.history(name)
        moments = [e.pop("at") for e in events]
        assert moments == sorted(moments)  # oldest first
        out[name] = events
    return out


def scenario(backend: Backend) -> list[tuple[str, bool, list[dict[str, Any]]]]:
    """Run the steps; after each: its name, whether the state token moved, the state."""
    registry = backend.registry
    steps: list[tuple[str, bool, list[dict[str, Any]]]] = []
    token = registry.state_token()

    def step(name: str, action: Callable[[], object] | None = None) -> None:
        nonlocal token
        if action is not None:
            action()
        now = registry.state_token()
        steps.append((name, now != token, state_of(registry.read_state())))
        token = now

    def refused(
        name: str,
        error: type[BaseException] | tuple[type[BaseException], ...],
        match: str,
        action: Callable[[], object],
    ) -> None:
        with pytest.raises(error, match=match):
            action()
        step(name)

    v1, v2, v3 = (
        write("busybox:1.36", {"team": "ml"}),
        write("busybox:1.37", {"team": "ml"}),
        write("busybox:1.38", {"team": "ml"}),
    )
    step("create", lambda: registry.put_version("base", "1", v1))
    step("create other", lambda: registry.put_version("other", "1", v2))
    retagged = write("busybox:1.36", {"team": "platform"}, "new words")
    step("update tags", lambda: registry.put_version("base", "1", retagged))
    step("resend", lambda: registry.put_version("base", "1", retagged))
    step("new version", lambda: registry.put_version("base", "2", v2))
    ops = write("busybox:1.37", {"team": "ops"})
    step("update tags only", lambda: registry.put_version("base", "2", ops))
    refused(
        "other content, same version",
        VersionConflict,
        "different content",
        lambda: registry.put_version("base", "1", v3),
    )
    step("archive a version", lambda: registry.set_version_archived("base", "1", True))
    step("archive again", lambda: registry.set_version_archived("base", "1", True))
    step("archive the container", lambda: registry.set_container_archived("base", True))
    step("archive the container again", lambda: registry.set_container_archived("base", True))
    step("create under the archived container", lambda: registry.put_version("base", "3", v3))
    refused(
        "restore a version of an archived container",
        RegistryError,
        "restore the environment",
        lambda: registry.set_version_archived("base", "1", False),
    )
    step("restore the container", lambda: registry.set_container_archived("base", False))
    step("restore a version", lambda: registry.set_version_archived("base", "1", False))
    refused(
        "delete a version",
        REFUSED,
        "versions are never deleted",
        lambda: backend.delete_version("base", "2"),
    )
    refused(
        "delete a container",
        REFUSED,
        "containers are never deleted",
        lambda: backend.delete_container("other"),
    )
    refused(
        "change content in place",
        REFUSED,
        "only description, tags and archived",
        lambda: backend.change_content("base", "1"),
    )
    refused(
        "archive an absent environment",
        NotFound,
        "no environment 'absent'",
        lambda: registry.set_container_archived("absent", True),
    )
    refused(
        "archive an absent version",
        NotFound,
        "no version base:9",
        lambda: registry.set_version_archived("base", "9", True),
    )

    def interrupted_batch() -> None:
        with registry.batch():
            registry.put_version("batched", "1", v1)
            registry.set_container_archived("other", True)
            raise Interrupted("stopped mid-batch")  # none of it stays

    refused("interrupted batch", Interrupted, "mid-batch", interrupted_batch)
    record = BuildRecord("base", "2", ops.digest, BuildStatus.SUCCEEDED, image="repo@sha256:ab")
    step("record a build", lambda: registry.set_build_record(record))
    refused(
        "record the build of an absent version",
        RegistryError,
        "build of base:9",
        lambda: registry.set_build_record(BuildRecord("base", "9", v2.digest)),
    )
    assert registry.build_records() == {("base", "2"): record}
    return steps


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_the_registry_rules_hold_on_the_fake_as_on_sqlite(backend: str, tmp_path: Path) -> None:
    made = BACKENDS[backend](tmp_path / "registry.db")
    try:
        steps = scenario(made)
        registry = made.registry
        moved = [name for name, changed, _ in steps if changed]
        assert moved == [
            "create",
            "create other",
            "update tags",
            "new version",
            "update tags only",
            "archive a version",
            "archive the container",
            "create under the archived container",
            "restore the container",
            "restore a version",
            "record a build",
        ]
        final = steps[-1][2]
        assert [(c["name"], c["archived"]) for c in final] == [("base", False), ("other", False)]
        base = final[0]["versions"]
        assert [(v["version"], v["archived"], v["tags"]) for v in base] == [
            ("1", False, {"team": "platform"}),
            ("2", False, {"team": "ops"}),
            ("3", True, {"team": "ml"}),  # created while its container was archived
        ]
        assert base[0]["content"]["image"] == "busybox:1.36"
        history = history_of(registry, ["base", "other", "absent"])
        assert [(e["version"], e["action"]) for e in history["base"]] == [
            ("1", "create"),
            ("1", "update_metadata"),
            ("2", "create"),
            ("2", "update_metadata"),
            ("1", "archive"),
            (None, "archive"),
            ("3", "create"),
            (None, "restore"),
            ("1", "restore"),
        ]
        assert history["base"][1]["detail"] == {
            "description": "new words",
            "tags": {"team": "platform"},
        }
        assert history["other"] == [
            {
                "version": "1",
                "action": "create",
                "detail": {"digest": write("busybox:1.37", {}).digest, "tags": {"team": "ml"}},
            }
        ]
        assert history["absent"] == []
    finally:
        made.registry.close()


def test_the_fake_registry_reads_back_what_sqlite_reads_back(tmp_path: Path) -> None:
    fake, real = memory_backend(tmp_path / "unused"), sqlite_backend(tmp_path / "registry.db")
    try:
        assert scenario(fake) == scenario(real)  # every step: token moved or not, the state
        names = ["base", "other"]
        assert history_of(fake.registry, names) == history_of(real.registry, names)
        assert fake.registry.build_records() == real.registry.build_records()
    finally:
        real.registry.close()
