"""Desired state: discover environment files in a snapshot, validate, resolve, digest.

Parsing results are memoised by git blob id, so a file whose content did not change is
never parsed twice (the engine keeps the memo on disk between runs).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.desired.memo import Recording, Resolved, ResolveMemo
from reconciler.core.desired.selection import Selection
from reconciler.core.desired.snapshot import FileEntry, Snapshot
from reconciler.core.desired.types import DesiredEnvironment, DesiredState, LoadMemo
from reconciler.core.spec import diagnostics as diag
from reconciler.core.spec.diagnostics import Diagnostic
from reconciler.core.spec.digest import build_content, canonical_json, content_digest
from reconciler.core.spec.kinds import is_conda_document, is_url

MAX_DOCKERFILE_BYTES = 1024 * 1024
MAX_SYMLINK_HOPS = 16
_WINDOWS_ABSOLUTE = re.compile(r"^([A-Za-z]:[\\/]|\\\\)")


# ---------------------------------------------------------------------------- parsing


def _parse_candidate(content: bytes) -> dict[str, Any]:
    """Parse one YAML file into a plain record (cached by blob id). Paths are filled in later.

    A conda file comes back with its data under "conda", so that it is parsed only once.
    """
    # Imported here: PyYAML and pydantic are only needed when a file was not parsed before.
    from reconciler.core.spec.environment import check_environment
    from reconciler.core.spec.yamldoc import YamlError, parse_environment_yaml

    try:
        doc = parse_environment_yaml(content)
    except YamlError as exc:
        return {
            "kind": "invalid",
            "diags": [diag.error("yaml-syntax", exc.message, None, exc.line).to_dict()],
        }
    if doc.is_conda and is_conda_document(doc.data):
        return {"kind": "conda", "conda": {"data": plain_data(doc.data)}}
    env, found = check_environment(doc, "")
    data = doc.data
    record: dict[str, Any] = {
        "kind": "environment" if env is not None else "invalid",
        "env_like": isinstance(data, dict) and bool(set(data) & _ENVIRONMENT_MARKERS),
        "diags": [d.to_dict() for d in found],
        "lines": {k: v for k, v in doc.lines.items() if "." not in k or k.startswith("build.")},
    }
    if env is not None:
        record["env"] = env.model_dump(mode="json", exclude_none=True, by_alias=False)
    return record


def plain_data(value: Any) -> Any:
    """JSON-shaped data with string keys (YAML allows `1: x` beside `a: y`, which canonical
    JSON cannot sort), mappings in sorted key order, and dates and the like as strings:
    what a round trip through canonical JSON gives, built directly (every conda file of
    a cold run goes through here)."""
    if isinstance(value, dict):
        keyed = {str(k): v for k, v in value.items()}
        return {k: plain_data(keyed[k]) for k in sorted(keyed)}
    if isinstance(value, list):
        return [plain_data(v) for v in value]
    if value is None or isinstance(value, str | int | float):  # bool is an int
        return value
    if isinstance(value, tuple):  # never from YAML; exactly as the round trip reads it
        return json.loads(canonical_json(value))
    return str(value)  # canonical JSON's default


# Keys that make a YAML file an attempt at an environment definition.
_ENVIRONMENT_MARKERS = frozenset(
    {"name", "image", "build", "conda_file", "docker", "inference_config", "os_type"}
)


def serial_parse(
    function: Callable[[bytes], dict[str, Any]], snapshot: Snapshot, entries: list[FileEntry]
) -> Iterator[dict[str, Any]]:
    """Read and parse one file at a time (many big files are never held together)."""
    return (function(snapshot.read(entry)) for entry in entries)


def _parsed(memo: LoadMemo, snapshot: Snapshot, entry: FileEntry) -> dict[str, Any]:
    record = memo.parsed.get(entry.blob_id)
    if record is not None:
        return record
    known = memo.conda.get(entry.blob_id)
    if known is not None and is_conda_document(known.get("data")):
        record = {"kind": "conda"}  # parsed already, as some environment's conda file
    else:
        record = _parse_candidate(snapshot.read(entry))
        conda = record.pop("conda", None)
        if conda is not None:
            memo.conda[entry.blob_id] = conda
    memo.parsed[entry.blob_id] = record
    memo.changed = True
    return record


def _diags_at(record: Mapping[str, Any], path: str) -> list[Diagnostic]:
    out = []
    for raw in record.get("diags", ()):
        d = Diagnostic.from_dict(raw)
        out.append(Diagnostic(d.severity, d.rule, d.message, path, d.line))
    return out


# ---------------------------------------------------------------------------- paths


def _undecodable(path: str) -> bool:
    """A file name that is not UTF-8 arrives with surrogate escapes; it cannot be stored,
    printed or hashed as text, so it is refused rather than carried along."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def printable(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _bad_name(path: str, where: str, yaml_path: str, line: int | None = None) -> Diagnostic:
    return diag.error(
        "path-encoding",
        f"{where}{printable(path)!r}: the file name is not valid UTF-8; rename it",
        yaml_path,
        line,
    )


