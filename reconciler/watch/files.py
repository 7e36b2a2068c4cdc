"""`reconciler watch`: reconcile the working tree whenever its environment files change.

A burst of file events (an editor saving, a checkout) is one trigger: the loop waits until
the files have been quiet for the debounce time. A trigger carries no data; the reconcile
re-reads the whole desired state (the parse cache makes unchanged files cheap).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from watchfiles import Change, DefaultFilter, watch

from reconciler.core.loop.reconcile_pass import CycleResult
from reconciler.engine import Engine
from reconciler.render.cycle import format_cycle
from reconciler.settings import SettingsError
from reconciler.watch.control import Backoff, Stopper
from reconciler.watch.cycle import reconcile
from reconciler.watch.memory import flush, keep_in_memory, settle

DEFAULT_DEBOUNCE_MS = 300
# A stream of events that never goes quiet (a script rewriting files in a loop) still gets
# a reconcile this often.
MAX_WAIT_FACTOR = 10
MIN_MAX_WAIT_MS = 2000


@dataclass
class WatchTarget:
    """What to watch and what to reconcile with; rebuilt when the settings file changes."""

    engine: Engine
    paths: list[Path]  # watched recursively
    ignored: list[Path] = field(default_factory=list)  # never triggers (state, reports)
    settings_files: list[Path] = field(default_factory=list)  # a change rebuilds the target

    def close(self) -> None:
        flush(self.engine)
        self.engine.registry.close()


class _EventFilter:
    """Editor droppings and version-control folders (watchfiles' default filter), plus the
    reconciler's own state and reports, whose writes must not trigger a reconcile."""

    def __init__(self, ignored: Sequence[Path]) -> None:
        self._default = DefaultFilter(ignore_dirs=(*DefaultFilter.ignore_dirs, ".reconciler"))
        self._ignored = tuple(str(p) for p in ignored)
        self._prefixes = tuple(p + os.sep for p in self._ignored)

    def __call__(self, change: Change, path: str) -> bool:
        if path in self._ignored or path.startswith(self._prefixes):
            return False
        return self._default(change, path)


class FileWatch:
    def __init__(
        self,
        setup: Callable[[], WatchTarget],
        stopper: Stopper,
        out: Callable[[str], None],
        debounce_ms: int = DEFAULT_DEBOUNCE_MS,
    ) -> None:
        self.setup = setup
        self.stopper = stopper
        self.out = out
        self.debounce_ms = max(1, debounce_ms)
        self.number = 0
        self.backoff = Backoff(base=1.0, cap=60.0)
        self.retry_at: float | None = None
        self.last: CycleResult | None = None
        self.settled = False  # see memory.settle

    def _setup(self) -> WatchTarget:
        target = self.setup()
        target.engine = keep_in_memory(target.engine)
        self.settled = False
        return target

    def run(self) -> None:
        target = self._setup()
        trigger: str | None = "start"
        try:
            while not self.stopper.stopped:
                if not self._watch(target, trigger) or self.stopper.stopped:
                    continue
                try:
                    fresh = self._setup()
                except SettingsError as exc:
                    self.out(f"settings not reloaded, the previous ones stay in effect: {exc}")
                    trigger = None  # nothing new to apply
                    continue
                target.close()
                target = fresh
                trigger = "settings changed"
        finally:
            target.close()

    def _reconcile(self, target: WatchTarget, trigger: str) -> None:
        self.number += 1
        result = reconcile(target.engine, None, self.number, trigger)
        if result.transient:
            delay = self.backoff.next_delay()
            self.retry_at = time.monotonic() + delay
            result = replace(result, retry_in=delay)
        else:
            self.backoff.reset()
            self.retry_at = None
        self.last = result
        self.out(format_cycle(result))
        if not self.settled:
            settle()
            self.settled = True

    def _watch(self, target: WatchTarget, first_trigger: str | None) -> bool:
        """Reconcile once, then on each quiet burst of events, until a stop (False) or a
        change of the settings file (True). The watcher is running before that first
        reconcile reads anything, so no edit falls between the two."""
        debounce = self.debounce_ms
        max_wait = max(MIN_MAX_WAIT_MS, MAX_WAIT_FACTOR * debounce) / 1000
        settings = {str(p) for p in target.settings_files}
        pending = 0
        first: float | None = None
        reload = False
        initial: str | None = first_trigger
        # rust_timeout = the debounce: a call that sees no event for that long yields an
        # empty set, which ends a burst (and lets a retry after backoff come due).
        for changes in watch(
            *target.paths,
            watch_filter=_EventFilter(target.ignored),
            debounce=int(max_wait * 1000),
            step=max(5, min(50, debounce // 4)),
            stop_event=self.stopper.event,
            rust_timeout=debounce,
            yield_on_timeout=True,
            raise_interrupt=False,
        ):
            if initial is not None:  # the watcher is up: what changes from here is seen
                self._reconcile(target, initial)
                initial = None
                continue
            now = time.monotonic()
            if changes:
                pending += len(changes)
                first = now if first is None else first
                reload = reload or any(path in settings for _, path in changes)
                if now - first < max_wait:
                    continue
            if reload:
                return True
            if pending:
                self._reconcile(target, f"{pending} file event{'s' if pending > 1 else ''}")
                pending, first = 0, None
            elif self.retry_at is not None and now >= self.retry_at:
                self._reconcile(target, "retry")
        return False


def file_events(
    paths: Sequence[Path],
    ignored: Sequence[Path],
    stop_event: threading.Event,
    debounce_ms: int = DEFAULT_DEBOUNCE_MS,
) -> Iterator[int]:
    """How many file events each quiet burst held, until ``stop_event`` is set: the file
    trigger of `serve`, which reconciles from its own loop."""
    for changes in watch(
        *paths,
        watch_filter=_EventFilter(ignored),
        debounce=max(MIN_MAX_WAIT_MS, MAX_WAIT_FACTOR * debounce_ms),
        step=max(5, min(50, debounce_ms // 4)),
        stop_event=stop_event,
        raise_interrupt=False,
    ):
        if changes:
            yield len(changes)
