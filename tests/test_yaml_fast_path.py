"""The parser's fast path (common YAML built directly, scalar tags resolved once per
text) gives exactly what the general path (PyYAML's constructor and resolver for every
node) gives: the same data, types, line numbers, findings and errors, on the project's
and the shared corpus's YAML files, on hand-written awkward documents and on random ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core.desired.load import _parse_candidate
from reconciler.core.spec import yamldoc

PROJECT = Path(__file__).resolve().parents[1]
CORPUS = PROJECT.parent / "shared" / "corpus"


@contextmanager
def general_path() -> Iterator[None]:
    """Every node through the loader's constructor, every scalar through the resolver."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            yamldoc, "_construct", lambda loader, node, aliased: loader.construct_object(node, True)
        )
        # (_resolve_any is the base loader's resolve, which _Loader's overrides)
        patch.setattr(yamldoc._Loader, "resolve", yamldoc._resolve_any)
        yamldoc._RESOLVED.clear()
        yield


def outcome(function: Any, content: bytes) -> str:
    """What a parse gives, as text that tells types apart (1, 1.0, True, "1")."""
    try:
        return repr(function(content))
    except yamldoc.YamlError as exc:
        return f"YamlError({exc.message!r}, {exc.line!r})"


PARSERS = [yamldoc.parse_environment_yaml, yamldoc.parse_plain_yaml, _parse_candidate]


def assert_same(content: bytes) -> None:
    fast = [outcome(parse, content) for parse in PARSERS]
    fast_again = [outcome(parse, content) for parse in PARSERS]  # tags now remembered
    with general_path():
        general = [outcome(parse, content) for parse in PARSERS]
    assert fast == general, content
    assert fast_again == general, content


def yaml_files() -> list[Path]:
    roots = [PROJECT / "environments", PROJECT / "tests", CORPUS]
    found = [
        path
        for root in roots
        if root.is_dir()
        for path in sorted(root.rglob("*"))
        if path.suffix in (".yml", ".yaml") and path.is_file() and not path.is_symlink()
    ]
    return found


def test_the_project_and_corpus_files_parse_the_same() -> None:
    files = yaml_files()
    assert len(files) > 50  # the project's own environments and hostile cases at least
    for path in files:
        assert_same(path.read_bytes())


AWKWARD = [
    # merge keys, the value key, aliases (also as keys), explicit tags
    "base: &b {image: x, tags: {a: b}}\nname: e\n<<: *b\n",
    "name: e\nbuild:\n  <<: {path: ctx}\n  dockerfile_path: D\n",
    "name: e\ntags:\n  <<: {a: '1'}\n  b: c\n",
    "name: &n e\nimage: *n\ntags: {*n : v}\n",
    "name: e\nimage: i\nconda_file: {channels: [a], dependencies: [&d x, *d]}\n",
    "a: &a [1, *a]\n",
    "=: value key\nname: e\n",
    "name: e\nimage: i\ntags: !!map {a: b}\nx: !!set {a, b}\ny: !!omap [{a: 1}]\n",
    "name: !!str 1.10\nversion: 1.10\nimage: !!binary aGVsbG8=\n",
    "name: e\nimage: i\nconda_file: {dependencies: [python=3.11, {pip: [a==1]}]}\n",
    # scalars of every implicit type, as keys and values
    "1: one\n1.5: x\ntrue: t\n~: n\n2024-01-02: d\n0x1F: h\n0o17: o\n1_000: u\n.nan: nan\n",
    "name: e\nimage: i\nconda_file:\n  channels: [yes, no, on, Null, ~, 1e3, -.inf, 12:30:00]\n",
    "channels: [conda-forge]\ndependencies: [python=3.11, 2024-01-01 10:00:00Z, 3.10]\n",
    # complex keys, empty and odd documents
    "? [a, b]\n: c\nname: e\n",
    "? {a: b}\n: c\n",
    "name: e\ntags:\n  ? [x]\n  : y\n  z: [1]\n",
    "",
    "---\n",
    "just a string\n",
    "- a\n- {b: c}\n",
    "name: e\nname: f\nimage: i\nimage: j\n",
    # errors: bad values, an over-long number, syntax
    "name: e\nimage: i\nconda_file: {channels: [2024-99-99]}\n",
    "name: e\nimage: i\nconda_file: {channels: [" + "9" * 150 + "]}\n",
    "name: e\nimage: [unclosed\n",
    "name: e\nimage: !!python/object:os.system x\n",
    "name: e\n\tbad: tab\n",
]


@pytest.mark.parametrize("text", AWKWARD)
def test_awkward_documents_parse_the_same(text: str) -> None:
    assert_same(text.encode("utf-8"))


scalars = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["1.10", "01", "yes", "No", "~", "null", "1e3", "0x10", "2024-01-02", "12:30", "", "-"]
    ),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, width=32),
    st.booleans(),
    st.none(),
)
keys = st.one_of(
    st.sampled_from(
        ["name", "version", "description", "image", "tags", "build", "conda_file", "path"]
    ),
    st.sampled_from(["channels", "dependencies", "os_type", "datastore", "docker", "1", "<<"]),
    st.text(min_size=1, max_size=8),
    st.integers(0, 20),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=20,
)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.dictionaries(keys, documents, max_size=8),
    flow=st.sampled_from([None, True, False]),
    plain_strings=st.booleans(),
)
def test_random_documents_parse_the_same(
    data: dict[Any, Any], flow: bool, plain_strings: bool
) -> None:
    style = None if plain_strings else "'"
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True, default_style=style)
    assert_same(text.encode("utf-8"))


def test_a_remembered_tag_is_the_resolvers_tag() -> None:
    yamldoc._RESOLVED.clear()  # (bounded: earlier tests of this process may have filled it)
    loader = yamldoc._Loader("")
    # PyYAML's stubs leave resolve unannotated: typed here as the resolver defines it.
    resolve: Callable[[type, str, tuple[bool, bool]], str] = loader.resolve
    try:
        for text in ["1.10", "yes", "x", "", "~", "2024-01-02", "0o17", "1_0", ".inf", "a b"]:
            for implicit in [(True, False), (False, True), (False, False)]:
                expected = yamldoc._resolve_any(loader, yaml.ScalarNode, text, implicit)
                assert resolve(yaml.ScalarNode, text, implicit) == expected
                assert resolve(yaml.ScalarNode, text, implicit) == expected  # remembered
                assert yamldoc._RESOLVED[(text, implicit)] == expected
    finally:
        loader.dispose()
