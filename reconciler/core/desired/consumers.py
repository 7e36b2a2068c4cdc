"""Consumers: the files of a repository that use environments (jobs, components, pipelines,
deployments, notebooks and scripts), and each reference they make. Pure: bytes in, values
out; the engine lists and reads the files, and caches each file's scan by its blob id.

Recognised forms (Azure ML v2):

- ``azureml:NAME:VERSION`` and ``azureml:NAME@latest`` (workspace-relative);
- ``azureml://registries/REG/environments/NAME/versions/VERSION`` and ``.../labels/latest``;
- ``azureml://subscriptions/S/resourceGroups/R/workspaces/W/environments/NAME/versions/V``
  (and ``labels/L``);
- an inline (anonymous) environment: a mapping under an ``environment`` key.

The short forms also name components, data and models, so they count only under an
``environment`` key (YAML) or on a line that says ``environment`` (code); the long forms
say ``environments/`` themselves and count anywhere.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reconciler.core.desired.selection import globs

YAML_SUFFIXES = (".yml", ".yaml")
CODE_SUFFIXES = (".py", ".ipynb")
DEFAULT_INCLUDE = (
    "*.yml",
    "*.yaml",
    "**/*.yml",
    "**/*.yaml",
    "*.py",
    "**/*.py",
    "*.ipynb",
    "**/*.ipynb",
)
# The tool's own directories are never consumers, nor GitHub's configuration: a workflow's
# `environment:` names a GitHub deployment environment, not an Azure ML one.
TOOL_DIRECTORIES = (".git/", ".reconciler/", ".azureml-emulator/", ".github/")
MAX_YAML_BYTES = 1024 * 1024  # as for environment files
MAX_CODE_BYTES = 10 * 1024 * 1024  # notebooks carry their outputs
_MARKER = "azureml:"
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}"
_VERSION = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_SEGMENT = r"[^/\s'\"`,;)\]}]+"
_LONG = re.compile(
    r"azureml://(?:registries/(?P<reg>" + _SEGMENT + r")"
    r"|subscriptions/(?P<sub>" + _SEGMENT + r")/resource[gG]roups/(?P<rg>" + _SEGMENT + r")"
    r"(?:/providers/Microsoft\.MachineLearningServices)?/workspaces/(?P<ws>" + _SEGMENT + r"))"
    r"/environments/(?P<name>" + _NAME + r")"
    r"/(?:versions/(?P<version>" + _VERSION + r")|labels/(?P<label>" + _VERSION + r"))"
)
_SHORT = re.compile(
    r"(?<![A-Za-z0-9_/.-])azureml:(?P<name>"
    + _NAME
    + r")(?::(?P<version>"
    + _VERSION
    + r")|@(?P<label>"
    + _VERSION
    + r"))"
)
# The key or keyword argument a string is given to: `environment="...`, `"environment": "...`
# (and in a notebook's JSON, `environment=\\"...`).
_KEY_BEFORE = re.compile(r"""([A-Za-z_][\w.-]*)\\?["']?\s*[:=]\s*\\?["']?\s*$""")


class ConsumerSettingsError(ValueError):
    """The `[consumers]` table is malformed; the message names the key."""


class Form(StrEnum):
    NAME_VERSION = "name-version"  # azureml:NAME:VERSION
    NAME_LABEL = "name-label"  # azureml:NAME@latest
    REGISTRY_VERSION = "registry-version"
    REGISTRY_LABEL = "registry-label"
    WORKSPACE_VERSION = "workspace-version"
    WORKSPACE_LABEL = "workspace-label"
    INLINE = "inline"  # an anonymous environment defined in the consumer itself

    @property
    def pinned(self) -> bool:
        return self in (Form.NAME_VERSION, Form.REGISTRY_VERSION, Form.WORKSPACE_VERSION)

    @property
    def floating(self) -> bool:
        return self in (Form.NAME_LABEL, Form.REGISTRY_LABEL, Form.WORKSPACE_LABEL)


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """Which files are scanned for references (globs relative to the repository root)."""

    include: tuple[str, ...] = DEFAULT_INCLUDE
    """Globs over repository paths of the files read for references (YAML, Python and
    notebooks only)."""
    exclude: tuple[str, ...] = ()
    """Globs over repository paths of files never read for references."""
    enabled: bool = True
    """`false`: no scan, no reference findings, no archive refused for consumers."""

    def matches(self, path: str) -> bool:
        if not path.endswith(YAML_SUFFIXES + CODE_SUFFIXES):
            return False
        if path.startswith(TOOL_DIRECTORIES):
            return False
        if globs(self.include)(path) is None:
            return False
        return not self.exclude or globs(self.exclude)(path) is None


def parse_consumers_table(table: Any) -> ConsumerSettings:
    """The `[consumers]` table of the settings file; ConsumerSettingsError if malformed."""
    if not isinstance(table, Mapping):
        raise ConsumerSettingsError("`consumers` must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in ("include", "exclude"):
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ConsumerSettingsError(
                    f"`consumers.{key}`: expected a list of non-empty glob strings"
                )
            values[key] = tuple(value)
        elif key == "enabled":
            if not isinstance(value, bool):
                raise ConsumerSettingsError("`consumers.enabled`: expected true or false")
            values[key] = value
        else:
            raise ConsumerSettingsError(
                f"unknown setting `consumers.{key}` (known: enabled, exclude, include)"
            )
    return ConsumerSettings(**values)


def is_code(path: str) -> bool:
    return path.endswith(CODE_SUFFIXES)


@dataclass(frozen=True, slots=True)
class Reference:
    """One use of an environment by a consumer file."""

    path: str
    line: int  # 1-based
    column: int  # 1-based
    form: Form
    name: str | None  # None: an inline environment
    version: str | None = None
    label: str | None = None
    scope: str | None = None  # `registries/REG` or `subscriptions/S/resourceGroups/R/...`
    key_path: str | None = None  # `jobs.train.environment`; None in code
    text: str = ""  # the reference as written
    offset: int | None = None  # where the version starts in the file's text (None: no edit)

    @property
    def code(self) -> bool:
        return is_code(self.path)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def target(self) -> str:
        if self.name is None:
            return "(inline environment)"
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return f"{self.name}@{self.label}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "form": self.form.value,
            "name": self.name,
            "version": self.version,
            "label": self.label,
            "scope": self.scope,
            "key_path": self.key_path,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class Unreadable:
    path: str
    reason: str
    line: int | None = None


# ---------------------------------------------------------------------------- scanning
#
# A scan record is plain data (it is cached by blob id, whatever the file's path):
# {"refs": [[line, column, form, name, version, label, scope, key_path, text, offset]],
#  "problem": reason or None, "line": line of the problem or None}


def _record(
    refs: list[list[Any]], problem: str | None = None, line: int | None = None
) -> dict[str, Any]:
    return {"refs": refs, "problem": problem, "line": line}


def unreadable_record(reason: str) -> dict[str, Any]:
    return _record([], reason)


def too_large_record(size: int, limit: int) -> dict[str, Any]:
    return _record([], f"larger than {limit // (1024 * 1024)} MB ({size} bytes); not read")


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    start = text.rfind("\n", 0, offset) + 1
    return line, offset - start + 1


def _matches(value: str, short_forms: bool) -> Iterator[tuple[int, list[Any]]]:
    """(start in ``value``, the reference's fields after line and column)."""
    for found in _LONG.finditer(value):
        version, label = found.group("version"), found.group("label")
        if found.group("reg") is not None:
            scope = f"registries/{found.group('reg')}"
            form = Form.REGISTRY_VERSION if version else Form.REGISTRY_LABEL
        else:
            scope = (
                f"subscriptions/{found.group('sub')}/resourceGroups/{found.group('rg')}"
                f"/workspaces/{found.group('ws')}"
            )
            form = Form.WORKSPACE_VERSION if version else Form.WORKSPACE_LABEL
        version = version.rstrip(".") if version else None
        text = found.group(0).rstrip(".")
        where = found.start("version") - found.start() if version else None
        yield found.start(), [form.value, found.group("name"), version, label, scope, text, where]
    if not short_forms:
        return
    for found in _SHORT.finditer(value):
        version, label = found.group("version"), found.group("label")
        version = version.rstrip(".") if version else None
        form = Form.NAME_VERSION if version else Form.NAME_LABEL
        text = found.group(0).rstrip(".")
        where = found.start("version") - found.start() if version else None
        yield found.start(), [form.value, found.group("name"), version, label, None, text, where]


def _text_problem(content: bytes, limit: int) -> tuple[str | None, int | None]:
    if len(content) > limit:
        return too_large_record(len(content), limit)["problem"], None
    if b"\0" in content[:8192]:
        return "binary content (a NUL byte), not text", None
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"not valid UTF-8 (byte {exc.start})",
            content.count(b"\n", 0, exc.start) + 1,
        )
    return None, None


def scan_code(content: bytes) -> dict[str, Any]:
    """References in a Python file or a notebook: string references, found by text."""
    problem, line = _text_problem(content, MAX_CODE_BYTES)
    if problem is not None:
        return _record([], problem, line)
    if _MARKER.encode() not in content:
        return _record([])
    return _record(_text_refs(content.decode("utf-8")))


def _text_refs(text: str) -> list[list[Any]]:
    refs: list[list[Any]] = []
    for number, start in _lines_with_marker(text):
        end = text.find("\n", start)
        row = text[start : end if end >= 0 else len(text)]
        for at, fields in _matches(row, short_forms=True):
            if fields[0] in (Form.NAME_VERSION, Form.NAME_LABEL):
                key = _KEY_BEFORE.search(row, max(0, at - 80), at)
                if key is None or not _environment_key(key.group(1)):
                    continue  # `azureml:NAME:V` of a component, data or model
            where = fields[6]
            offset = start + at + where if where is not None else None
            refs.append([number, at + 1, *_tail(fields, None, offset)])
    return refs


def _tail(fields: list[Any], key_path: str | None, offset: int | None) -> list[Any]:
    form, name, version, label, scope, text, _ = fields
    return [form, name, version, label, scope, key_path, text, offset]


def _lines_with_marker(text: str) -> Iterator[tuple[int, int]]:
    """(line number, offset of the line's start) of every line holding `azureml:`."""
    position = text.find(_MARKER)
    last_line, last_offset = 1, 0
    while position >= 0:
        start = text.rfind("\n", 0, position) + 1
        last_line += text.count("\n", last_offset, start)
        last_offset = start
        yield last_line, start
        end = text.find("\n", position)
        if end < 0:
            return
        position = text.find(_MARKER, end)


def scan_yaml(content: bytes) -> dict[str, Any]:
    """References in a YAML file, each with its key path; an invalid file is reported
    (and its text still searched, so that an archive never misses a pin)."""
    problem, line = _text_problem(content, MAX_YAML_BYTES)
    if problem is not None:
        return _record([], problem, line)
    if _MARKER.encode() not in content and b"environment" not in content:
        return _record([])  # cannot hold a reference: not worth parsing
    from reconciler.core.spec.yamldoc import YamlError, compose_documents

    try:
        text, roots = compose_documents(content)
    except YamlError as exc:
        fallback = _text_refs(content.decode("utf-8"))
        return _record(fallback, exc.message, exc.line)
    refs: list[list[Any]] = []
    for root in roots:
        refs.extend(_walk(text, root))
    return _record(refs)


def _walk(text: str, root: Any) -> list[list[Any]]:
    import yaml

    refs: list[list[Any]] = []
    seen: set[int] = set()
    stack: list[tuple[Any, str, str]] = [(root, "", "")]  # node, key path, last key

    def worth(node: Any, key: str) -> bool:
        """Can this child hold a reference? (Most cannot: skip them at C speed.)"""
        if isinstance(node, yaml.ScalarNode):
            return _MARKER in node.value
        if _environment_key(key):
            return True
        start, end = node.start_mark.index, node.end_mark.index
        return text.find(_MARKER, start, end) >= 0 or text.find("nvironment", start, end) >= 0

    while stack:
        node, path, key = stack.pop()
        if id(node) in seen:
            continue  # an alias: its references were found where it was defined
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            if key.lower() == "environment" and path:
                line, column = node.start_mark.line + 1, node.start_mark.column + 1
                refs.append(
                    [line, column, Form.INLINE.value, None, None, None, None, path, "", None]
                )
            for key_node, value_node in reversed(node.value):
                name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
                if worth(value_node, name):
                    stack.append((value_node, f"{path}.{name}" if path else name, name))
        elif isinstance(node, yaml.SequenceNode):
            for index in range(len(node.value) - 1, -1, -1):
                if worth(node.value[index], key):
                    stack.append((node.value[index], f"{path}[{index}]", key))
        elif isinstance(node, yaml.ScalarNode) and _MARKER in node.value:
            refs.extend(_scalar_refs(text, node, path, _environment_key(key)))
    refs.sort(key=lambda r: (r[0], r[1]))
    return refs


def _environment_key(key: str) -> bool:
    """`environment`, `default_environment`, `defaultEnvironment`, `environment_id`; not
    `environment_variables`."""
    lowered = key.lower()
    return lowered.endswith("environment") or lowered == "environment_id"


def _scalar_refs(text: str, node: Any, path: str, short_forms: bool) -> list[list[Any]]:
    start, end = node.start_mark.index, node.end_mark.index
    written = text[start:end]
    refs = []
    for _, fields in _matches(node.value, short_forms):
        reference = fields[5]
        found = written.find(reference)
        if found >= 0 and "\n" not in written[:found]:
            offset = start + found
            line, column = _position(text, offset)
            where = offset + fields[6] if fields[6] is not None else None
        else:  # folded or escaped: where the scalar starts, and no edit in place
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
            where = None
        refs.append([line, column, *_tail(fields, path, where)])
    return refs


def symlink_problem(path: str, target: str) -> str | None:
    """Why a symlinked consumer cannot be read (it leaves the repository), or None (it
    points inside: the file it points to is scanned under its own name)."""
    if target.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", target):
        return f"a symlink to {target!r}, outside the repository; not read"
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if joined == ".." or joined.startswith("../"):
        return f"a symlink to {target!r}, outside the repository; not read"
    return None


# ---------------------------------------------------------------------------- the index


@dataclass(frozen=True, slots=True)
class ConsumerIndex:
    """Every reference of a snapshot's consumer files, and the files that could not be
    read (with the reason)."""

    references: tuple[Reference, ...] = ()
    unreadable: tuple[Unreadable, ...] = ()
    files: int = 0  # consumer files scanned

    def of(self, name: str) -> list[Reference]:
        return [r for r in self.references if r.name == name]

    def pinning(self, name: str, version: str) -> list[Reference]:
        return [r for r in self.references if r.name == name and r.version == version]

    def names(self) -> set[str]:
        return {r.name for r in self.references if r.name is not None}


def references_of(path: str, record: Mapping[str, Any]) -> list[Reference]:
    out = []
    for raw in record.get("refs", ()):
        line, column, form, name, version, label, scope, key_path, text, offset = raw
        out.append(
            Reference(
                path, line, column, Form(form), name, version, label, scope, key_path, text, offset
            )
        )
    return out


def build_index(scanned: Iterable[tuple[str, Mapping[str, Any]]]) -> ConsumerIndex:
    """The index from (path, scan record) pairs, in path order."""
    references: list[Reference] = []
    unreadable: list[Unreadable] = []
    files = 0
    for path, record in sorted(scanned, key=lambda item: item[0]):
        files += 1
        if record.get("problem"):
            unreadable.append(Unreadable(path, str(record["problem"]), record.get("line")))
        references.extend(references_of(path, record))
    return ConsumerIndex(tuple(references), tuple(unreadable), files)
