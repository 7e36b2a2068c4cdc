"""In-memory implementations of the ports (reconciler/ports.py), for engine verb tests that
need no git, no SQLite file and no Docker Engine.

Each fake follows the rules its real adapter enforces, so that a verb cannot pass here and
fail there: the registry keeps versions immutable except description and tags, never
deletes, archives new versions under an archived container and logs every write; the
source gives git's blob ids; the builder pushes what it builds and fails when told to.
tests/test_fakes_contract.py runs one scenario against the fake and the real registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from reconciler.core.build.jobs import BuildJob, BuildRecord
from reconciler.core.desired.snapshot import FileEntry
from reconciler.core.spec.digest import canonical_json, content_digest
from reconciler.core.spec.model import (
    RegisteredContainer,
    RegisteredVersion,
    RegistryState,
    VersionWrite,
)
from reconciler.ports import (
    BuildError,
    BuilderUnavailable,
    LockTimeout,
    NotFound,
    RegistryError,
    SourceError,
    VersionConflict,
)


def blob_id(content: bytes) -> str:
    """The id git gives this content as a blob."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


# -- the source: files as a dict of path -> bytes, refs as named dicts ----------------------


class MemorySnapshot:
    """The files of one moment (a ref, or the working tree), frozen when taken."""

    def __init__(self, files: Mapping[str, bytes], commit: str | None, label: str) -> None:
        self._files = dict(files)
        self._entries = {path: FileEntry(path, blob_id(data)) for path, data in files.items()}
        self._commit = commit
        self._label = label

    @property
    def commit(self) -> str | None:
        return self._commit

    @property
    def label(self) -> str:
        return self._label

    def files_under(self, directory: str) -> list[FileEntry]:
        prefix = directory.rstrip("/") + "/" if directory else ""
        return [self._entries[p] for p in sorted(self._entries) if p.startswith(prefix)]

    def lookup(self, path: str) -> FileEntry | None:
        return self._entries.get(path)

    def read(self, entry: FileEntry) -> bytes:
        data = self._files.get(entry.path)
        if data is None or blob_id(data) != entry.blob_id:
            raise SourceError(f"cannot read {entry.path}: not in {self._label}")
        return data

    def prefetch(self, entries: list[FileEntry]) -> None:
        return None  # everything is in memory already


class MemorySource:
    """A repository in memory: ``files`` is the working tree (edit it freely), ``refs``
    the committed trees by name; ``branch`` is the ref the working tree sits on (HEAD)."""

    def __init__(
        self, files: Mapping[str, str | bytes] | None = None, branch: str = "main"
    ) -> None:
        self.files: dict[str, bytes] = {}
        self.refs: dict[str, dict[str, bytes]] = {}
        self.branch = branch
        self.hints: list[frozenset[str] | None] = []
        self._commits: dict[str, str] = {}  # ref -> commit id
        for path, data in (files or {}).items():
            self.write(path, data)

    # -- editing, as a person with a checkout would -----------------------------------

    def write(self, path: str, data: str | bytes) -> None:
        self.files[path] = data.encode() if isinstance(data, str) else data

    def remove(self, path: str) -> None:
        del self.files[path]

    def commit(self, ref: str | None = None) -> str:
        """Record the working tree as ``ref`` (default: the branch); its commit id."""
        name = ref or self.branch
        parent = self._commits.get(name, "")
        tree = "".join(f"{blob_id(d)} {p}\n" for p, d in sorted(self.files.items()))
        commit = hashlib.sha1(f"tree {tree}parent {parent}\n".encode()).hexdigest()
        self.refs[name] = dict(self.files)
        self._commits[name] = commit
        return commit

    # -- the Source port --------------------------------------------------------------

    def snapshot(self, ref: str | None) -> MemorySnapshot:
        if ref is None:
            return MemorySnapshot(self.files, self._commits.get(self.branch), "working tree")
        name = self._resolve(ref)
        return MemorySnapshot(self.refs[name], self._commits[name], ref)

    def fingerprint(self, ref: str | None, watch: list[str] | None = None) -> str | None:
        if ref is not None:
            return "commit:" + self._commits[self._resolve(ref)]
        listing = "".join(f"{blob_id(d)} {p}\n" for p, d in sorted(self.files.items()))
        return "tree:" + hashlib.sha256(listing.encode()).hexdigest()

    def read_blob(self, blob: str) -> bytes:
        # Only committed content is in the history, as in git's object database.
        for tree in self.refs.values():
            for data in tree.values():
                if blob_id(data) == blob:
                    return data
        raise SourceError(f"blob {blob} is not in the repository's history")

    def watch_list(
        self, snapshot: Any, root: str, references: frozenset[str], whole_tree: bool = False
    ) -> list[str] | None:
        return None  # the fingerprint hashes the files themselves: nothing to stat

    def keep_listing(self) -> None:
        return None  # every snapshot is a fresh copy

    def hint(self, paths: frozenset[str] | None) -> None:
        self.hints.append(paths)

    def list_files(self, snapshot: Any, match: Callable[[str], bool]) -> list[FileEntry]:
        return [e for e in snapshot.files_under("") if match(e.path)]

    def sizes(self, snapshot: Any, entries: list[FileEntry]) -> dict[str, int]:
        return {e.blob_id: len(snapshot.read(e)) for e in entries}

    def _resolve(self, ref: str) -> str:
        if ref in self.refs:
            return ref
        for name, commit in self._commits.items():
            if commit == ref:
                return name
        raise SourceError(f"unknown git ref {ref!r}")


