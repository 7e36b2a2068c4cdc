"""Parse YAML bytes into plain data, keeping line numbers and scalars as written.

PyYAML implements YAML 1.1, which turns an unquoted ``1.10`` into ``1.1`` and ``01`` into
``1``. Environment versions, names, descriptions and tag values are strings in the
service, so for those keys the scalar is taken exactly as written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

try:  # the C parser is several times faster; fall back when libyaml is absent
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on the platform build
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

MAX_FILE_BYTES = 1024 * 1024
# Bounds the expansion of YAML aliases ("billion laughs"): nodes visited while building.
MAX_NODES = 200_000
# Bounds nesting: building data recurses once per level (libyaml's composer in C, where a
# deep enough file crashes the process; PyYAML's constructor in Python). Real files nest
# fewer than ten levels.
MAX_DEPTH = 100
# Each nested collection owns at least one of these indicators, so a file with few of
# them cannot nest deeply and skips the exact (event by event) depth check.
_NESTING_INDICATORS = b"[{-:?"
# Python's int() refuses more than 4300 digits (ValueError), and base-60 integers such as
# 1:2:3 cost quadratic time in their length: no number in an environment file is this long.
MAX_NUMBER_CHARS = 100

AS_WRITTEN_KEYS = frozenset({"name", "version", "description", "image", "datastore", "os_type"})
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


class YamlError(Exception):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(slots=True)
class YamlDocument:
    data: Any
    # "key" or "key.sub" -> 1-based line of the key
    lines: dict[str, int] = field(default_factory=dict)
    # (key, written, yaml_would_read) for plain scalars that YAML 1.1 would change
    coerced: list[tuple[str, str, str]] = field(default_factory=list)
    # (key.path, line) for nested values where a string was required
    nested: list[tuple[str, int]] = field(default_factory=list)
    duplicate_keys: list[tuple[str, int]] = field(default_factory=list)
    # a conda specification (top-level channels/dependencies, no environment keys): its
    # data is built as plain YAML, as the service reads it, not with as-written scalars
    is_conda: bool = False


class _Loader(_BaseLoader):
    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # A scalar constructor may raise ValueError (a date such as 2024-99-99, an integer
        # too long for int()): report it as a YAML error at the value, not a crash.
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark
            ) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a number longer than {MAX_NUMBER_CHARS} characters; quote it if it is text",
                node.start_mark,
            )
        value: int = super().construct_yaml_int(node)
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)

_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
# Which tag a plain or quoted scalar resolves to depends on its text alone (the safe
# loader has no path resolvers), and the same few keys and values recur in every file:
# remembered, each is matched against the implicit resolvers' patterns once.
_RESOLVED: dict[tuple[str, tuple[bool, bool]], str] = {}
_RESOLVED_MAX_ENTRIES = 10_000
_RESOLVED_MAX_CHARS = 100


_resolve_any: Callable[[_Loader, type, Any, Any], str] = _BaseLoader.resolve


def _resolve_scalar(loader: _Loader, kind: type, value: Any, implicit: Any) -> str:
    if kind is not yaml.ScalarNode or len(value) > _RESOLVED_MAX_CHARS:
        return _resolve_any(loader, kind, value, implicit)
    key = (value, implicit)
    tag = _RESOLVED.get(key)
    if tag is None:
        tag = _resolve_any(loader, kind, value, implicit)
        if len(_RESOLVED) < _RESOLVED_MAX_ENTRIES:
            _RESOLVED[key] = tag
    return tag


_Loader.resolve = _resolve_scalar  # type: ignore[method-assign,assignment]


def _construct(loader: _Loader, node: yaml.Node, aliased: bool) -> Any:
    """The data of ``node``, as ``loader.construct_object(node, deep=True)`` builds it.

    The common case (mappings with scalar keys, sequences, strings) is built here, without
    the constructor's bookkeeping per node; anything else (other scalar types, merge keys,
    explicit tags, complex keys) goes to the loader. With aliases a node may occur twice,
    or inside itself: the loader builds those documents whole."""
    if aliased:
        return loader.construct_object(node, deep=True)
    tag = node.tag
    if isinstance(node, yaml.ScalarNode):
        return node.value if tag == _STR_TAG else loader.construct_object(node, deep=True)
    if isinstance(node, yaml.SequenceNode) and tag == _SEQ_TAG:
        return [_construct(loader, child, False) for child in node.value]
    if isinstance(node, yaml.MappingNode) and tag == _MAP_TAG:
        pairs = node.value
        for key_node, _ in pairs:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN_KEY_TAGS:
                return loader.construct_object(node, deep=True)
        out: dict[Any, Any] = {}
        for key_node, value_node in pairs:
            key = (
                key_node.value
                if key_node.tag == _STR_TAG
                else loader.construct_object(key_node, deep=True)
            )
            out[key] = _construct(loader, value_node, False)
        return out
    return loader.construct_object(node, deep=True)


# Key types a mapping is built from directly; a merge key (<<) or the value key (=)
# changes the mapping itself (SafeConstructor.flatten_mapping), and is left to the loader.
_PLAIN_KEY_TAGS = frozenset(
    {
        _STR_TAG,
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:null",
        "tag:yaml.org,2002:timestamp",
    }
)


def _check_graph(node: yaml.Node, limit: int) -> None:
    """Walk the node graph, aliases included, refusing alias bombs (too many visits) and
    alias chains nested deeper than MAX_DEPTH."""
    count = 0
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        count += 1
        if count > limit:
            raise YamlError(
                f"document expands to more than {limit} nodes (YAML alias expansion); refused"
            )
        if depth > MAX_DEPTH:
            raise YamlError(
                f"document nests deeper than {MAX_DEPTH} levels through aliases; refused",
                _line(current),
            )
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in current.value)


def _check_nesting(content: bytes, text: str) -> None:
    """Refuse collections nested deeper than MAX_DEPTH before anything recurses into them.
    libyaml's parser is iterative, so walking its events is safe at any depth."""
    if len(content) - len(content.translate(None, _NESTING_INDICATORS)) <= MAX_DEPTH:
        return  # (one pass counts them all)
    loader = _Loader(text)
    depth = 0
    try:
        while (event := loader.get_event()) is not None:
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    raise YamlError(
                        f"collections nested deeper than {MAX_DEPTH} levels; refused",
                        int(mark.line) + 1 if mark is not None else None,
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _is_plain(node: yaml.ScalarNode) -> bool:
    return not node.style  # the C parser reports plain style as "", the Python one as None


def _scalar_as_written(loader: _Loader, node: yaml.ScalarNode) -> str | None:
    if _is_plain(node) and node.value in _NULLS:
        return None
    return str(node.value)


def _resolved_plain(loader: _Loader, node: yaml.ScalarNode) -> Any:
    return _construct(loader, node, False)


def _parse_root(loader: _Loader, root: yaml.Node, doc: YamlDocument, aliased: bool) -> Any:
    if not isinstance(root, yaml.MappingNode):
        return _construct(loader, root, aliased)
    loader.flatten_mapping(root)
    out: dict[Any, Any] = {}
    for key_node, value_node in root.value:
        key = _construct(loader, key_node, aliased)
        if not isinstance(key, str):
            key = str(key)
        if key in out:
            doc.duplicate_keys.append((key, _line(key_node)))
        doc.lines[key] = _line(key_node)
        if key in AS_WRITTEN_KEYS and isinstance(value_node, yaml.ScalarNode):
            written = _scalar_as_written(loader, value_node)
            if _is_plain(value_node) and written is not None:
                resolved = _resolved_plain(loader, value_node)
                if not isinstance(resolved, str) and str(resolved) != written:
                    doc.coerced.append((key, written, str(resolved)))
            out[key] = written
        elif key == "tags" and isinstance(value_node, yaml.MappingNode):
            out[key] = _string_map(loader, value_node, "tags", doc, aliased)
        else:
            if isinstance(value_node, yaml.MappingNode):
                for sub_key, _ in value_node.value:
                    if isinstance(sub_key, yaml.ScalarNode):
                        doc.lines[f"{key}.{sub_key.value}"] = _line(sub_key)
            out[key] = _construct(loader, value_node, aliased)
    return out


def _string_map(
    loader: _Loader, node: yaml.MappingNode, where: str, doc: YamlDocument, aliased: bool
) -> dict[str, str]:
    loader.flatten_mapping(node)
    result: dict[str, str] = {}
    for key_node, value_node in node.value:
        key = str(_construct(loader, key_node, aliased))
        doc.lines[f"{where}.{key}"] = _line(key_node)
        if isinstance(value_node, yaml.ScalarNode):
            result[key] = _scalar_as_written(loader, value_node) or ""
        else:
            doc.nested.append((f"{where}.{key}", _line(value_node)))
    return result


_CONDA_KEYS = frozenset({"channels", "dependencies"})
_ENVIRONMENT_KEYS = frozenset(
    {"image", "build", "conda_file", "docker", "inference_config", "os_type"}
)


def _looks_like_conda(root: yaml.Node) -> bool:
    if not isinstance(root, yaml.MappingNode):
        return False
    keys = {k.value for k, _ in root.value if isinstance(k, yaml.ScalarNode)}
    return bool(keys & _CONDA_KEYS) and not keys & _ENVIRONMENT_KEYS


def parse_environment_yaml(content: bytes) -> YamlDocument:
    """Parse an environment file. Raises YamlError with a line where known."""
    loader, root, aliased = _compose(content)
    doc = YamlDocument(data=None)
    try:
        if root is None:
            return doc
        if _looks_like_conda(root):
            doc.is_conda = True
            doc.data = _construct(loader, root, aliased)
        else:
            doc.data = _parse_root(loader, root, doc, aliased)
    except yaml.YAMLError as exc:
        raise _as_yaml_error(exc) from None
    finally:
        loader.dispose()
    return doc


def parse_plain_yaml(content: bytes) -> Any:
    """Parse any YAML document (a conda file) into plain data."""
    loader, root, aliased = _compose(content)
    try:
        return None if root is None else _construct(loader, root, aliased)
    except yaml.YAMLError as exc:
        raise _as_yaml_error(exc) from None
    finally:
        loader.dispose()


def _compose(content: bytes) -> tuple[_Loader, yaml.Node | None, bool]:
    """The node tree of a single-document file, the loader that composed it (to build
    the data with; the caller disposes of it), and whether it may hold aliases."""
    text = _decoded(content, MAX_FILE_BYTES)
    loader = _Loader(text)
    aliased = b"*" in content  # no "*", no alias: nothing can expand
    try:
        try:
            _check_nesting(content, text)
            root: yaml.Node | None = loader.get_single_node()
            if root is not None and aliased:
                _check_graph(root, MAX_NODES)
        except yaml.reader.ReaderError as exc:  # a forbidden character: a position
            line = text.count("\n", 0, exc.position) + 1
            raise YamlError(f"invalid YAML: {str(exc).splitlines()[0]}", line) from None
        except yaml.YAMLError as exc:
            raise _as_yaml_error(exc) from None
    except BaseException:
        loader.dispose()
        raise
    return loader, root, aliased


def _decoded(content: bytes, limit: int) -> str:
    """The text of a file within the size limit, or the error naming the first bad byte."""
    if len(content) > limit:
        raise YamlError(f"file is {len(content)} bytes; the limit is {limit} bytes")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        raise YamlError(f"not valid UTF-8 (byte {exc.start})", line) from None


def _as_yaml_error(exc: yaml.YAMLError) -> YamlError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = int(mark.line) + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return YamlError(f"invalid YAML: {problem}", line)


def compose_documents(content: bytes, limit: int = MAX_FILE_BYTES) -> tuple[str, list[yaml.Node]]:
    """The decoded text and the node tree of every document of a YAML stream (marks give
    each scalar's position), with the same limits as an environment file."""
    text = _decoded(content, limit)
    loader = _Loader(content)  # bytes: libyaml reads them as they are (marks count characters)
    roots: list[yaml.Node] = []
    try:
        _check_nesting(content, text)
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                roots.append(node)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise YamlError(f"invalid YAML: {str(exc).splitlines()[0]}", line) from None
    except yaml.YAMLError as exc:
        raise _as_yaml_error(exc) from None
    finally:
        loader.dispose()
    if b"*" in content:
        for root in roots:
            _check_graph(root, MAX_NODES)
    return text, roots
