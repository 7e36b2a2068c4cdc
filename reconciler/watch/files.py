"""`reconciler watch`: reconcile the working tree whenever its environment files change.

A burst of file events (an editor saving, a checkout) is one trigger: the loop waits until
the files have been quiet for the debounce time. The paths the events name are hints, as
git's fsmonitor takes them: the reconcile reads only those files again and keeps its view
of everything else. A full check (every file of the working tree checked again) runs at
start, whenever the watcher restarts, when a burst is too large to trust or names a path
outside the repository, and periodically, so a change the events missed (a kernel queue
that overflowed: watchfiles does not report it) is found within that period.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from watchfiles import Change, DefaultFilter, watch

from reconciler.core.loop.reconcile_pass import CycleResult, Outcome
from reconciler.engine import Engine
from reconciler.render.cycle import format_cycle
from reconciler.settings import SettingsError
from reconciler.watch.control import Backoff, Stopper
from reconciler.watch.cycle import reconcile
from reconciler.watch.memory import flush, flush_when_due, keep_in_memory, settle

DEFAULT_DEBOUNCE_MS = 300
# A stream of events that never goes quiet (a script rewriting files in a loop) still gets
# a reconcile this often.
MAX_WAIT_FACTOR = 10
MIN_MAX_WAIT_MS = 2000
DEFAULT_FULL_CHECK_SECONDS = 60.0
# A burst naming more paths than this (a checkout, a generator) is checked in full: one pass
# over the tree costs less than that many hints, and the kernel's queue may have overflowed.
MAX_HINTED_PATHS = 1000


@dataclass
class WatchTarget:
    """What to watch and what to reconcile with; rebuilt when the settings file changes."""

    engine: Engine
    paths: list[Path]  # watched recursively
    ignored: list[Path] = field(default_factory=list)  # never triggers (state, reports)
    settings_files: list[Path] = field(default_factory=list)  # a change rebuilds the target
    # The repository the engine reads: event paths become hints relative to it (None: no
    # hints, every reconcile is a full check).
    repo: Path | None = None
    full_check_seconds: float = DEFAULT_FULL_CHECK_SECONDS  # <= 0: always a full check

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


class Burst:
    """The file events of one burst: how many, and the repository paths they name (None
    once they cannot stand for the change: too many, or outside the repository)."""

    def __init__(self, repo: Path | None) -> None:
        self.root = os.path.abspath(repo) + os.sep if repo is not None else None
        self.events = 0
        self.paths: set[str] | None = set() if repo is not None else None

    def add(self, path: str) -> None:
        self.events += 1
        if self.paths is None or self.root is None:
            return
        full = os.path.abspath(path)
        if not full.startswith(self.root) or len(self.paths) >= MAX_HINTED_PATHS:
            self.paths = None
            return
        self.paths.add(full[len(self.root) :].replace(os.sep, "/"))

    def hints(self) -> frozenset[str] | None:
        return None if self.paths is None else frozenset(self.paths)


def _same_news(result: CycleResult, last: CycleResult | None) -> bool:
    """Nothing to tell after a periodic full check: nothing applied, and the state is the
    one last printed (in sync after a success, or the same errors)."""
    if last is None or result.applied or result.failed:
        return False
    if result.outcome is Outcome.IN_SYNC and last.ok:
        return True
    return (result.outcome, result.errors, result.message) == (
        last.outcome,
        last.errors,
        last.message,
    )


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
        # The settings files as they were when last read (None: absent). A watcher is not
        # running while the settings are read again, so an edit made then has no event:
        # the next watcher compares the files with this once it is up.
        self.settings_read: dict[Path, bytes | None] = {}

    def _setup(self, settings_files: Sequence[Path] = ()) -> WatchTarget:
        before = _contents(settings_files)  # taken before setup reads them
        try:
            target = self.setup()
        finally:
            # A failed reload counts as read too: only a later edit is news.
            self.settings_read = before
        if not settings_files:  # the first setup: the files are known from here on
            self.settings_read = _contents(target.settings_files)
        target.engine = keep_in_memory(target.engine)
        self.settled = False
        return target

    def _settings_edited(self, target: WatchTarget) -> bool:
        return _contents(target.settings_files) != self.settings_read

    def run(self) -> None:
        target = self._setup()
        trigger: str | None = "start"
        try:
            while not self.stopper.stopped:
                reconciled = self.number
                if not self._watch(target, trigger) or self.stopper.stopped:
                    continue
                try:
                    fresh = self._setup(target.settings_files)
                except SettingsError as exc:
                    self.out(f"settings not reloaded, the previous ones stay in effect: {exc}")
                    if self.number != reconciled:  # else the trigger is still to be run
                        trigger = None  # nothing new to apply
                    continue
                target.close()
                target = fresh
                trigger = "settings changed"
        finally:
            target.close()

    def _reconcile(
        self,
        target: WatchTarget,
        trigger: str,
        hints: frozenset[str] | None = None,
        quiet: bool = False,
    ) -> None:
        """One reconcile; ``hints``: the only paths that changed (None: a full check).
        ``quiet``: not printed when it has nothing new to tell (a periodic full check)."""
        target.engine.source.hint(hints)
        result = reconcile(target.engine, None, self.number + 1, trigger)
        if result.transient:
            delay = self.backoff.next_delay()
            self.retry_at = time.monotonic() + delay
            result = replace(result, retry_in=delay)
        else:
            self.backoff.reset()
            self.retry_at = None
        if not (quiet and _same_news(result, self.last)):
            self.number += 1
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
        hinting = target.repo is not None and target.full_check_seconds > 0
        every = target.full_check_seconds if hinting else float("inf")
        repo = target.repo if hinting else None  # hints name paths in this repository
        burst = Burst(repo)
        first: float | None = None
        reload = False
        initial: str | None = first_trigger
        up = False
        # The first reconcile of every watcher is a full check: events from before it are
        # not known, so nothing kept may be trusted until then.
        full_at = float("inf")
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
            if not up:  # the watcher is up: what changes from here is seen
                up = True
                if self._settings_edited(target):  # while no watcher was running
                    return True
                if initial is not None:
                    self._reconcile(target, initial)
                    full_at = time.monotonic() + every
                    initial = None
                    continue
            now = time.monotonic()
            if changes:
                for _, path in changes:
                    burst.add(path)
                first = now if first is None else first
                reload = reload or any(path in settings for _, path in changes)
                if now - first < max_wait:
                    continue
            if reload:
                return True
            if burst.events:
                pending = burst.events
                hints = burst.hints() if now < full_at else None
                self._reconcile(target, f"{pending} file event{'s' if pending > 1 else ''}", hints)
                if hints is None:
                    full_at = time.monotonic() + every
                burst, first = Burst(repo), None
            elif self.retry_at is not None and now >= self.retry_at:
                self._reconcile(target, "retry")
                full_at = time.monotonic() + every
            elif now >= full_at:
                self._reconcile(target, "full check", quiet=True)
                full_at = time.monotonic() + every
            elif not changes and first is None:  # quiet: nothing pending
                flush_when_due(target.engine)
        return False


def _contents(paths: Sequence[Path]) -> dict[Path, bytes | None]:
    found: dict[Path, bytes | None] = {}
    for path in paths:
        try:
            found[path] = path.read_bytes()
        except OSError:
            found[path] = None
    return found


def file_events(
    paths: Sequence[Path],
    ignored: Sequence[Path],
    stop_event: threading.Event,
    debounce_ms: int = DEFAULT_DEBOUNCE_MS,
    ready: threading.Event | None = None,
) -> Iterator[int]:
    """How many file events each quiet burst held, until ``stop_event`` is set: the file
    trigger of `serve`, which reconciles from its own loop. ``ready`` is set once the
    watcher is up: a change made after that is seen."""
    # rust_timeout: the first yield (events or a quiet timeout) comes from a running watcher.
    for changes in watch(
        *paths,
        watch_filter=_EventFilter(ignored),
        debounce=max(MIN_MAX_WAIT_MS, MAX_WAIT_FACTOR * debounce_ms),
        step=max(5, min(50, debounce_ms // 4)),
        stop_event=stop_event,
        rust_timeout=debounce_ms,
        yield_on_timeout=True,
        raise_interrupt=False,
    ):
        if ready is not None:
            ready.set()
        if changes:
            yield len(changes)
