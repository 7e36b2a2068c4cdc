"""What a long-running reconciler keeps in memory between triggers, so that one edit in a
big repository costs one edit's work: the parse memo, resolved environments and their
plans, the working tree's listing (see adapters/worktree_index.py) and the registry's state.

Both are accelerators with the same answers as a fresh read. The registry state is reused
only while the registry's state token is the one this process saw after its own last write
(any other writer changes the token, and the next read is a full one).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from reconciler.adapters.gitsource import GitSource
from reconciler.engine import Engine, MemoStore
from reconciler.ports import Registry

if TYPE_CHECKING:
    from reconciler.core.build import BuildRecord
    from reconciler.core.desired import LoadMemo
    from reconciler.core.desired_memo import ResolveMemo
    from reconciler.core.model import RegisteredContainer, RegisteredVersion, RegistryState
    from reconciler.core.plan import VersionWrite
    from reconciler.core.plan_memo import PlanMemo

MEMO_SAVE_SECONDS = 30.0


class KeptMemo(MemoStore):
    """The parse memo held in memory; written to the disk cache now and then and on close,
    not after every reconcile (rewriting every entry of a big repository costs more than
    the reconcile itself)."""

    def __init__(self, disk: MemoStore) -> None:
        from reconciler.core.desired_memo import ResolveMemo
        from reconciler.core.plan_memo import PlanMemo

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
        if memo.changed and time.monotonic() - self._saved >= MEMO_SAVE_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._memo is not None and self._memo.changed:
            self.disk.save_memo(self._memo)
            self._memo.changed = False
        self._saved = time.monotonic()


class KeptState:
    """A Registry that answers read_state from memory while the state token is unchanged,
    and patches that memory with what its own writes return."""

    def __init__(self, registry: Registry) -> None:
        self.inner = registry
        self.url = registry.url
        self._state: RegistryState | None = None

    def read_state(self) -> RegistryState:
        token = self.inner.state_token()
        if token is not None and self._state is not None and self._state.token == token:
            return self._state
        self._state = self.inner.read_state()
        return self._state

    def _patched(self, state: RegistryState | None, valid: bool) -> None:
        """After a write of ours: keep ``state`` if memory was current before it."""
        self._state = None
        if valid and state is not None:
            self._state = replace(state, token=self.inner.state_token())

    def _current(self) -> RegistryState | None:
        state = self._state
        if state is None or state.token is None or state.token != self.inner.state_token():
            return None
        return state

    def put_version(self, name: str, version: str, write: VersionWrite) -> RegisteredVersion:
        from reconciler.core.model import RegisteredContainer

        state = self._current()
        written = self.inner.put_version(name, version, write)
        if state is None:
            self._state = None
            return written
        containers = dict(state.containers)
        old = containers.get(name)
        if old is None:
            containers[name] = RegisteredContainer(name, False, (written,))
        elif old.get(version) is not None:
            versions = tuple(written if v.version == version else v for v in old.versions)
            containers[name] = replace(old, versions=versions)
        else:
            containers[name] = replace(old, versions=(*old.versions, written))
        self._patched(replace(state, containers=containers), True)
        return written

    def set_container_archived(self, name: str, archived: bool) -> None:
        self._state = None  # rare: the next read is a full one
        self.inner.set_container_archived(name, archived)

    def set_version_archived(self, name: str, version: str, archived: bool) -> None:
        self._state = None
        self.inner.set_version_archived(name, version, archived)

    def set_build_record(self, record: BuildRecord) -> None:
        state = self._current()
        self.inner.set_build_record(record)
        self._patched(state, state is not None)  # records are not part of the state

    # -- everything else as is -------------------------------------------------------

    def state_token(self) -> str | None:
        return self.inner.state_token()

    def get_container(self, name: str) -> RegisteredContainer | None:
        return self.inner.get_container(name)

    def get_version(self, name: str, version: str) -> RegisteredVersion | None:
        return self.inner.get_version(name, version)

    def build_records(self) -> dict[tuple[str, str], BuildRecord]:
        return self.inner.build_records()

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


def keep_in_memory(engine: Engine) -> Engine:
    """The same engine, with its parse memo and registry state kept between triggers."""
    if not isinstance(engine.cache, KeptMemo):
        engine.cache = KeptMemo(engine.cache)
    if not isinstance(engine.registry, KeptState):
        engine.registry = KeptState(engine.registry)
    if isinstance(engine.source, GitSource):
        engine.source.keep_listing()
    return engine


def settle() -> None:
    """After a first reconcile has filled the memories: move everything alive out of the
    cyclic garbage collector's view. Its full collections would otherwise walk every kept
    object now and then (some 100 ms with 10,000 environments, in the middle of a
    reconcile); what is kept is released by reference counting as before."""
    gc.collect()
    gc.freeze()


def flush(engine: Engine) -> None:
    if isinstance(engine.cache, KeptMemo):
        engine.cache.flush()