class _PathProblem(Exception):
    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def _join_inside(base_dir: str, ref: str) -> str:
    if ref.startswith("/") or _WINDOWS_ABSOLUTE.match(ref):
        raise _PathProblem(
            "path-absolute",
            f"{ref!r} is an absolute path; write it relative to the environment file",
        )
    joined = posixpath.normpath(posixpath.join(base_dir, ref))
    if joined == ".." or joined.startswith("../"):
        raise _PathProblem("path-escape", f"{ref!r} points outside the repository")
    return "" if joined == "." else joined


def _real_path(snapshot: Snapshot, path: str) -> str:
    """Follow symlinks in every component; refuse any that leave the repository."""
    for _ in range(MAX_SYMLINK_HOPS):
        parts = path.split("/") if path else []
        for index in range(len(parts)):
            prefix = "/".join(parts[: index + 1])
            entry = snapshot.lookup(prefix)
            if entry is None or not entry.is_symlink:
                continue
            target = snapshot.read(entry).decode("utf-8", "replace")
            if target.startswith("/"):
                raise _PathProblem(
                    "symlink-escape",
                    f"{prefix!r} is a symlink to {target!r}, outside the repository",
                )
            rest = parts[index + 1 :]
            base = posixpath.dirname(prefix)
            joined = posixpath.normpath(posixpath.join(base, target, *rest))
            if joined == ".." or joined.startswith("../"):
                raise _PathProblem(
                    "symlink-escape",
                    f"{prefix!r} is a symlink to {target!r}, outside the repository",
                )
            path = "" if joined == "." else joined
            break
        else:
            return path
    raise _PathProblem("symlink-loop", f"too many symlinks resolving {path!r}")


def _resolve(snapshot: Snapshot, yaml_path: str, ref: str) -> str:
    return _real_path(snapshot, _join_inside(posixpath.dirname(yaml_path), ref))


# ---------------------------------------------------------------------------- resolution


@dataclass(slots=True)
class _Resolved:
    content: dict[str, Any]
    references: list[str]


def _conda_content(
    memo: LoadMemo, snapshot: Snapshot, entry: FileEntry
) -> tuple[Any, Diagnostic | None]:
    record = memo.conda.get(entry.blob_id)
    if record is None:
        from reconciler.core.spec.yamldoc import YamlError, parse_plain_yaml

        try:
            data = parse_plain_yaml(snapshot.read(entry))
        except YamlError as exc:
            record = {"error": exc.message, "line": exc.line}
        else:
            if isinstance(data, dict):
                # canonical JSON round trip: plain data only, dates and the like as strings
                record = {"data": plain_data(data)}
            else:
                record = {"error": "a conda file must be a mapping (channels, dependencies)"}
        memo.conda[entry.blob_id] = record
        memo.changed = True
    if "error" in record:
        return None, diag.error("conda-file", str(record["error"]), entry.path, record.get("line"))
    return record["data"], None


def _dockerfile_size(memo: LoadMemo, snapshot: Snapshot, entry: FileEntry) -> int:
    size = memo.sizes.get(entry.blob_id)
    if size is None:
        size = len(snapshot.read(entry))
        memo.sizes[entry.blob_id] = size
        memo.changed = True
    return size


