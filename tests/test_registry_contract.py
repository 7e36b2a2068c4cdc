"""One contract, two backends: the embedded SQLite registry, and Azure ML through the real
azure-ai-ml SDK over HTTPS to the emulator. Every scenario runs against both, and against
the in-memory registry of the engine verb tests (tests/fakes.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.azureml import AzureMLRegistry
from reconciler.adapters.azureml_errors import RetryPolicy
from reconciler.adapters.cache import KeptState
from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.build.jobs import BuildRecord, BuildStatus
from reconciler.core.spec.digest import build_content, content_digest
from reconciler.core.spec.model import (
    STAMP_CONTENT_DIGEST,
    STAMP_MANAGED_BY,
    VersionWrite,
    metadata_digest,
)
from reconciler.ports import NotFound, Registry, RegistryError, VersionConflict
from tests.azure_support import Workspace
from tests.fakes import MemoryRegistry

BLOBS: dict[str, bytes] = {}


def blob(data: bytes) -> str:
    blob_id = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    BLOBS[blob_id] = data
    return blob_id


def write(
    image: str = "busybox:1.36",
    description: str | None = "an environment",
    tags: dict[str, str] | None = None,
    conda: Any = None,
    build: dict[str, Any] | None = None,
) -> VersionWrite:
    content = build_content(
        image=None if build else image,
        conda=conda,
        build=build,
        os_type="linux",
        inference_config=None,
    )
    digest = content_digest(content)
    user = dict(tags or {"team": "ml"})
    stamped = {
        **user,
        STAMP_MANAGED_BY: "reconciler",
        STAMP_CONTENT_DIGEST: digest,
        "reconciler.metadata-digest": metadata_digest(description, user),
    }
    return VersionWrite(content, digest, description, stamped)


def context(dockerfile: str = "FROM busybox:1.36\n") -> dict[str, Any]:
    files = [
        ["Dockerfile", "100644", blob(dockerfile.encode())],
        ["app/run.sh", "100755", blob(b"#!/bin/sh\necho hi\n")],
    ]
    return {"dockerfile_path": "Dockerfile", "files": files}


@pytest.fixture(params=["sqlite", "azure", "memory"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    if request.param == "sqlite":
        return SqliteRegistry(tmp_path / "registry.db")
    if request.param == "memory":  # the fake the engine verb tests use must keep it too
        return MemoryRegistry()
    workspace: Workspace = request.getfixturevalue("workspace")
    return AzureMLRegistry(
        workspace.url, tmp_path / "locks", BLOBS.__getitem__, RetryPolicy(3, 0.01)
    )


def versions(registry: Registry, name: str) -> list[tuple[str, bool]]:
    container = registry.get_container(name)
    assert container is not None
    return [(v.version, v.archived) for v in container.versions]


def test_create_reads_back_content_tags_and_stamps(registry: Registry) -> None:
    sent = write(conda={"channels": ["conda-forge"], "dependencies": ["python=3.11"]})
    stored = registry.put_version("pydata", "1", sent)
    assert stored.version == "1" and stored.effective_digest == sent.digest
    found = registry.get_version("pydata", "1")
    assert found is not None
    assert found.effective_digest == sent.digest
    assert found.description == "an environment"
    assert dict(found.tags) == dict(sent.tags)
    assert found.managed and not found.metadata_edited
    assert found.content is not None and found.content["conda"] == sent.content["conda"]
    state = registry.read_state()
    assert list(state.containers) == ["pydata"]
    assert registry.get_version("pydata", "2") is None
    assert registry.get_container("absent") is None


def test_new_versions_keep_creation_order(registry: Registry) -> None:
    registry.put_version("base", "1", write("busybox:1.36"))
    registry.put_version("base", "10", write("busybox:1.37"))
    registry.put_version("base", "2", write("busybox:1.38"))
    container = registry.get_container("base")
    assert container is not None
    assert [v.version for v in container.versions] == ["1", "10", "2"]
    assert container.newest is not None and container.newest.version == "2"
    assert container.next_version() == "11"


def test_metadata_update_in_place_and_resend_is_a_noop(registry: Registry) -> None:
    registry.put_version("base", "1", write())
    updated = write(description="new words", tags={"team": "platform"})
    registry.put_version("base", "1", updated)
    found = registry.get_version("base", "1")
    assert found is not None
    assert found.description == "new words" and found.tags["team"] == "platform"
    assert versions(registry, "base") == [("1", False)]
    again = registry.put_version("base", "1", updated)
    assert again.description == "new words"


def test_other_content_for_an_existing_version_is_a_conflict(registry: Registry) -> None:
    registry.put_version("base", "1", write("busybox:1.36"))
    with pytest.raises(VersionConflict):
        registry.put_version("base", "1", write("busybox:1.37"))
    found = registry.get_version("base", "1")
    assert found is not None and found.content is not None
    assert found.content["image"] == "busybox:1.36"


def test_archive_and_restore_a_container(registry: Registry) -> None:
    registry.put_version("base", "1", write())
    registry.put_version("other", "1", write())
    registry.set_container_archived("base", True)
    state = registry.read_state()
    assert state.containers["base"].archived and not state.containers["other"].archived
    assert [v.version for v in state.containers["base"].versions] == ["1"]  # never deleted
    registry.set_container_archived("base", False)
    assert not registry.read_state().containers["base"].archived
    with pytest.raises(NotFound):
        registry.set_container_archived("absent", True)


def test_archive_and_restore_a_version(registry: Registry) -> None:
    registry.put_version("base", "1", write("busybox:1.36"))
    registry.put_version("base", "2", write("busybox:1.37"))
    registry.set_version_archived("base", "1", True)
    assert versions(registry, "base") == [("1", True), ("2", False)]
    registry.set_container_archived("base", True)
    with pytest.raises(RegistryError, match="restore the environment first"):
        registry.set_version_archived("base", "1", False)
    registry.set_container_archived("base", False)
    registry.set_version_archived("base", "1", False)
    assert versions(registry, "base") == [("1", False), ("2", False)]


def test_listing_includes_archived_and_follows_pages(registry: Registry) -> None:
    names = [f"env{i}" for i in range(5)]
    for name in names:
        registry.put_version(name, "1", write())
    for version in ("2", "3"):
        registry.put_version("env0", version, write(f"busybox:1.{version}"))
    registry.set_container_archived("env3", True)
    state = registry.read_state()
    assert sorted(state.containers) == names
    assert state.containers["env3"].archived
    assert [v.version for v in state.containers["env0"].versions] == ["1", "2", "3"]


def test_build_context_round_trip(registry: Registry) -> None:
    sent = write(build=context())
    registry.put_version("serving", "1", sent)
    found = registry.get_version("serving", "1")
    assert found is not None and found.effective_digest == sent.digest
    # identical content again: accepted, still one version
    registry.put_version("serving", "1", write(build=context(), description="described"))
    assert versions(registry, "serving") == [("1", False)]
    with pytest.raises(VersionConflict):
        registry.put_version("serving", "1", write(build=context("FROM busybox:1.37\n")))


def test_build_records_round_trip_and_are_not_drift(registry: Registry) -> None:
    sent = write()
    registry.put_version("base", "1", sent)
    record = BuildRecord(
        "base",
        "1",
        sent.digest,
        BuildStatus.FAILED,
        None,
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T00:01:00+00:00",
        "step 1\nboom",
        "drift-report/build-logs/base-1.log",
        2,
        "2024-01-01T00:05:00+00:00",
        "build failed",
        False,
    )
    registry.set_build_record(record)
    assert registry.build_records()[("base", "1")] == record
    found = registry.get_version("base", "1")
    assert found is not None and not found.metadata_edited
    # a later metadata update keeps the record
    registry.put_version("base", "1", write(description="changed"))
    assert registry.build_records()[("base", "1")] == record


def test_build_records_are_written_in_one_call(registry: Registry) -> None:
    sent = write()
    registry.put_version("base", "1", sent)
    registry.put_version("other", "1", sent)
    records = [
        BuildRecord("base", "1", sent.digest, BuildStatus.SUCCEEDED, "img:1", bases={"b": "d"}),
        BuildRecord("other", "1", sent.digest, BuildStatus.NOT_BUILT, message="no builder"),
    ]
    registry.set_build_records(records)
    assert [registry.build_records()[(r.name, r.version)] for r in records] == records
    registry.set_build_records([])  # nothing to write: no error
    # a record for a version that does not exist is refused; the batch's others are
    # written by a backend that writes one at a time, none by the SQLite registry
    again = replace(records[0], status=BuildStatus.FAILED, message="later")
    with pytest.raises(RegistryError):
        registry.set_build_records([again, BuildRecord("ghost", "1", sent.digest)])
    assert registry.build_records()[("base", "1")] in (records[0], again)
    if isinstance(registry, SqliteRegistry):  # one transaction: all or none
        assert registry.build_records()[("base", "1")] == records[0]


def test_lock_is_exclusive(registry: Registry) -> None:
    from reconciler.ports import LockTimeout

    with registry.lock(1.0), pytest.raises(LockTimeout):
        other: Callable[..., Any] = registry.lock
        with other(0.05):
            pass


def test_reports_what_the_engine_reads_of_a_backend(registry: Registry) -> None:
    registry.put_version("pydata", "1", write())
    registry.read_state()
    kept = KeptState(registry)  # a long-running reconciler's: its memory takes one write at a time
    assert kept.write_concurrency == 1
    assert (kept.last_read, kept.throttle) == (registry.last_read, registry.throttle)
    report = registry.last_read
    throttle = registry.throttle
    if isinstance(registry, SqliteRegistry | MemoryRegistry):  # one writer, full reads, no service
        assert registry.write_concurrency == 1
        assert report is None and throttle is None
        return
    assert registry.write_concurrency > 1  # environments written at once
    assert report is not None and report.to_dict()["view"] in ("full", "incremental")
    assert report.to_dict()["containers"] == 1
    assert throttle is not None and (throttle.throttled, throttle.held) == (0, 0.0)


def test_put_versions_writes_each_in_order_as_put_version_would(registry: Registry) -> None:
    registry.put_version("base", "1", write("busybox:1.36"))
    sent = [
        ("base", "2", write("busybox:1.37")),
        ("pydata", "1", write("busybox:1.38")),
        ("base", "1", write("busybox:1.36", description="new words")),  # metadata only
    ]
    written = registry.put_versions(sent)
    assert [(v.name, v.version) for v in written] == [(n, v) for n, v, _ in sent]
    for version in written:
        found = registry.get_version(version.name, version.version)
        assert found is not None
        assert (found.effective_digest, found.description, dict(found.tags)) == (
            version.effective_digest,
            version.description,
            dict(version.tags),
        )
    assert versions(registry, "base") == [("1", False), ("2", False)]
    described = registry.get_version("base", "1")
    assert described is not None and described.description == "new words"
    assert registry.put_versions([]) == []
