"""Consumers: every reference to an environment in the repository's other files (CI
workflows, job specs, code), scanned once per file content.

1. List the consumer files of the snapshot (not environment files, not their references).
2. Take each file's scan from the parse memo by blob id; an unchanged file is never read.
3. Refuse huge files unread; read and scan the rest (in parallel when there are many).
4. Index every reference by environment (core/desired/consumers.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from reconciler.ports import FileEntry, Snapshot, SourceError

# How read.py parses many files (in worker processes when there are many).
ParseMap = Callable[[Callable[[bytes], dict[str, Any]], list[bytes]], Iterable[dict[str, Any]]]

if TYPE_CHECKING:
    from reconciler.core.desired.consumers import ConsumerIndex
    from reconciler.core.desired.types import DesiredState, LoadMemo
    from reconciler.core.spec.diagnostics import Diagnostic
    from reconciler.engine.context import Context


def scan_consumers(
    engine: Context,
    snapshot: Snapshot,
    state: DesiredState,
    memo: LoadMemo,
    parallel_map: ParseMap = map,
) -> ConsumerIndex:
    """Every reference in the consumer files of the snapshot."""
    from reconciler.core.desired import consumers as scan

    settings = engine.consumers
    assert settings is not None
    selection, used = engine.selection, state.references
    kept = engine.cache.kept_memos()
    # A long-running reconciler remembers what each path's name alone decides (globs).
    known = kept[0].consumer_matches((settings, selection)) if kept is not None else {}

    def wanted(path: str) -> bool:
        if path in used:  # cheap, and true of every conda file: decided first
            return False
        named = known.get(path)
        if named is None:
            named = known[path] = settings.matches(path) and not selection.owns(path)
        return named

    scanned: list[tuple[str, dict[str, Any]]] = []
    todo: list[tuple[FileEntry, str]] = []
    for entry in engine.source.list_files(snapshot, wanted):
        key = ("code:" if scan.is_code(entry.path) else "yaml:") + entry.blob_id
        if entry.is_symlink:  # its target is scanned under its own name, if inside
            try:
                target = snapshot.read(entry).decode("utf-8", "replace")
            except SourceError as exc:
                scanned.append((entry.path, scan.unreadable_record(str(exc))))
                continue
            problem = scan.symlink_problem(entry.path, target)
            if problem is not None:
                scanned.append((entry.path, scan.unreadable_record(problem)))
            continue
        record = memo.consumers.get(key)
        if record is None:
            todo.append((entry, key))
        else:
            scanned.append((entry.path, record))
    if todo:
        scanned.extend(_scan_files(engine, snapshot, todo, memo, parallel_map))
    return scan.build_index(scanned)


def _scan_files(
    engine: Context,
    snapshot: Snapshot,
    todo: list[tuple[FileEntry, str]],
    memo: LoadMemo,
    parallel_map: ParseMap,
) -> list[tuple[str, dict[str, Any]]]:
    from reconciler.core.desired import consumers as scan

    sizes = engine.source.sizes(snapshot, [entry for entry, _ in todo])
    out: list[tuple[str, dict[str, Any]]] = []
    readable: dict[str, list[tuple[FileEntry, str]]] = {"yaml": [], "code": []}
    for entry, key in todo:
        kind = key.split(":", 1)[0]
        size = sizes.get(entry.blob_id, 0)
        limit = scan.MAX_CODE_BYTES if kind == "code" else scan.MAX_YAML_BYTES
        if size > limit:  # never read: a huge file is refused before it is held
            memo.consumers[key] = scan.too_large_record(size, limit)
            out.append((entry.path, memo.consumers[key]))
        else:
            readable[kind].append((entry, key))
    snapshot.prefetch([entry for group in readable.values() for entry, _ in group])
    for kind, function in (("yaml", scan.scan_yaml), ("code", scan.scan_code)):
        group, contents = [], []
        for entry, key in readable[kind]:
            try:
                contents.append(snapshot.read(entry))
            except SourceError as exc:  # vanished or unreadable: not cached
                out.append((entry.path, scan.unreadable_record(str(exc))))
                continue
            group.append((entry, key))
        for (entry, key), record in zip(group, parallel_map(function, contents), strict=True):
            memo.consumers[key] = record
            out.append((entry.path, record))
    memo.changed = True
    return out


def reference_findings(engine: Context, state: DesiredState) -> list[Diagnostic]:
    """What git alone tells about the consumers' references (for validate)."""
    if state.consumers is None:
        return []
    from reconciler.core.governance.pins import Levels, Scope
    from reconciler.core.governance.pins import reference_findings as findings

    return findings(
        state.consumers,
        state,
        None,
        None,
        Levels(engine.options.reference_levels),
        Scope(engine.options.registry_scope),
    )