# -- the registry: dicts that follow the rules the SQLite adapter enforces ----------------


class NeverDeleted(dict[str, Any]):
    """A store that refuses deletion, like the SQLite registry's triggers."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def _refuse(self, *args: Any) -> NoReturn:
        raise RegistryError(f"{self.what} are never deleted")

    __delitem__ = _refuse
    pop = _refuse
    popitem = _refuse
    clear = _refuse


MUTABLE_FIELDS = frozenset({"description", "tags", "archived"})
_REGISTRY_IDS = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class MemoryRegistry:
    """The Registry port over dicts. Stored content is kept as canonical JSON and decoded
    on each read, as the SQLite adapter does, so callers never share mutable state."""

    write_concurrency = 1  # one writer at a time, like SQLite
    last_read = None  # every read is a full one: nothing to report
    throttle = None  # no service to throttle it

    def __init__(self, url: str = "memory://registry") -> None:
        self.url = url
        self._id = next(_REGISTRY_IDS)
        self._generation = 0
        self._containers: NeverDeleted = NeverDeleted("containers")  # name -> archived
        self._versions: NeverDeleted = NeverDeleted("versions")  # name -> {version: row}
        self._builds: NeverDeleted = NeverDeleted("build records")  # "name\0v" -> record
        self._events: list[tuple[str, dict[str, Any]]] = []  # (name, event), oldest first
        self._lock = threading.Lock()
        self._in_batch = False
        self.failures: dict[tuple[str, str | None], list[RegistryError]] = {}

    # -- for tests: faults and hand edits ---------------------------------------------

    def fail_next(self, name: str, error: RegistryError, version: str | None = None) -> None:
        """The next write to NAME (or NAME:VERSION) raises ``error``, writing nothing."""
        self.failures.setdefault((name, version), []).append(error)

    def edit_version(self, name: str, version: str, **changes: Any) -> None:
        """A hand edit made outside the reconciler (the portal, a script): only description,
        tags and archived can change, and no event is logged (the reconciler made none)."""
        refused = set(changes) - MUTABLE_FIELDS
        if refused:
            raise RegistryError("only description, tags and archived of a version can change")
        row = self._versions.get(name, {}).get(version)
        if row is None:
            raise NotFound(f"no version {name}:{version} in the registry")
        for key, value in changes.items():
            row[key] = canonical_json(dict(value)) if key == "tags" else value
        row["updated_at"] = _now()
        self._generation += 1

    def delete_version(self, name: str, version: str) -> None:
        """What a hand delete would do: refused, as the service's rules say."""
        del self._versions[name][version]

    def delete_container(self, name: str) -> None:
        del self._containers[name]

    # -- reads ------------------------------------------------------------------------

    def state_token(self) -> str | None:
        return f"memory-{self._id}:{self._generation}"

    def read_state(self) -> RegistryState:
        return RegistryState(
            {name: self._container(name) for name in sorted(self._containers)},
            self.state_token(),
        )

    def get_container(self, name: str) -> RegisteredContainer | None:
        return self._container(name) if name in self._containers else None

    def get_version(self, name: str, version: str) -> RegisteredVersion | None:
        row = self._versions.get(name, {}).get(version)
        return None if row is None else _version(row)

    def history(self, name: str) -> list[dict[str, Any]]:
        return [
            {**event, "detail": json.loads(event["detail"])}
            for owner, event in self._events
            if owner == name
        ]

    def build_records(self) -> dict[tuple[str, str], BuildRecord]:
        return {(r.name, r.version): r for r in self._builds.values()}

    # -- writes -----------------------------------------------------------------------

    def put_version(self, name: str, version: str, write: VersionWrite) -> RegisteredVersion:
        self._fault(name, version)
        digest = content_digest(dict(write.content))
        existing = self._versions.get(name, {}).get(version)
        now = _now()
        if existing is not None:
            if existing["digest"] != digest:
                raise VersionConflict(
                    f"{name}:{version} already exists with different content "
                    f"({existing['digest']} != {digest})"
                )
            tags = canonical_json(dict(write.tags))
            if existing["description"] == write.description and existing["tags"] == tags:
                return _version(existing)
            existing.update(description=write.description, tags=tags, updated_at=now)
            self._event(
                name,
                version,
                "update_metadata",
                {"description": write.description, "tags": dict(write.tags)},
            )
            return _version(existing)
        if name not in self._containers:
            self._containers[name] = False
            self._versions[name] = NeverDeleted("versions")
        row = {
            "name": name,
            "version": version,
            "content": canonical_json(dict(write.content)),
            "digest": digest,
            "description": write.description,
            "tags": canonical_json(dict(write.tags)),
            "datastore": write.datastore,
            "archived": self._containers[name],  # under an archived container: archived
            "created_at": now,
            "updated_at": now,
        }
        self._versions[name][version] = row
        self._event(name, version, "create", {"digest": digest, "tags": dict(write.tags)})
        return _version(row)

    def put_versions(
        self, writes: Sequence[tuple[str, str, VersionWrite]]
    ) -> list[RegisteredVersion]:
        return [self.put_version(name, version, write) for name, version, write in writes]

    def set_container_archived(self, name: str, archived: bool) -> None:
        self._fault(name, None)
        if name not in self._containers:
            raise NotFound(f"no environment {name!r} in the registry")
        if self._containers[name] != archived:
            self._containers[name] = archived
            self._event(name, None, "archive" if archived else "restore", {})

    def set_version_archived(self, name: str, version: str, archived: bool) -> None:
        self._fault(name, version)
        if name not in self._containers:
            raise NotFound(f"no environment {name!r} in the registry")
        if not archived and self._containers[name]:
            raise RegistryError(
                f"cannot restore {name}:{version} while {name} is archived; restore "
                "the environment first"
            )
        row = self._versions[name].get(version)
        if row is None:
            raise NotFound(f"no version {name}:{version} in the registry")
        if row["archived"] != archived:
            row.update(archived=archived, updated_at=_now())
            self._event(name, version, "archive" if archived else "restore", {})

    def set_build_record(self, record: BuildRecord) -> None:
        if record.version not in self._versions.get(record.name, {}):
            raise RegistryError(
                f"cannot record the build of {record.name}:{record.version}: no such version"
            )
        self._builds[f"{record.name}\0{record.version}"] = record
        self._generation += 1

    def set_build_records(self, records: Sequence[BuildRecord]) -> None:
        for record in records:
            self.set_build_record(record)

    # -- lock, batch ------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        if not self._lock.acquire(timeout=timeout):
            raise LockTimeout(
                f"registry {self.url} is locked by another reconciler; waited {timeout:g}s"
            )
        try:
            yield
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction: an exception escaping the batch undoes its writes."""
        if self._in_batch:
            yield
            return
        saved = self._copy()
        self._in_batch = True
        try:
            yield
        except BaseException:
            self._restore(saved)
            raise
        finally:
            self._in_batch = False

    def close(self) -> None:
        return None  # nothing held open

    # -- inside -----------------------------------------------------------------------

    def _container(self, name: str) -> RegisteredContainer:
        rows = self._versions.get(name, {}).values()
        return RegisteredContainer(name, self._containers[name], tuple(_version(r) for r in rows))

    def _event(self, name: str, version: str | None, action: str, detail: dict[str, Any]) -> None:
        event = {"at": _now(), "version": version, "action": action}
        self._events.append((name, {**event, "detail": canonical_json(detail)}))
        self._generation += 1

    def _fault(self, name: str, version: str | None) -> None:
        for key in ((name, version), (name, None)):
            queued = self.failures.get(key)
            if queued:
                raise queued.pop(0)

    def _copy(self) -> tuple[Any, ...]:
        versions = {n: {v: dict(r) for v, r in rows.items()} for n, rows in self._versions.items()}
        return (
            dict(self._containers),
            versions,
            dict(self._builds),
            list(self._events),
            self._generation,
        )

    def _restore(self, saved: tuple[Any, ...]) -> None:
        containers, versions, builds, events, generation = saved
        # The stores refuse deletion; a rollback goes around that (dict's own methods)
        # to take back only what the batch itself wrote.
        dict.clear(self._containers)
        dict.update(self._containers, containers)
        dict.clear(self._versions)
        for name, rows in versions.items():
            kept = NeverDeleted("versions")
            kept.update(rows)
            dict.__setitem__(self._versions, name, kept)
        dict.clear(self._builds)
        dict.update(self._builds, builds)
        self._events[:] = events
        self._generation = generation


def _version(row: Mapping[str, Any]) -> RegisteredVersion:
    return RegisteredVersion(
        name=row["name"],
        version=row["version"],
        content=json.loads(row["content"]),
        digest=row["digest"],
        description=row["description"],
        tags=json.loads(row["tags"]),
        archived=bool(row["archived"]),
        created_at=row["created_at"],
        datastore=row["datastore"],
    )


# -- images: an OCI registry and a builder that records what it builds --------------------


class MemoryBuilder:
    """The Builder (and ImageRegistry) port: builds are recorded, their images "pushed" to
    a dict standing for the OCI registry. ``fail(digest, why)`` makes that content's build
    fail; ``unavailable_reason`` stands for an unreachable Docker Engine."""

    def __init__(self, image_repository: str = "127.0.0.1:5000/test/environments") -> None:
        self.image_repository = image_repository
        self.pushed: dict[str, str] = {}  # tag -> manifest digest, in the OCI registry
        self.local: set[str] = set()  # tags only the local engine holds
        self.builds: list[BuildJob] = []
        self.failing: dict[str, str] = {}  # image tag -> the build's error
        self.unavailable_reason: str | None = None
        self.lookup_error: str | None = None  # the OCI registry cannot be reached

    def fail(self, digest: str, why: str) -> None:
        self.failing[digest.removeprefix("sha256:")] = why

    def remove(self, tag: str) -> None:
        """The image vanished from the OCI registry (garbage-collected, say)."""
        del self.pushed[tag]

    def unavailable(self) -> str | None:
        return self.unavailable_reason

    def pushed_tags(self) -> set[str]:
        if self.lookup_error is not None:
            raise BuildError(self.lookup_error)
        return set(self.pushed)

    def known_tags(self) -> set[str]:
        return self.pushed_tags() | self.local

    def pushed_image(self, tag: str) -> str | None:
        digest = self.pushed.get(tag)
        return None if digest is None else f"{self.image_repository}@{digest}"

    def pushed_images(self, tags: list[str]) -> dict[str, str | None]:
        return {tag: self.pushed_image(tag) for tag in tags}

    def build(
        self, job: BuildJob, read_blob: Callable[[str], bytes], log: Callable[[str], None]
    ) -> str:
        if self.unavailable_reason is not None:
            raise BuilderUnavailable(self.unavailable_reason)
        self.builds.append(job)
        # The context is read as a real build would send it: a missing file fails it.
        context = b"".join(read_blob(blob) for _, _, blob in job.context_files)
        log(f"building {job.kind} image {job.tag[:12]} ({len(context)} bytes of context)")
        why = self.failing.get(job.tag)
        if why is not None:
            raise BuildError(why)
        manifest = "sha256:" + hashlib.sha256(job.tag.encode() + context).hexdigest()
        self.pushed[job.tag] = manifest
        log(f"pushed {self.image_repository}:{job.tag}")
        return f"{self.image_repository}@{manifest}"


class MemoryBaseImages:
    """The BaseImages port: what each base image reference points at now."""

    def __init__(self, digests: Mapping[str, str | None] | None = None) -> None:
        self.digests: dict[str, str | None] = dict(digests or {})
        self.unreachable: str | None = None

    def resolve(self, ref: str) -> str | None:
        if self.unreachable is not None:
            raise BuildError(self.unreachable)
        return self.digests.get(ref)


class MemoryAppliedStore:
    """The AppliedStore port: what apply recorded, and how many times it saved."""

    def __init__(self, applied: Mapping[str, str] | None = None) -> None:
        self.applied: dict[str, str] = dict(applied or {})
        self.saves = 0

    def load(self) -> dict[str, str]:
        return dict(self.applied)

    def save(self, applied: Mapping[str, str]) -> None:
        self.applied = dict(applied)
        self.saves += 1


if TYPE_CHECKING:  # mypy checks each fake against its Protocol here
    from reconciler.ports import (
        AppliedStore,
        BaseImages,
        Builder,
        ImageRegistry,
        Registry,
        Snapshot,
        Source,
    )

    _snapshot: Snapshot = MemorySnapshot({}, None, "working tree")
    _source: Source = MemorySource()
    _registry: Registry = MemoryRegistry()
    _builder: Builder = MemoryBuilder()
    _images: ImageRegistry = MemoryBuilder()
    _bases: BaseImages = MemoryBaseImages()
    _applied: AppliedStore = MemoryAppliedStore()
