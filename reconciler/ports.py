"""The only contract between the engine and the world: small Protocols.

Every Protocol an engine verb needs is here (or, for the read-only file view the pure
core loads from, re-exported from it): the source of desired state, the registry with its
history, image builds and lookups, the caches and the applied inventory.

The Registry port is shaped after the Azure ML environment API: per-call reads and
writes of containers and versions, no multi-call transactions, a conflict error when a
version number is reused with different content. Every write is safe to repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

# The pure core reads files through this view, so it is defined beside the loader.
from reconciler.core.desired.snapshot import FileEntry as FileEntry
from reconciler.core.desired.snapshot import Snapshot as Snapshot

if TYPE_CHECKING:  # types only: keeps a cached plan from importing the whole core
    from reconciler.core.build.jobs import BuildJob, BuildRecord
    from reconciler.core.desired.memo import ResolveMemo
    from reconciler.core.desired.types import DesiredState, LoadMemo
    from reconciler.core.plan.memo import PlanMemo
    from reconciler.core.plan.types import Plan
    from reconciler.core.spec.model import (
        RegisteredContainer,
        RegisteredVersion,
        RegistryState,
        VersionWrite,
    )


class RegistryError(Exception):
    """A registry call failed; ``transient`` says whether retrying may help."""

    transient = False


class TransientRegistryError(RegistryError):
    transient = True


class VersionConflict(RegistryError):
    """The version exists with different content (the service's HTTP 409)."""


class NotFound(RegistryError):
    pass


class LockTimeout(RegistryError):
    pass


class SourceError(Exception):
    """The desired state cannot be read (not a repository, unknown ref, ...)."""


class BuildError(Exception):
    """A build, push or image lookup failed; the message says why."""


class BuilderUnavailable(BuildError):
    """No Docker Engine (or no image registry) to build with."""


class ImageRegistry(Protocol):
    """Where built images go (the OCI registry): what drift looks at."""

    def pushed_tags(self) -> set[str]:
        """Tags present in the image repository (the OCI registry) only."""


class BaseImages(Protocol):
    """The registries base images come from."""

    def resolve(self, ref: str) -> str | None:
        """The digest a base image reference points at now (None: unknown there).
        Raises BuildError when its registry cannot be reached."""


class Builder(ImageRegistry, Protocol):
    image_repository: str  # where images go: HOST:PORT/PREFIX/environments

    def unavailable(self) -> str | None:
        """Why builds cannot run now (no engine reachable), or None."""

    def known_tags(self) -> set[str]:
        """Tags present in the image repository or the local engine (one batched lookup)."""

    def pushed_image(self, tag: str) -> str | None:
        """`repo@sha256:...` of a tag in the OCI registry, or None."""

    def pushed_images(self, tags: list[str]) -> dict[str, str | None]:
        """`pushed_image` for many tags at once."""

    def build(
        self, job: BuildJob, read_blob: Callable[[str], bytes], log: Callable[[str], None]
    ) -> str:
        """Build (or re-tag) and push; return `repo@sha256:...`. Raises BuildError."""


class Source(Protocol):
    def snapshot(self, ref: str | None) -> Snapshot:
        """Files at ``ref`` (a commit, branch or tag), or the working tree when None."""

    def fingerprint(self, ref: str | None, watch: list[str] | None = None) -> str | None:
        """A cheap identity of the files at ``ref`` (None if unknown), for plan caching.
        ``watch`` is what ``watch_list`` returned when the cached plan was made."""

    def read_blob(self, blob: str) -> bytes:
        """Any file content of the repository's history, by git blob id."""

    def watch_list(
        self, snapshot: Snapshot, root: str, references: frozenset[str], whole_tree: bool = False
    ) -> list[str] | None:
        """Paths whose stat data ``fingerprint`` needs for this snapshot (None: not needed)."""

    def keep_listing(self) -> None:
        """Keep the working tree's listing between snapshots (a long-running reconciler's;
        the source keeps it equal to a fresh listing)."""

    def hint(self, paths: frozenset[str] | None) -> None:
        """Repository paths that changed since the last working-tree snapshot, as file
        events saw them (the kept listing's next snapshot re-reads only those); None:
        unknown, check everything."""

    def list_files(self, snapshot: Snapshot, match: Callable[[str], bool]) -> list[FileEntry]:
        """The snapshot's files whose repository path ``match`` accepts, with blob ids."""

    def sizes(self, snapshot: Snapshot, entries: list[FileEntry]) -> dict[str, int]:
        """Size in bytes of each file by blob id, without reading the files."""


class ReadReport(Protocol):
    """How a registry's last read_state observed it (Azure ML: the full listing or the
    incremental view), for the plan document to say."""

    def to_dict(self) -> dict[str, Any]: ...


class ThrottleReport(Protocol):
    """How much the service's throttling held a registry's calls so far."""

    @property
    def throttled(self) -> int:
        """Answers that asked to wait."""

    @property
    def held(self) -> float:
        """Seconds during which calls were held (wall clock)."""


class Registry(Protocol):
    url: str

    @property
    def write_concurrency(self) -> int:
        """Environments the engine may write at once (1: one after another)."""

    @property
    def last_read(self) -> ReadReport | None:
        """How the last read_state observed the registry; None: nothing to report."""

    @property
    def throttle(self) -> ThrottleReport | None:
        """The service's throttling of this registry's calls; None: the backend has none."""

    def read_state(self) -> RegistryState:
        """Every container and version, archived ones included."""

    def state_token(self) -> str | None:
        """A value that changes whenever the registry changes; None if unknown (cheap)."""

    def get_container(self, name: str) -> RegisteredContainer | None: ...

    def get_version(self, name: str, version: str) -> RegisteredVersion | None: ...

    def put_version(self, name: str, version: str, write: VersionWrite) -> RegisteredVersion:
        """Create the version (and its container), or, if it exists with identical content,
        set its description and tags. Raises VersionConflict on different content."""

    def put_versions(
        self, writes: Sequence[tuple[str, str, VersionWrite]]
    ) -> list[RegisteredVersion]:
        """put_version of each (name, version, write) in order, at once where the backend
        can; their versions, in order. Raises on the first failure: the SQLite registry
        then has written none of them, a backend that writes one call at a time may have
        written those before it (each is safe to repeat)."""

    def set_container_archived(self, name: str, archived: bool) -> None: ...

    def build_records(self) -> dict[tuple[str, str], BuildRecord]:
        """The build record of every version that has one, by (name, version)."""

    def set_build_record(self, record: BuildRecord) -> None: ...

    def set_build_records(self, records: Sequence[BuildRecord]) -> None:
        """set_build_record of each, in one write where the backend can (the SQLite
        registry: all or none); elsewhere one at a time, each safe to repeat."""

    def set_version_archived(self, name: str, version: str, archived: bool) -> None: ...

    def history(self, name: str) -> list[dict[str, Any]]:
        """What happened to NAME's versions, oldest first (``at``, ``version``, ``action``
        and what the backend knows besides); empty where the backend keeps no log."""

    def lock(self, timeout: float) -> AbstractContextManager[None]:
        """Exclusive use of this registry by one reconciler; LockTimeout after ``timeout``."""

    def batch(self) -> AbstractContextManager[None]:
        """Group writes where the backend can (one SQLite transaction); correctness must
        not depend on it."""

    def close(self) -> None: ...


class Cache(Protocol):
    """Accelerators between runs, keyed by their inputs: deleting any changes nothing but
    speed (see adapters/cache.py)."""

    def load_memo(self) -> LoadMemo:
        """Parse results by file content (git blob id)."""

    def save_memo(self, memo: LoadMemo) -> None: ...

    def load_plan(self, slot: str) -> dict[str, Any] | None:
        """The last plan document of ``slot`` (working tree, or a ref) with its key."""

    def save_plan(self, slot: str, entry: dict[str, Any]) -> None: ...

    def kept_memos(self) -> tuple[ResolveMemo, PlanMemo] | None:
        """Resolved environments and per-environment plans held in memory between
        reconciles (a long-running reconciler's); None: every reconcile starts afresh."""


class NoCache:
    """The Cache that keeps nothing (``--no-cache``)."""

    def load_memo(self) -> LoadMemo:
        from reconciler.core.desired.types import LoadMemo

        return LoadMemo()

    def save_memo(self, memo: LoadMemo) -> None:
        return None

    def load_plan(self, slot: str) -> dict[str, Any] | None:
        return None

    def save_plan(self, slot: str, entry: dict[str, Any]) -> None:
        return None

    def kept_memos(self) -> tuple[ResolveMemo, PlanMemo] | None:
        return None


class AppliedStore(Protocol):
    """Where apply records what it applied, for `missing` drift (adapters/inventory.py)."""

    def load(self) -> dict[str, str]: ...

    def save(self, applied: Mapping[str, str]) -> None: ...


def iter_versions(state: RegistryState) -> Iterator[RegisteredVersion]:
    for container in state.containers.values():
        yield from container.versions


class Progress(Protocol):
    """Whoever watches long steps (a terminal's progress display): told, never asked.
    Tasks are named by a key; ``total`` None is a step without a count."""

    def start(self, task: str, description: str, total: int | None = None) -> None: ...

    def advance(self, task: str, detail: str | None = None) -> None: ...

    def finish(self, task: str, description: str | None = None) -> None: ...

    def note(self, line: str) -> None: ...


class QuietProgress:
    """Nobody watching: plain output, pipes, CI, --json."""

    def start(self, task: str, description: str, total: int | None = None) -> None:
        return None

    def advance(self, task: str, detail: str | None = None) -> None:
        return None

    def finish(self, task: str, description: str | None = None) -> None:
        return None

    def note(self, line: str) -> None:
        return None


class Stage(Protocol):
    """One target among several (see engine/promote.py): how it shares the desired state read for
    the other targets, which environments it holds, and the promotion gate on its plan."""

    def load(self, key: tuple[Any, ...], read: Callable[[], DesiredState]) -> DesiredState: ...

    def select(self, desired: DesiredState) -> DesiredState: ...

    def gate(self, plan: Plan, state: RegistryState) -> Plan: ...

    def cache_key(self) -> str | None:
        """What else a cached plan of this target depends on; None: never cache it."""