def _build_context(
    memo: LoadMemo, snapshot: Snapshot, yaml_path: str, build: Mapping[str, Any], line: int | None
) -> tuple[dict[str, Any] | None, list[str], list[Diagnostic]]:
    dockerfile_path = str(build.get("dockerfile_path", "Dockerfile"))
    raw = str(build["path"])
    if is_url(raw):
        return {"url": raw, "dockerfile_path": dockerfile_path}, [], []
    try:
        context = _resolve(snapshot, yaml_path, raw)
    except _PathProblem as problem:
        return (
            None,
            [],
            [diag.error(problem.rule, f"build.path: {problem.message}", yaml_path, line)],
        )
    entries = snapshot.files_under(context)
    if not entries:
        return (
            None,
            [],
            [
                diag.error(
                    "build-context-missing",
                    f"build.path {raw!r}: no directory {context or '.'!r} with files in the "
                    "repository",
                    yaml_path,
                    line,
                )
            ],
        )
    files: list[list[str]] = []
    found: list[Diagnostic] = []
    prefix = context + "/" if context else ""
    for entry in entries:
        if _undecodable(entry.path):
            found.append(_bad_name(entry.path, "build context: ", yaml_path, line))
            continue
        if entry.is_symlink:
            try:
                _real_path(snapshot, entry.path)
            except _PathProblem as problem:
                found.append(
                    diag.error(problem.rule, f"build context: {problem.message}", yaml_path, line)
                )
                continue
        files.append([entry.path[len(prefix) :], entry.mode, entry.blob_id])
    try:
        dockerfile = _join_inside(context, dockerfile_path)
    except _PathProblem as problem:
        found.append(
            diag.error(problem.rule, f"build.dockerfile_path: {problem.message}", yaml_path, line)
        )
        return None, [], found
    if prefix and not dockerfile.startswith(prefix):
        found.append(
            diag.error(
                "dockerfile-outside-context",
                f"build.dockerfile_path {dockerfile_path!r} is outside the build "
                f"context {context!r}",
                yaml_path,
                line,
            )
        )
    else:
        found_dockerfile = snapshot.lookup(dockerfile)
        if found_dockerfile is None:
            found.append(
                diag.error(
                    "dockerfile-missing",
                    f"build context {context or '.'!r} has no Dockerfile "
                    f"{dockerfile_path!r} (the service requires one)",
                    yaml_path,
                    line,
                )
            )
        elif _dockerfile_size(memo, snapshot, found_dockerfile) > MAX_DOCKERFILE_BYTES:
            found.append(
                diag.error(
                    "dockerfile-too-large",
                    f"{dockerfile!r} is larger than 1 MB, the service's limit",
                    yaml_path,
                    line,
                )
            )
    if found:
        return None, [], found
    content = {"dockerfile_path": dockerfile_path, "files": files}
    return content, [entry.path for entry in entries], []


