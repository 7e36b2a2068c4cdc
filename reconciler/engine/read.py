"""Read: the desired state of git at a ref (or the working tree), with policy findings.

1. Take a snapshot of the source.
2. Load the environments through the parse memo (and the kept resolutions, if any).
3. Evaluate the policy on every valid environment, with the file and line.
4. Note which paths keep a cached plan of this read honest.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.ports import FileEntry, QuietProgress, Snapshot, SourceError

if TYPE_CHECKING:
    from reconciler.core.build.jobs import BuildTarget
    from reconciler.core.desired.types import DesiredEnvironment, DesiredState
    from reconciler.core.governance.policy import Policy
    from reconciler.core.spec.diagnostics import Diagnostic
    from reconciler.core.spec.model import RegistryState
    from reconciler.engine.context import Context

A = TypeVar("A")
B = TypeVar("B")

PARALLEL_PARSE_MIN = 2000  # below this, starting worker processes costs more than it saves


def close(snapshot: object) -> None:
    closing = getattr(snapshot, "close", None)
    if closing is not None:
        closing()


def read(
    engine: Context, ref: str | None, only: Iterable[str] | None = None, watch_list: bool = True
) -> tuple[DesiredState, list[str] | None]:
    """Desired state, and the watch list that keeps a cached plan of it honest."""
    snapshot = engine.source.snapshot(ref)
    try:
        return load(engine, snapshot, only, watch_list)
    finally:
        close(snapshot)


def load(
    engine: Context,
    snapshot: Snapshot,
    only: Iterable[str] | None = None,
    watch_list: bool = True,
) -> tuple[DesiredState, list[str] | None]:
    from reconciler.core.desired.load import load_desired

    memo = engine.cache.load_memo()
    kept = engine.cache.kept_memos()
    resolved = kept[0] if kept is not None else None
    # Nothing parsed before (a cold run): the parser is imported while git lists the
    # files, once, here, and not by every worker process.
    warming = _import_parser() if not memo.parsed else None
    parse = _counting_map(engine, warming)

    def read_all() -> DesiredState:
        return load_desired(snapshot, engine.selection, memo, only, parse, resolved)

    try:
        if engine.stage is None:
            state = read_all()
        else:  # targets share one read of git; each then takes the environments it holds
            key = (snapshot.commit, snapshot.label, tuple(only) if only is not None else None)
            state = engine.stage.select(engine.stage.load(key, read_all))
    finally:
        if warming is not None:
            warming.join()  # no process is forked while a thread imports
    if engine.policy is not None:
        state.diagnostics.extend(policy_diagnostics(engine, state, snapshot, engine.policy))
    scanning = engine.consumers is not None and engine.consumers.enabled and only is None
    if scanning:
        from reconciler.engine.consumers import scan_consumers

        state.consumers = scan_consumers(engine, snapshot, state, memo, parallel_map)
    watch = None
    if watch_list:  # only a cached plan needs it; walking every directory is not free
        watch = engine.source.watch_list(
            snapshot, engine.selection.root, state.references, whole_tree=scanning
        )
    engine.cache.save_memo(memo)
    return state, watch


def parallel_map(
    function: Callable[[bytes], dict[str, Any]],
    items: list[bytes],
    done: Callable[[], None] | None = None,
) -> Iterable[dict[str, Any]]:
    """Parse on every core when there is a lot to parse (a cold plan of a big repository);
    ``done`` is told after each item."""
    workers = _workers()
    if workers < 2 or len(items) < PARALLEL_PARSE_MIN:
        if done is None:
            return map(function, items)
        return [_counted(function(item), done) for item in items]
    with _pool(workers) as pool:
        results = pool.map(function, items, chunksize=64)
        return [_counted(result, done) for result in results] if done else list(results)


def parse_files(
    function: Callable[[bytes], dict[str, Any]],
    snapshot: Snapshot,
    entries: list[FileEntry],
    done: Callable[[], None] | None = None,
) -> Iterable[dict[str, Any]]:
    """Read and parse files of a snapshot, results in order; on every core when there are
    many. Files on disk are read by the workers themselves (paths in, records out): the
    main process neither reads them one by one nor ships their content."""
    workers = _workers()
    if workers < 2 or len(entries) < PARALLEL_PARSE_MIN:
        results = (function(snapshot.read(entry)) for entry in entries)
        return results if done is None else (_counted(r, done) for r in results)
    if not getattr(snapshot, "reads_from_disk", False):
        return _read_here(function, snapshot, entries, done)
    return _parse_in_workers(function, snapshot, entries, workers, done)


def _parse_in_workers(
    function: Callable[[bytes], dict[str, Any]],
    snapshot: Snapshot,
    entries: list[FileEntry],
    workers: int,
    done: Callable[[], None] | None,
) -> Iterator[dict[str, Any]]:
    """The workers are forked with the snapshot and the list of files (nothing of them is
    pickled), take ranges of that list and read each file through the snapshot, so a file
    that cannot be read fails as it would here. Records are handed on as they arrive."""
    ranges = [(i, min(i + PARSE_CHUNK, len(entries))) for i in range(0, len(entries), PARSE_CHUNK)]
    pool = _pool(workers, initializer=_adopt, initargs=(function, snapshot, entries))
    try:
        for records in pool.map(_read_and_parse, ranges):
            for record in records:
                if done is not None:
                    done()
                yield record
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # stopped early: the rest is dropped


PARSE_CHUNK = 128  # files per task: few round trips, yet both workers busy to the end


def _workers() -> int:
    return min(os.cpu_count() or 1, 8)


def _pool(workers: int, **options: Any) -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers inherit the imported parser instead of importing it again
    context = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(workers, mp_context=context, **options)


def _read_here(
    function: Callable[[bytes], dict[str, Any]],
    snapshot: Snapshot,
    entries: list[FileEntry],
    done: Callable[[], None] | None,
) -> list[dict[str, Any]]:
    """Read every file here (a ref's blobs come from git in one batch), parse in workers."""
    from reconciler.core.spec.yamldoc import MAX_FILE_BYTES

    refused: dict[int, dict[str, Any]] = {}
    contents = []
    for index, entry in enumerate(entries):
        content = snapshot.read(entry)
        if len(content) > MAX_FILE_BYTES:
            # refused at once, so that many oversized files are never held together
            refused[index] = function(content)
            if done is not None:
                done()
            continue
        contents.append(content)
    parsed = iter(parallel_map(function, contents, done))
    return [refused[i] if i in refused else next(parsed) for i in range(len(entries))]


_adopted: tuple[Callable[[bytes], dict[str, Any]], Snapshot, list[FileEntry]] | None = None


def _adopt(
    function: Callable[[bytes], dict[str, Any]], snapshot: Snapshot, entries: list[FileEntry]
) -> None:
    """In a worker: the parser, the snapshot and the files to parse (ranges of them)."""
    import gc

    # What the worker inherited stays as it is: no collection walks (and so copies) it.
    gc.freeze()
    global _adopted
    _adopted = (function, snapshot, entries)


def _read_and_parse(span: tuple[int, int]) -> list[dict[str, Any]]:
    assert _adopted is not None, "a parse worker runs only in a pool made by parse_files"
    function, snapshot, entries = _adopted
    return [function(snapshot.read(entry)) for entry in entries[span[0] : span[1]]]


def _counted(result: dict[str, Any], done: Callable[[], None]) -> dict[str, Any]:
    done()
    return result


def _import_parser() -> threading.Thread:
    def run() -> None:
        import reconciler.core.spec.environment  # noqa: F401  (pydantic: the slow import)

    thread = threading.Thread(target=run, name="reconciler-import", daemon=True)
    thread.start()
    return thread


def _counting_map(
    engine: Context, warming: threading.Thread | None
) -> Callable[
    [Callable[[bytes], dict[str, Any]], Snapshot, list[FileEntry]], Iterable[dict[str, Any]]
]:
    """parse_files, counting parsed files on the progress display (once ``warming``, the
    parser's import, is done: a worker process is never forked in the middle of it)."""
    progress = engine.progress
    quiet = isinstance(progress, QuietProgress)

    def parse(
        function: Callable[[bytes], dict[str, Any]], snapshot: Snapshot, entries: list[FileEntry]
    ) -> Iterable[dict[str, Any]]:
        if warming is not None:
            warming.join()
        if quiet:
            return parse_files(function, snapshot, entries)
        return counted(function, snapshot, entries)

    def counted(
        function: Callable[[bytes], dict[str, Any]], snapshot: Snapshot, entries: list[FileEntry]
    ) -> Iterator[dict[str, Any]]:
        progress.start("parse", f"parsing {len(entries)} environment file(s)", len(entries))
        try:
            yield from parse_files(function, snapshot, entries, lambda: progress.advance("parse"))
        finally:
            progress.finish("parse")

    return parse


def alongside(first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """Both results, ``second`` computed in a thread while ``first`` runs here (the
    registry's state is read while git's files are parsed in worker processes). An error
    of ``first`` wins, as if ``second`` had never run."""
    found: list[B] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            found.append(second())
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="reconciler-read", daemon=True)
    thread.start()
    try:
        result = first()
    finally:
        thread.join()
    if failed:
        raise failed[0]
    return result, found[0]


def read_state(engine: Context) -> RegistryState:
    """The registry's state, shown on the progress display while it is read."""
    engine.progress.start("registry", f"reading {engine.registry.url}")
    try:
        return engine.registry.read_state()
    finally:
        engine.progress.finish("registry")


def text_of(snapshot: Snapshot, path: str) -> str | None:
    entry = snapshot.lookup(path)
    return None if entry is None else snapshot.read(entry).decode("utf-8", "replace")


def lines_of(snapshot: Snapshot, subjects: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The first line of each file that mentions each text (to annotate a finding)."""
    found: dict[tuple[str, str], int] = {}
    by_path: dict[str, list[str]] = {}
    for path, text in subjects:
        by_path.setdefault(path, []).append(text)
    for path, texts in by_path.items():
        content = text_of(snapshot, path)
        if content is None:
            continue
        lines = content.splitlines()
        for text in texts:
            for number, line in enumerate(lines, 1):
                if text in line:
                    found[(path, text)] = number
                    break
    return found


def dockerfile_bases(snapshot: Snapshot, env: DesiredEnvironment) -> list[str]:
    """The base images an environment's Dockerfile starts from (none without a context)."""
    from reconciler.core.build.jobs import dockerfile_bases as bases_of

    path = env.dockerfile_path
    text = text_of(snapshot, path) if path is not None else None
    return [] if text is None else bases_of(text)


def policy_diagnostics(
    engine: Context, state: DesiredState, snapshot: Snapshot, policy: Policy
) -> list[Diagnostic]:
    """Policy violations of every valid environment, with the file and line."""
    from reconciler.core.governance.package_diff import requirement_blobs
    from reconciler.core.governance.policy import evaluate

    today = engine.today()
    violations = []
    for env in state.environments.values():
        bases: list[str] = []
        requirements: dict[str, str] = {}
        build = env.content.get("build")
        if env.build_root is not None and isinstance(build, Mapping):
            root = env.build_root
            if policy.needs_dockerfiles:
                bases = dockerfile_bases(snapshot, env)
            if policy.needs_requirements:
                for path in requirement_blobs(env.content):
                    found = text_of(snapshot, f"{root}/{path}".lstrip("/"))
                    if found is not None:
                        requirements[path] = found
        violations.extend(evaluate(policy, env, today, bases, requirements))
    subjects = {(v.path, v.subject) for v in violations if v.line is None and v.path}
    lines = lines_of(snapshot, [(p, s) for p, s in subjects if s])
    return [v.diagnostic(lines) for v in violations]


def texts(
    engine: Context, blobs: Iterable[str], snapshot: Snapshot, desired: DesiredState
) -> dict[str, str]:
    """Text of files by blob id: from git's history, else from the snapshot (a file
    edited in the working tree is not in git's object database yet). Unreadable ones
    are left out (shown as not read)."""
    out: dict[str, str] = {}
    index: dict[str, FileEntry] | None = None
    for blob in sorted(blobs):
        try:
            data = engine.source.read_blob(blob)
        except SourceError:
            if index is None:
                index = {
                    e.blob_id: e
                    for env in desired.environments.values()
                    if env.build_root is not None
                    for e in snapshot.files_under(env.build_root)
                }
            entry = index.get(blob)
            if entry is None:
                continue
            data = snapshot.read(entry)
        out[blob] = data.decode("utf-8", "replace")
    return out


def blob_reader(engine: Context, snapshot: Snapshot) -> Callable[[str, BuildTarget], bytes]:
    """Build context files by blob id: from the snapshot, else from git's history."""
    indexes: dict[str, dict[str, FileEntry]] = {}
    lock = threading.Lock()

    def read(blob: str, target: BuildTarget) -> bytes:
        if target.build_root is not None:
            with lock:
                index = indexes.get(target.build_root)
                if index is None:
                    index = {e.blob_id: e for e in snapshot.files_under(target.build_root)}
                    indexes[target.build_root] = index
                entry = index.get(blob)
                if entry is not None:
                    return snapshot.read(entry)
        return engine.source.read_blob(blob)

    return read
