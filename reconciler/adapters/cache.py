"""The caches, all behind the Cache port: pure accelerators, deleting any changes nothing
but speed.

- ``DiskCache``: under ``.reconciler/cache``, parse results by blob id and the last plan
  of each slot. Writes are atomic (temporary file + rename) so a killed process never
  leaves a torn cache.
- ``KeptCache``: a long-running reconciler's, in memory: the parse memo, resolved
  environments and per-environment plans (each a lookup keyed by its inputs).
- ``KeptState``: a Registry that answers reads from memory while the registry's state
  token says nothing changed, patched by its own writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import marshal
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import reconciler.core
from reconciler import __version__

if TYPE_CHECKING:
    from reconciler.core.build.jobs import BuildRecord
    from reconciler.core.desired.memo import ResolveMemo
    from reconciler.core.desired.types import LoadMemo
    from reconciler.core.plan.memo import PlanMemo
    from reconciler.core.spec.model import (
        RegisteredContainer,
        RegisteredVersion,
        RegistryState,
        VersionWrite,
    )
    from reconciler.ports import Cache, ReadReport, Registry, ThrottleReport

MEMO_SAVE_SECONDS = 30.0

_MEMO_FILE = "parsed.marshal"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _core_revision() -> str:
    """Parse results depend on the core's code, not only on the package version: hash the
    core's sources so that any change to parsing or validation invalidates the cache."""
    digest = hashlib.sha256(__version__.encode())
    core = Path(reconciler.core.__file__).parent
    for source in sorted(core.rglob("*.py")):
        digest.update(source.relative_to(core).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


class DiskCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._revision: str | None = None

    @property
    def revision(self) -> str:
        if self._revision is None:
            self._revision = _core_revision()
        return self._revision

    def load_memo(self) -> LoadMemo:
        from reconciler.core.desired.types import LoadMemo

        try:
            raw = (self.directory / _MEMO_FILE).read_bytes()
            data = marshal.loads(raw)
        except (OSError, ValueError, EOFError, TypeError):
            return LoadMemo()
        if not isinstance(data, dict) or data.get("version") != self.revision:
            return LoadMemo()  # written by another reconciler version: parse again
        return LoadMemo(
            parsed=data["parsed"],
            conda=data["conda"],
            sizes=data["sizes"],
            consumers=data.get("consumers", {}),
        )

    def save_memo(self, memo: LoadMemo) -> None:
        if not memo.changed:
            return
        payload = {
            "version": self.revision,
            "parsed": memo.parsed,
            "conda": memo.conda,
            "sizes": memo.sizes,
            "consumers": memo.consumers,
        }
        with contextlib.suppress(OSError):  # a cache that cannot be written is no error
            _atomic_write(self.directory / _MEMO_FILE, marshal.dumps(payload))

    def _plan_path(self, slot: str) -> Path:
        name = hashlib.sha256(slot.encode()).hexdigest()[:16]
        return self.directory / f"plan-{name}.json"

    def load_plan(self, slot: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._plan_path(slot).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("revision") != self.revision:
            return None
        return data

    def kept_memos(self) -> tuple[ResolveMemo, PlanMemo] | None:
        return None  # nothing is held between processes but what is on disk

    def save_plan(self, slot: str, entry: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            payload = dict(entry, revision=self.revision)
            _atomic_write(self._plan_path(slot), json.dumps(payload).encode())


# -- kept in memory between the reconciles of one process -----------------------------


class KeptCache:
    """A long-running reconciler's Cache: the parse memo held in memory, written to the
    disk cache now and then and on close, not after every reconcile (rewriting every
    entry of a big repository costs more than the reconcile itself), and only when its
    loop is idle (``flush_due``), never inside a reconcile someone is waiting for."""

    def __init__(self, disk: Cache) -> None:
        from reconciler.core.desired.memo import ResolveMemo
        from reconciler.core.plan.memo import PlanMemo

        self.disk = disk
        self._memo: LoadMemo | None = None
        self._saved = time.monotonic()
        self._kept = (ResolveMemo(), PlanMemo())

    def kept_memos(self) -> tuple[ResolveMemo, PlanMemo]:
        return self._kept

    def load_memo(self) -> LoadMemo:
        if self._memo is None:
            self._memo = self.disk.load_memo()
        return self._memo

    def save_memo(self, memo: LoadMemo) -> None:
        pass  # kept in memory; written by flush_due or flush

    def flush_due(self) -> None:
        """Write the parse memo when it changed and was last written a while ago."""
        if time.monotonic() - self._saved >= MEMO_SAVE_SECONDS:
            self.flush()

    def load_plan(self, slot: str) -> dict[str, Any] | None:
        return self.disk.load_plan(slot)

    def save_plan(self, slot: str, entry: dict[str, Any]) -> None:
        self.disk.save_plan(slot, entry)

    def flush(self) -> None:
        if self._memo is not None and self._memo.changed:
            self.disk.save_memo(self._memo)
            self._memo.changed = False
        self._saved = time.monotonic()


class KeptState:
    """A Registry that answers read_state from memory while the state token is unchanged,
    and patches that memory with what its own writes return."""

    # Its memory is patched by each write in turn: writes through it go one at a time.
    write_concurrency = 1

    def __init__(self, registry: Registry) -> None:
        self.inner = registry
        self.url = registry.url
        self._state: RegistryState | None = None

    @property
    def last_read(self) -> ReadReport | None:
        return self.inner.last_read

    @property
    def throttle(self) -> ThrottleReport | None:
        return self.inner.throttle

    def read_state(self) -> RegistryState:
        token = self.inner.state_token()
        if token is not None and self._state is not None and self._state.token == token:
            return self._state
        self._state = self.inner.read_state()
        return self._state

    def _patched(self, state: RegistryState | None) -> None:
        """After a write of ours: keep ``state`` (None: memory was not current before it)."""
        self._state = None
        if state is not None:
            self._state = replace(state, token=self.inner.state_token())

    def _current(self) -> RegistryState | None:
        state = self._state
        if state is None or state.token is None or state.token != self.inner.state_token():
            return None
        return state

    def put_version(self, name: str, version: str, write: VersionWrite) -> RegisteredVersion:
        return self._patched_by(lambda: [self.inner.put_version(name, version, write)])[0]

    def put_versions(
        self, writes: Sequence[tuple[str, str, VersionWrite]]
    ) -> list[RegisteredVersion]:
        return self._patched_by(lambda: self.inner.put_versions(writes))

    def _patched_by(self, write: Callable[[], list[RegisteredVersion]]) -> list[RegisteredVersion]:
        """Run a write of the registry's and patch memory with what it returned, if memory
        was current before it."""
        from reconciler.core.spec.model import with_written

        state = self._current()
        written = write()
        self._patched(None if state is None else with_written(state, written))
        return written

    def set_container_archived(self, name: str, archived: bool) -> None:
        self._state = None  # rare: the next read is a full one
        self.inner.set_container_archived(name, archived)

    def set_version_archived(self, name: str, version: str, archived: bool) -> None:
        self._state = None
        self.inner.set_version_archived(name, version, archived)

    def set_build_record(self, record: BuildRecord) -> None:
        self._kept_over(lambda: self.inner.set_build_record(record))

    def set_build_records(self, records: Sequence[BuildRecord]) -> None:
        self._kept_over(lambda: self.inner.set_build_records(records))

    def _kept_over(self, write: Callable[[], None]) -> None:
        """Run a write that changes nothing of the state (build records are not part of
        it), keeping memory if it was current before."""
        state = self._current()
        write()
        self._patched(state)

    # -- everything else as is -------------------------------------------------------

    def state_token(self) -> str | None:
        return self.inner.state_token()

    def get_container(self, name: str) -> RegisteredContainer | None:
        return self.inner.get_container(name)

    def get_version(self, name: str, version: str) -> RegisteredVersion | None:
        return self.inner.get_version(name, version)

    def build_records(self) -> dict[tuple[str, str], BuildRecord]:
        return self.inner.build_records()

    def history(self, name: str) -> list[dict[str, Any]]:
        return self.inner.history(name)

    def lock(self, timeout: float) -> contextlib.AbstractContextManager[None]:
        return self.inner.lock(timeout)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        try:
            with self.inner.batch():
                yield
        except BaseException:
            self._state = None  # rolled back: what memory was patched with never happened
            raise

    def close(self) -> None:
        self.inner.close()