def _resolve_environment(
    memo: LoadMemo,
    snapshot: Snapshot,
    yaml_path: str,
    record: Mapping[str, Any],
    parsing: _Parsing,
) -> tuple[DesiredEnvironment | None, list[str], list[Diagnostic]]:
    env = record["env"]
    lines = record.get("lines", {})
    references: list[str] = []
    conda: Any = None
    conda_path: str | None = None
    conda_ref = env.get("conda_file")
    if isinstance(conda_ref, dict):
        conda = plain_data(conda_ref)
    elif isinstance(conda_ref, str):
        line = lines.get("conda_file")
        try:
            conda_path = _resolve(snapshot, yaml_path, conda_ref)
        except _PathProblem as problem:
            return (
                None,
                [],
                [diag.error(problem.rule, f"conda_file: {problem.message}", yaml_path, line)],
            )
        entry = snapshot.lookup(conda_path)
        if entry is None:
            return (
                None,
                [],
                [
                    diag.error(
                        "conda-file-missing",
                        f"conda_file {conda_ref!r}: no file {conda_path!r} in the repository",
                        yaml_path,
                        line,
                    )
                ],
            )
        parsing.until(entry.blob_id)  # a candidate too: its record may be on its way
        conda, problem_diag = _conda_content(memo, snapshot, entry)
        if problem_diag is not None:
            return None, [], [problem_diag]
        references.append(conda_path)
    build = None
    build_root = None
    if "build" in env:
        build, context_files, found = _build_context(
            memo, snapshot, yaml_path, env["build"], lines.get("build.path") or lines.get("build")
        )
        if found:
            return None, [], found
        references.extend(context_files)
        if build is not None and "files" in build:
            build_root = _resolve(snapshot, yaml_path, str(env["build"]["path"]))
    inference = env.get("inference_config")
    content = build_content(
        image=env.get("image"),
        conda=conda,
        build=build,
        os_type=env.get("os_type", "linux"),
        inference_config=inference,
    )
    desired = DesiredEnvironment(
        name=env["name"],
        version=env.get("version"),
        description=env.get("description"),
        tags=dict(env.get("tags", {})),
        content=content,
        digest=content_digest(content),
        datastore=env.get("datastore"),
        source_path=yaml_path,
        line=lines.get("name"),
        build_root=build_root,
        lines={k: v for k, v in lines.items() if k in _FIELD_LINES},
        conda_path=conda_path if isinstance(conda_ref, str) else None,
    )
    return desired, references, []


_FIELD_LINES = frozenset(
    {"image", "conda_file", "build", "build.path", "tags", "description", "os_type"}
)


# ---------------------------------------------------------------------------- loading


# Parses files of a snapshot with the function given, results in order; it may read and
# parse in other processes (the engine's does, for many files).
Mapper = Callable[
    [Callable[[bytes], dict[str, Any]], Snapshot, list[FileEntry]], Iterable[dict[str, Any]]
]


def _parse_missing(
    memo: LoadMemo, snapshot: Snapshot, candidates: list[FileEntry], mapper: Mapper
) -> _Parsing:
    """Start parsing every candidate the memo does not know yet, in one batch (``mapper``
    reads and parses them, perhaps in parallel, and answers in order). The records are
    taken as they come, so that resolving the first environments overlaps the parse of
    the last ones."""
    seen: set[str] = set()
    todo: list[FileEntry] = []
    for entry in candidates:
        if entry.is_symlink or entry.blob_id in memo.parsed or entry.blob_id in seen:
            continue
        seen.add(entry.blob_id)
        todo.append(entry)
    if not todo:
        return _Parsing(memo, [], iter(()))
    snapshot.prefetch(todo)
    return _Parsing(memo, todo, iter(mapper(_parse_candidate, snapshot, todo)))


class _Parsing:
    """Parse records arriving in the order of their files, put in the memo on demand."""

    def __init__(
        self, memo: LoadMemo, todo: list[FileEntry], records: Iterator[dict[str, Any]]
    ) -> None:
        self.memo = memo
        self.waiting = {entry.blob_id for entry in todo}
        self._todo = iter(todo)
        self._records = records

    def until(self, blob_id: str) -> None:
        """Take records until the one of ``blob_id`` is in the memo (if it is coming)."""
        while blob_id in self.waiting:
            self._take()

    def drain(self) -> None:
        while self.waiting:
            self._take()
        if next(self._records, None) is not None:  # (and a generator runs to its end)
            raise ValueError("the parser answered more records than there were files")

    def _take(self) -> None:
        entry = next(self._todo)
        record = next(self._records, None)  # raises the mapper's error for this file
        if record is None:
            raise ValueError("the parser answered fewer records than there were files")
        conda = record.pop("conda", None)
        if conda is not None:
            self.memo.conda[entry.blob_id] = conda
        self.memo.parsed[entry.blob_id] = record
        self.memo.changed = True
        self.waiting.discard(entry.blob_id)


_PARSED = _Parsing(LoadMemo(), [], iter(()))  # nothing in progress


def _candidates(kept: ResolveMemo, snapshot: Snapshot, selection: Selection) -> list[FileEntry]:
    """The selection's files, remembering which paths match (the selection is fixed)."""
    matches = kept.matches
    out = []
    for entry in snapshot.files_under(selection.root):
        match = matches.get(entry.path)
        if match is None:
            match = matches[entry.path] = selection.matches(entry.path)
        if match:
            out.append(entry)
    return out


