"""The Azure ML registry: environments of a workspace or an Azure ML registry, through
``azure-ai-ml``'s ``MLClient.environments``.

Behaves as the SQLite registry does from the planner's view: ownership stamps are tags,
archive and restore work on containers and versions, and a version re-sent with other
content is a VersionConflict. Where the service differs:

- archive state is not on the SDK's entities, so it is read from listings
  (``ArchivedOnly``); versions of an archived container read as not archived themselves
  (their own flag is seen once the container is restored, by the next plan);
- the SDK sends ``isArchived: false`` whenever it writes a version, so a write restores
  an archived version; the planner restores before it updates metadata, never after;
- there is no cheap change token (``state_token`` is None: no plan cache) and no
  server-side lock: ``lock`` is a file lock on this machine only, so run one applier per
  registry (one CI job, one controller);
- build records are a version tag (see azureml_content);
- for an Azure ML registry (``azureml://registries/<name>``) the SDK lists assets without
  a view type, so archived containers and versions are not seen at all: a removed
  environment is archived once, but re-adding it then fails to restore it (documented).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.adapters import azureml_content as content_io
from reconciler.adapters.azureml_client import AzureTarget, make_client, parse_registry_url
from reconciler.adapters.azureml_errors import RetryPolicy, call
from reconciler.adapters.locking import file_lock
from reconciler.ports import NotFound, RegistryError, VersionConflict

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import Environment

    from reconciler.core.build import BuildRecord
    from reconciler.core.model import RegisteredContainer, RegisteredVersion, RegistryState
    from reconciler.core.plan import VersionWrite

T = TypeVar("T")
BlobReader = Callable[[str], bytes]


class AzureMLRegistry:
    def __init__(
        self,
        url: str,
        lock_dir: Path,
        read_blob: BlobReader | None = None,
        retry: RetryPolicy | None = None,
        client: MLClient | None = None,
    ) -> None:
        if importlib.util.find_spec("azure.ai.ml") is None:
            raise RegistryError(
                f"{url}: the Azure ML backend needs azure-ai-ml: pip install 'reconciler[azure]'"
            )
        self.url = url
        self.target: AzureTarget = parse_registry_url(url)
        self._lock_dir = lock_dir
        self._read_blob = read_blob
        self._retry = retry or RetryPolicy()
        self._client = client
        self._state: RegistryState | None = None  # the last full read, until the next write

    # -- plumbing ---------------------------------------------------------------------

    @property
    def client(self) -> MLClient:
        if self._client is None:
            self._client = self._call(lambda: make_client(self.target), "connect")
        return self._client

    def _call(self, function: Callable[[], T], what: str) -> T:
        return call(function, self.url, what, self._retry)

    def _write(self, function: Callable[[], T], what: str) -> T:
        self._state = None
        return self._call(function, what)

    def close(self) -> None:
        self._client = None

    def lock(self, timeout: float) -> contextlib.AbstractContextManager[None]:
        path = self._lock_dir / f"azureml-{self.target.key}.lock"
        return file_lock(path, timeout, f"registry {self.url} (lock on this machine)")

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        yield  # every call is its own transaction at the service

    def state_token(self) -> str | None:
        return None

    # -- reads ------------------------------------------------------------------------

    def _list(self, name: str | None, view: str) -> list[Environment]:
        from azure.ai.ml.constants import ListViewType

        if view == "archived" and self.target.registry is not None:
            return []  # the SDK lists registry assets without a view type: active ones only
        kind = {"all": ListViewType.ALL, "archived": ListViewType.ARCHIVED_ONLY}[view]
        what = f"list {name or 'environments'} ({view})"
        return self._call(
            lambda: list(self.client.environments.list(name, list_view_type=kind)), what
        )

    def _container(self, name: str, archived: bool) -> RegisteredContainer:
        from reconciler.core.model import RegisteredContainer

        envs = self._list(name, "all")
        archived_versions = set() if archived else {e.version for e in self._list(name, "archived")}
        versions = [content_io.registered_version(e, e.version in archived_versions) for e in envs]
        versions.sort(key=lambda v: v.created_at)  # stable: the service's order breaks ties
        return RegisteredContainer(name, archived, tuple(versions))

    def read_state(self) -> RegistryState:
        from reconciler.core.model import RegistryState

        names = sorted(str(e.name) for e in self._list(None, "all"))
        archived = {str(e.name) for e in self._list(None, "archived")}
        state = RegistryState({n: self._container(n, n in archived) for n in names}, None)
        self._state = state
        return state

    def get_container(self, name: str) -> RegisteredContainer | None:
        names = {str(e.name) for e in self._list(None, "all")}
        if name not in names:
            return None
        archived = name in {str(e.name) for e in self._list(None, "archived")}
        return self._container(name, archived)

    def _get(self, name: str, version: str) -> Environment | None:
        try:
            found: Environment = self._call(
                lambda: self.client.environments.get(name, version), f"get {name}:{version}"
            )
        except NotFound:
            return None
        return found

    def history(self, name: str) -> list[dict[str, Any]]:
        """The service keeps no event log: versions (with their stamps) are the history."""
        return []

    def get_version(self, name: str, version: str) -> RegisteredVersion | None:
        container = self.get_container(name)
        return container.get(version) if container is not None else None

    def build_records(self) -> dict[tuple[str, str], BuildRecord]:
        out = {}
        state = self._state or self.read_state()  # a build run follows a read: reuse it
        for container in state.containers.values():
            for version in container.versions:
                record = content_io.record_from_tags(version.name, version.version, version.tags)
                if record is not None:
                    out[(version.name, version.version)] = record
        return out

    # -- writes -----------------------------------------------------------------------

    def put_version(self, name: str, version: str, write: VersionWrite) -> RegisteredVersion:
        existing = self._get(name, version)
        if existing is not None:
            return self._update_metadata(existing, write)
        files = content_io.local_context_files(write.content)
        if files is None:
            env = content_io.environment_for(name, version, write, None)
            return self._create(env, write)
        if self._read_blob is None:
            raise RegistryError(
                f"{name}:{version}: a local build context needs the repository to upload from"
            )
        with tempfile.TemporaryDirectory(prefix="reconciler-context-") as temporary:
            context = content_io.write_context(files, self._read_blob, Path(temporary))
            env = content_io.environment_for(name, version, write, context)
            return self._create(env, write)

    def _create(self, env: Environment, write: VersionWrite) -> RegisteredVersion:
        what = f"create {env.name}:{env.version}"
        # The SDK prints upload progress to stderr even with show_progress off.
        with contextlib.redirect_stderr(io.StringIO()):
            created = self._write(lambda: self.client.environments.create_or_update(env), what)
        registered = content_io.registered_version(created, False)
        if registered.digest is not None and registered.digest != write.digest:
            raise RegistryError(
                f"{what}: the service stored other content than was sent "
                f"({registered.digest} != {write.digest})"
            )
        return registered

    def _update_metadata(self, existing: Environment, write: VersionWrite) -> RegisteredVersion:
        current = content_io.registered_version(existing, False)
        name, version = current.name, current.version
        if current.effective_digest != write.digest:
            raise VersionConflict(
                f"{name}:{version} already exists with different content "
                f"({current.effective_digest} != {write.digest})"
            )
        tags = dict(write.tags)
        tags.update(content_io.build_tags(current.tags))  # keep the build record
        if current.description == write.description and dict(current.tags) == tags:
            return current
        return self._write_metadata(existing, write.description, tags)

    def _write_metadata(
        self, existing: Environment, description: str | None, tags: dict[str, str]
    ) -> RegisteredVersion:
        # Re-sending what the service returned (the build context as its blob URL) changes
        # only description and tags, and uploads nothing.
        existing.description = description
        existing.tags = tags
        what = f"update {existing.name}:{existing.version}"
        updated = self._write(lambda: self.client.environments.create_or_update(existing), what)
        return content_io.registered_version(updated, False)

    def set_build_record(self, record: BuildRecord) -> None:
        existing = self._get(record.name, record.version)
        if existing is None:
            raise NotFound(f"no version {record.name}:{record.version} in {self.url}")
        tags = dict(existing.tags or {})
        tags[content_io.BUILD_RECORD_TAG] = content_io.record_tag(record)
        if tags != dict(existing.tags or {}):
            self._write_metadata(existing, existing.description, tags)

    def set_container_archived(self, name: str, archived: bool) -> None:
        operation = (
            self.client.environments.archive if archived else self.client.environments.restore
        )
        verb = "archive" if archived else "restore"
        self._write(lambda: operation(name), f"{verb} {name}")

    def set_version_archived(self, name: str, version: str, archived: bool) -> None:
        if not archived:
            container = self.get_container(name)
            if container is None:
                raise NotFound(f"no environment {name!r} in {self.url}")
            if container.archived:
                raise RegistryError(
                    f"cannot restore {name}:{version} while {name} is archived; restore the "
                    "environment first"
                )
        operation = (
            self.client.environments.archive if archived else self.client.environments.restore
        )
        verb = "archive" if archived else "restore"
        self._write(lambda: operation(name, version), f"{verb} {name}:{version}")
