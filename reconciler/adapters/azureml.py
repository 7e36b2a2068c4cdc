"""The Azure ML registry: environments of a workspace or an Azure ML registry.

Behaves as the SQLite registry does from the planner's view: ownership stamps are tags,
archive and restore work on containers and versions, and a version re-sent with other
content is a VersionConflict. How it talks to the service:

- reads go through the REST API directly (azureml_rest: azure-core's pipeline with the
  SDK's credential): one container listing, then one version listing per environment with
  ``listViewType=All``, whose items carry ``isArchived``; the per-environment listings run
  concurrently (``azureml_concurrency``), and a throttled answer holds every call until
  its ``Retry-After`` has passed (azureml_errors.Throttle). Registries are read the same
  way, so archived environments are seen there too;
- reads are incremental when a state directory is given (azureml_observations): only
  containers whose listing view changed since the last run are read again, unless
  ``refresh`` is set (``plan --refresh``, ``drift``, ``apply --self-heal``); under the
  lock (apply, build) the first read is always a full one, as Terraform's apply refreshes;
- a new version goes through the SDK's ``create_or_update`` (it uploads a local build
  context, once per distinct context in a run); metadata, archive and restore re-send the
  resource as read, with only the changed fields, so nothing else moves. Every write reads
  what it writes first: it never depends on a kept view;
- ``lock`` is a lease on a blob in the workspace's default storage (azureml_lease), held
  across machines; the file lock of this machine with ``lock="local"`` and for an Azure ML
  registry (it has no storage of its own to lease);
- build records are a version tag (see azureml_content).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.adapters import azureml_content as content_io
from reconciler.adapters import azureml_wire as wire
from reconciler.adapters.azureml_client import (
    AzureTarget,
    make_client,
    parse_registry_url,
    resource_manager,
)
from reconciler.adapters.azureml_errors import RetryPolicy, Throttle, call
from reconciler.adapters.azureml_observations import Observations, ObservationStore, Observed
from reconciler.adapters.azureml_rest import RestSession
from reconciler.adapters.locking import file_lock
from reconciler.ports import NotFound, RegistryError, VersionConflict

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import Environment

    from reconciler.core.build.jobs import BuildRecord
    from reconciler.core.spec.model import (
        RegisteredContainer,
        RegisteredVersion,
        RegistryState,
        VersionWrite,
    )
    from reconciler.core.spec.registry_url import RegistryURL

T = TypeVar("T")
BlobReader = Callable[[str], bytes]
DEFAULT_CONCURRENCY = 16
LOCK_KINDS = ("lease", "local")  # a blob lease in the workspace's storage, or a file lock


@dataclass(frozen=True)
class ReadReport:
    """How the last read_state observed the registry, for the plan to say."""

    view: str  # "full" | "incremental"
    containers: int  # in the container listing
    read: int  # whose versions were read from the service
    requests: int  # calls made by that read
    throttled: int  # answers that asked to wait, since the registry was opened
    throttle_wait: float  # seconds held by them (wall clock)

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "containers": self.containers,
            "read": self.read,
            "requests": self.requests,
            "throttled": self.throttled,
            "throttle_wait_s": round(self.throttle_wait, 3),
        }


class AzureMLRegistry:
    def __init__(
        self,
        url: str | RegistryURL,
        lock_dir: Path,
        read_blob: BlobReader | None = None,
        retry: RetryPolicy | None = None,
        client: MLClient | None = None,
        *,
        state_dir: Path | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        refresh: bool = False,
        lock: str = "lease",
    ) -> None:
        if importlib.util.find_spec("azure.ai.ml") is None:
            raise RegistryError(
                f"{url}: the Azure ML backend needs azure-ai-ml: pip install 'reconciler[azure]'"
            )
        self.url = str(url)
        self.target: AzureTarget = parse_registry_url(url)
        self._lock_dir = lock_dir
        self._read_blob = read_blob
        self._retry = retry or RetryPolicy()
        self._client = client
        self.concurrency = max(1, concurrency)
        self.write_concurrency = self.concurrency  # environments the engine writes at once
        self.refresh = refresh
        self._trust_store = not refresh  # what an earlier run kept may spare reads
        self.throttle = Throttle()
        self.rest = RestSession(self.target, self.concurrency + 4)
        self._store = (
            ObservationStore(state_dir, self.url, resource_manager())
            if state_dir is not None
            else None
        )
        if lock not in LOCK_KINDS:
            raise RegistryError(f"azureml_lock: expected one of {', '.join(LOCK_KINDS)}")
        # A registry has no storage of its own to hold a lease in: the file lock there.
        self.lock_kind = lock if self.target.registry is None else "local"
        self._observations: Observations | None = None  # what this process knows
        self._lock = threading.Lock()  # guards the observations and the counters
        self._client_lock = threading.Lock()
        self._contexts: dict[str, str] = {}  # build context files -> their uploaded URI
        self._context_locks: dict[str, threading.Lock] = {}
        self._written: dict[tuple[str, str], dict[str, Any]] = {}  # as the service answered
        self._dirty = False  # observations changed since they were saved
        self._requests = 0
        self.last_read: ReadReport | None = None

    # -- plumbing ---------------------------------------------------------------------

    @property
    def client(self) -> MLClient:
        with self._client_lock:
            if self._client is None:
                self._client = self._call(
                    lambda: make_client(self.target, credential=self.rest.credential), "connect"
                )
            return self._client

    def _call(self, function: Callable[[], T], what: str) -> T:
        def counted() -> T:
            with self._lock:
                self._requests += 1
            return function()

        return call(counted, self.url, what, self._retry, throttle=self.throttle)

    def _json(self, method: str, what: str, *parts: str, body: Any = None) -> Any:
        # The URL inside the call: a registry's first one discovers its endpoint.
        if method == "GET":
            return self._call(lambda: self.rest.get(self.rest.environments(*parts)), what)
        return self._call(lambda: self.rest.put(self.rest.environments(*parts), body), what)

    def _optional_json(self, what: str, *parts: str) -> Any:
        try:
            return self._json("GET", what, *parts)
        except NotFound:
            return None

    def close(self) -> None:
        self._save_observations()
        self.rest.close()
        self._client = None

    def _save_observations(self) -> None:
        """Keep what was read plus what this process wrote, for the next run."""
        with self._lock:
            observations, dirty = self._observations, self._dirty
            self._dirty = False
        if self._store is not None and observations is not None and dirty:
            self._store.save(observations)

    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        """Exclusive use of the registry. What is planned under it (apply, build) is
        planned on a full read: the view kept from an earlier run is dropped here, so a
        stale entry can never decide a write; later reads of the same run trust only what
        this run read and wrote."""
        held: contextlib.AbstractContextManager[None]
        if self.lock_kind == "lease":
            from reconciler.adapters.azureml_lease import lease_lock

            held = lease_lock(self, timeout)
        else:
            path = self._lock_dir / f"azureml-{self.target.key}.lock"
            held = file_lock(path, timeout, f"registry {self.url} (lock on this machine)")
        with held:
            with self._lock:
                self._observations = None
                self._trust_store = False
            yield

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        yield  # every call is its own transaction at the service

    def state_token(self) -> str | None:
        return None

    # -- reads ------------------------------------------------------------------------

    def _listing(self, parts: tuple[str, ...], what: str) -> list[Any]:
        """Every item of a listing (``listViewType=All``), page after page."""
        items, link = self._call(lambda: self.rest.first_page(self.rest.environments(*parts)), what)
        while link:
            more, link = self._call(partial(self.rest.next_page, link), what)
            items.extend(more)
        return items

    def _container_views(self) -> list[wire.ContainerView]:
        items = self._listing((), "list environments")
        return [wire.container_view(i) for i in items]

    def _versions(self, name: str) -> tuple[RegisteredVersion, ...] | None:
        """Every version of one environment, archived ones included, oldest first; None
        when the container is gone."""
        try:
            items = self._listing((name, "versions"), f"list {name}")
        except NotFound:
            return None
        versions = [wire.registered_version(i, name) for i in items]
        versions.sort(key=lambda v: v.created_at)  # stable: the service's order breaks ties
        return tuple(versions)

    def _kept(self) -> Observations:
        with self._lock:
            if self._observations is None:
                store = self._store if self._trust_store else None
                self._observations = store.load() if store is not None else Observations()
            return self._observations

    def read_state(self) -> RegistryState:
        from reconciler.core.spec.model import RegisteredContainer, RegistryState

        before = self._requests
        views = {v.name: v for v in self._container_views()}
        kept = self._kept()
        stale = [name for name, view in views.items() if not kept.unchanged(view)]
        fresh: dict[str, tuple[RegisteredVersion, ...] | None] = {}
        if stale:
            with ThreadPoolExecutor(min(self.concurrency, len(stale))) as pool:
                fresh = dict(zip(stale, pool.map(self._versions, stale), strict=True))
        observed: dict[str, Observed] = {}
        containers = {}
        for name in sorted(views):
            versions = fresh[name] if name in fresh else kept.containers[name].versions
            if versions is None:
                continue  # gone between the two listings
            observed[name] = Observed(views[name], versions)
            containers[name] = RegisteredContainer(name, views[name].archived, versions)
        observations = Observations(observed)
        changed = set(observed) != set(kept.containers) or any(
            kept.containers[name].view != entry.view or kept.containers[name].written
            for name, entry in observed.items()
        )
        with self._lock:
            self._observations = observations
            self._dirty = self._dirty or changed
        self._save_observations()  # nothing is written when nothing moved
        incremental = len(stale) < len(views)
        self.last_read = ReadReport(
            "incremental" if incremental else "full",
            len(views),
            len(stale),
            self._requests - before,
            self.throttle.throttled,
            self.throttle.held,
        )
        return RegistryState(containers, None)

    def get_container(self, name: str) -> RegisteredContainer | None:
        from reconciler.core.spec.model import RegisteredContainer

        found = self._optional_json(f"get {name}", name)
        if found is None:
            return None
        versions = self._versions(name)
        if versions is None:
            return None
        return RegisteredContainer(name, wire.container_view(found).archived, versions)

    def get_version(self, name: str, version: str) -> RegisteredVersion | None:
        found = self._optional_json(f"get {name}:{version}", name, "versions", version)
        return None if found is None else wire.registered_version(found, name)

    def history(self, name: str) -> list[dict[str, Any]]:
        """The service keeps no event log: versions (with their stamps) are the history."""
        return []

    def build_records(self) -> dict[tuple[str, str], BuildRecord]:
        out = {}
        kept = self._observations
        if kept is None:  # a build run follows a read: reuse it
            self.read_state()
            kept = self._observations
        assert kept is not None
        for observed in kept.containers.values():
            for version in observed.versions:
                record = content_io.record_from_tags(version.name, version.version, version.tags)
                if record is not None:
                    out[(version.name, version.version)] = record
        return out

    # -- what this process wrote ------------------------------------------------------

    def _remember(self, version: RegisteredVersion) -> None:
        """Keep a written version in the observations (see Observations.unchanged)."""
        with self._lock:
            if self._observations is None:
                return
            kept = self._observations.containers.get(version.name)
            versions = list(kept.versions) if kept is not None else []
            for index, existing in enumerate(versions):
                if existing.version == version.version:
                    created = existing.created_at or version.created_at
                    versions[index] = replace(version, created_at=created)
                    break
            else:
                versions.append(version)
            view = kept.view if kept is not None else None
            self._observations.containers[version.name] = Observed(view, tuple(versions), True)
            self._dirty = True

    def _touched(self, name: str) -> None:
        with self._lock:
            if self._observations is None:
                return
            kept = self._observations.containers.get(name)
            if kept is not None:
                self._observations.containers[name] = Observed(kept.view, kept.versions, True)
                self._dirty = True

    # -- writes -----------------------------------------------------------------------

    def put_version(self, name: str, version: str, write: VersionWrite) -> RegisteredVersion:
        # Read first, whatever a kept view says: a write never trusts the cache.
        existing = self._optional_json(f"get {name}:{version}", name, "versions", version)
        if existing is not None:
            return self._update_metadata(name, existing, write)
        files = content_io.local_context_files(write.content)
        if files is None and self.target.registry is None:
            created = self._create_direct(name, version, write)
        elif files is None:
            created = self._create(content_io.environment_for(name, version, write, None), write)
        else:
            created = self._create_with_context(name, version, write, files)
        self._remember(created)
        return created

    def put_versions(
        self, writes: Sequence[tuple[str, str, VersionWrite]]
    ) -> list[RegisteredVersion]:
        # The service takes one call per version; the engine runs environments in parallel.
        return [self.put_version(name, version, write) for name, version, write in writes]

    def _create_with_context(
        self, name: str, version: str, write: VersionWrite, files: list[tuple[str, str, str]]
    ) -> RegisteredVersion:
        if self._read_blob is None:
            raise RegistryError(
                f"{name}:{version}: a local build context needs the repository to upload from"
            )
        key = hashlib.sha256(json.dumps([sorted(files), write.datastore]).encode()).hexdigest()
        with self._lock:
            context_lock = self._context_locks.setdefault(key, threading.Lock())
        with context_lock:  # one upload per distinct context, even from parallel writes
            uploaded = self._contexts.get(key)
            if uploaded is not None:  # its blob URI: the SDK uploads nothing for a URI
                env = content_io.environment_for(name, version, write, uploaded)
                return self._create(env, write)
            with tempfile.TemporaryDirectory(prefix="reconciler-context-") as temporary:
                context = content_io.write_context(files, self._read_blob, Path(temporary))
                env = content_io.environment_for(name, version, write, context)
                created, path = self._create_entity(env, write)
            if path:
                self._contexts[key] = path
            return created

    def _create_direct(self, name: str, version: str, write: VersionWrite) -> RegisteredVersion:
        """One PUT of the body the SDK's entity serialises to (nothing to upload)."""
        env = content_io.environment_for(name, version, write, None)
        body = env._to_rest_object().as_dict()
        what = f"create {name}:{version}"
        answer = self._json("PUT", what, name, "versions", version, body=body)
        if not answer:
            answer = self._json("GET", f"get {name}:{version}", name, "versions", version)
        created = wire.registered_version(answer, name)
        if created.digest is not None and created.digest != write.digest:
            raise RegistryError(
                f"{what}: the service stored other content than was sent "
                f"({created.digest} != {write.digest})"
            )
        with self._lock:
            self._written[(name, version)] = answer
        return created

    def _create(self, env: Environment, write: VersionWrite) -> RegisteredVersion:
        return self._create_entity(env, write)[0]

    def _create_entity(
        self, env: Environment, write: VersionWrite
    ) -> tuple[RegisteredVersion, str]:
        what = f"create {env.name}:{env.version}"
        client = self.client
        # The SDK prints upload progress to stderr even with show_progress off.
        with contextlib.redirect_stderr(io.StringIO()):
            created = self._call(lambda: client.environments.create_or_update(env), what)
        registered = content_io.registered_version(created, False)
        if registered.digest is not None and registered.digest != write.digest:
            raise RegistryError(
                f"{what}: the service stored other content than was sent "
                f"({registered.digest} != {write.digest})"
            )
        path = str(created.build.path) if created.build is not None else ""
        return registered, path

    def _update_metadata(
        self, name: str, existing: dict[str, Any], write: VersionWrite
    ) -> RegisteredVersion:
        current = wire.registered_version(existing, name)
        version = current.version
        if current.effective_digest != write.digest:
            raise VersionConflict(
                f"{name}:{version} already exists with different content "
                f"({current.effective_digest} != {write.digest})"
            )
        tags = dict(write.tags)
        tags.update(content_io.build_tags(current.tags))  # keep the build record
        if current.description == write.description and dict(current.tags) == tags:
            self._remember(current)
            return current
        updated = self._resend(
            name, existing, f"update {name}:{version}", description=write.description, tags=tags
        )
        return updated

    def _resend(
        self, name: str, existing: dict[str, Any], what: str, **changes: Any
    ) -> RegisteredVersion:
        """PUT a version back as it was read, with only ``changes`` (description, tags,
        isArchived) different: content, build context URI and the rest stay as they are."""
        properties = dict(existing.get("properties") or {})
        properties.update(changes)
        version = str(existing.get("name"))
        body = {"properties": properties}
        answer = self._json("PUT", what, name, "versions", version, body=body)
        answer = answer if answer else {**existing, **body}
        with self._lock:
            self._written[(name, version)] = answer
        updated = wire.registered_version(answer, name)
        self._remember(updated)
        return updated

    def set_build_record(self, record: BuildRecord) -> None:
        name, version = record.name, record.version
        # A version this run has just written under the lock is known as the service
        # answered: re-read only what someone else may have written.
        with self._lock:
            existing = self._written.get((name, version))
        if existing is None:
            existing = self._optional_json(f"get {name}:{version}", name, "versions", version)
        if existing is None:
            raise NotFound(f"no version {name}:{version} in {self.url}")
        old = dict((existing.get("properties") or {}).get("tags") or {})
        tags = dict(old)
        tags[content_io.BUILD_RECORD_TAG] = content_io.record_tag(record)
        if tags != old:
            self._resend(name, existing, f"update {name}:{version}", tags=tags)

    def set_build_records(self, records: Sequence[BuildRecord]) -> None:
        for record in records:  # one request each: the service has no batch
            self.set_build_record(record)

    def set_container_archived(self, name: str, archived: bool) -> None:
        verb = "archive" if archived else "restore"
        found = self._optional_json(f"get {name}", name)
        if found is None:
            raise NotFound(f"no environment {name!r} in {self.url}")
        properties = dict(found.get("properties") or {})
        if bool(properties.get("isArchived")) != archived:
            properties["isArchived"] = archived
            self._json("PUT", f"{verb} {name}", name, body={"properties": properties})
        self._touched(name)

    def set_version_archived(self, name: str, version: str, archived: bool) -> None:
        verb = "archive" if archived else "restore"
        if not archived:
            container = self._optional_json(f"get {name}", name)
            if container is None:
                raise NotFound(f"no environment {name!r} in {self.url}")
            if wire.container_view(container).archived:
                raise RegistryError(
                    f"cannot restore {name}:{version} while {name} is archived; restore the "
                    "environment first"
                )
        existing = self._optional_json(f"get {name}:{version}", name, "versions", version)
        if existing is None:
            raise NotFound(f"no version {name}:{version} in {self.url}")
        if bool((existing.get("properties") or {}).get("isArchived")) != archived:
            self._resend(name, existing, f"{verb} {name}:{version}", isArchived=archived)