def _resolve_recorded(
    memo: LoadMemo,
    snapshot: Snapshot,
    entry: FileEntry,
    record: Mapping[str, Any],
    parsing: _Parsing = _PARSED,
) -> Resolved:
    recording = Recording(snapshot)
    desired, refs, problems = _resolve_environment(memo, recording, entry.path, record, parsing)
    diagnostics = tuple(_diags_at(record, entry.path) + problems)
    others = tuple(r for r in refs if r != entry.path)
    return Resolved(entry, frozenset(recording.reads), desired, others, diagnostics)


def load_desired(
    snapshot: Snapshot,
    selection: Selection,
    memo: LoadMemo | None = None,
    only: Iterable[str] | None = None,
    mapper: Mapper | None = None,
    kept: ResolveMemo | None = None,
) -> DesiredState:
    """Read every environment of the selection (or just the files in ``only``).

    ``kept`` (a long-running reconciler's) reuses the resolution of unchanged files."""
    memo = memo if memo is not None else LoadMemo()
    if only is not None:
        kept = None
    if kept is not None:
        kept.begin(selection, snapshot.files_under(""))
        patched = _patch(kept, memo, snapshot, selection)
        if patched is not None:
            return patched
        candidates = _candidates(kept, snapshot, selection)
    elif only is None:
        candidates = [e for e in snapshot.files_under(selection.root) if selection.matches(e.path)]
    else:
        candidates = []
        missing = []
        for path in only:
            entry = snapshot.lookup(path)
            if entry is None:
                missing.append(diag.error("file-missing", "no such file", path))
            else:
                candidates.append(entry)
    found: list[Diagnostic] = [] if only is None else missing
    hits: dict[str, Resolved] = {}
    if kept is not None:
        for entry in candidates:
            if (done := kept.get(entry)) is not None:
                hits[entry.path] = done
    todo = [e for e in candidates if e.path not in hits] if hits else candidates
    parsing = _parse_missing(memo, snapshot, todo, mapper or serial_parse)
    resolved: list[DesiredEnvironment] = []
    referenced: set[str] = set()
    invalid: list[tuple[FileEntry, dict[str, Any]]] = []
    conda_files: list[str] = []
    per_file_diags: dict[str, list[Diagnostic]] = {}
    fresh: dict[str, Resolved] = {}
    for entry in candidates:
        if (done := hits.get(entry.path)) is not None:
            fresh[entry.path] = done
            if done.conda:
                conda_files.append(entry.path)
                continue
            if done.diagnostics:
                per_file_diags[entry.path] = list(done.diagnostics)
            referenced.update(done.references)
            if done.desired is not None:
                resolved.append(done.desired)
            continue
        if _undecodable(entry.path):
            found.append(_bad_name(entry.path, "", printable(entry.path)))
            continue
        if entry.is_symlink:
            found.append(
                diag.error(
                    "symlink-environment", "an environment file may not be a symlink", entry.path
                )
            )
            continue
        parsing.until(entry.blob_id)
        record = _parsed(memo, snapshot, entry)
        kind = record["kind"]
        if kind == "conda":
            conda_files.append(entry.path)
            if kept is not None:  # by its content alone
                fresh[entry.path] = Resolved(entry, frozenset(), None, (), (), conda=True)
            continue
        if kind == "invalid":
            invalid.append((entry, record))
            continue
        if kept is None:
            desired, refs, problems = _resolve_environment(
                memo, snapshot, entry.path, record, parsing
            )
            per_file_diags[entry.path] = _diags_at(record, entry.path) + problems
        else:
            done = fresh[entry.path] = _resolve_recorded(memo, snapshot, entry, record, parsing)
            desired, refs = done.desired, list(done.references)
            per_file_diags[entry.path] = list(done.diagnostics)
        referenced.update(r for r in refs if r != entry.path)
        if desired is not None:
            resolved.append(desired)
    parsing.drain()  # every record in the memo (files skipped above were parsed too)
    # Files that an environment references (its conda file, its build context) are not
    # environments, whatever they look like.
    for entry, record in invalid:
        # A YAML file in a build context is context data, unless it tries to be an
        # environment: then its errors stand (and withhold archives).
        if entry.path not in referenced or record.get("env_like", True):
            found.extend(_diags_at(record, entry.path))
    environments: dict[str, DesiredEnvironment] = {}
    sources: dict[str, DesiredEnvironment] = {}
    duplicates: set[str] = set()
    for desired in resolved:
        if desired.source_path in referenced:
            # Still an environment (dropping it would archive it); say why it matters.
            found.append(
                diag.info(
                    "environment-in-build-context",
                    "this environment file is also part of another environment's build "
                    "context: editing it changes that environment's content",
                    desired.source_path,
                )
            )
        first = sources.get(desired.name)
        if first is not None:
            duplicates.add(desired.name)
            found.append(
                diag.error(
                    "duplicate-name",
                    f"environment {desired.name!r} is defined in both {first.source_path} and "
                    f"{desired.source_path}",
                    desired.source_path,
                    desired.line,
                )
            )
            continue
        sources[desired.name] = desired
        environments[desired.name] = desired
    for name in duplicates:
        environments.pop(name, None)
    for path in sorted(per_file_diags):
        found.extend(per_file_diags[path])
    for path in conda_files:
        if path not in referenced:
            found.append(
                diag.info(
                    "unreferenced-conda-file",
                    "a conda file that no environment references; skipped",
                    path,
                )
            )
    state = DesiredState(
        environments=dict(sorted(environments.items())),
        diagnostics=found,
        commit=snapshot.commit,
        source=snapshot.label,
        candidates=len(candidates),
        references=frozenset(referenced),
    )
    if kept is not None:
        kept.finish(fresh, state, frozenset(e.path for e in candidates))
    return state


def _patch(
    kept: ResolveMemo, memo: LoadMemo, snapshot: Snapshot, selection: Selection
) -> DesiredState | None:
    """The last load's state with the few environments a change touched resolved again,
    when that is all the change can alter: the same candidates, each touched one the same
    kind of result under the same name, with the same references and diagnostics (so
    duplicates, references, conda files and the order of diagnostics stay as they were).
    None: load in full."""
    last = kept.last
    if last is None or len(kept.changed) > MAX_PATCHED_PATHS:
        return None
    candidates, root = kept.candidates, selection.root
    for path in kept.changed:
        listed = kept.current(path) is not None
        if path in candidates:
            if not listed:
                return None  # a candidate removed
        elif listed and _inside(root, path) and selection.matches(path):
            return None  # a candidate added
    affected = {p for p in kept.changed if p in candidates} | kept.readers(kept.touched)
    if len(affected) > MAX_PATCHED_PATHS:
        return None
    environments = dict(last.environments)
    results: list[Resolved] = []
    for path in sorted(affected):
        old = kept.resolved.get(path)
        entry = kept.current(path)
        if old is None or entry is None or entry.is_symlink or _undecodable(path):
            return None
        record = _parsed(memo, snapshot, entry)
        if record["kind"] == "conda":
            done = Resolved(entry, frozenset(), None, (), (), conda=True)
        elif record["kind"] == "invalid":
            return None
        else:
            done = _resolve_recorded(memo, snapshot, entry, record)
        if (
            done.conda != old.conda
            or done.references != old.references
            or done.diagnostics != old.diagnostics
            or (done.desired is None) != (old.desired is None)
        ):
            return None
        if done.desired is not None and old.desired is not None:
            name = old.desired.name
            if done.desired.name != name or environments.get(name) is not old.desired:
                return None  # renamed, or one of a duplicate pair
            environments[name] = done.desired
        results.append(done)
    state = DesiredState(
        environments=environments,
        diagnostics=list(kept.last_diagnostics),
        commit=snapshot.commit,
        source=snapshot.label,
        candidates=last.candidates,
        references=last.references,
    )
    kept.patched(results, state)
    return state


# A change touching more environments than this loads in full (one pass costs less).
MAX_PATCHED_PATHS = 200


def _inside(root: str, path: str) -> bool:
    return not root or path.startswith(root + "/")
