"""A cold read does its work at once: many files are parsed in worker processes while
the registry is read in a thread.

For a working tree or a plain directory the workers read the files themselves; a ref's
blobs are read here and shipped. Either way the records are those of a parse in one
process, in order, and a file that cannot be read fails with the error one process would
give."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.gitsource import DirectorySnapshot, GitSource
from reconciler.core.desired.load import load_desired, serial_parse
from reconciler.core.desired.selection import Selection
from reconciler.core.desired.types import LoadMemo
from reconciler.core.spec.yamldoc import MAX_FILE_BYTES
from reconciler.engine import read as read_verb
from reconciler.ports import FileEntry, Snapshot, SourceError
from tests.conftest import CONDA, GitRepo, conda_env

COUNT = 30  # environments, two files each


@pytest.fixture
def many(repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> GitRepo:
    # two workers and small ranges, so that every worker takes several
    monkeypatch.setattr(read_verb, "PARALLEL_PARSE_MIN", 10)
    monkeypatch.setattr(read_verb, "PARSE_CHUNK", 7)
    monkeypatch.setattr(read_verb, "_workers", lambda: 2)
    for i in range(COUNT):
        repo.write(f"environments/e{i:02d}/env.yml", conda_env(f"e{i:02d}"))
        repo.write(f"environments/e{i:02d}/conda.yml", CONDA.replace("3.11", f"3.{i}"))
    repo.commit("many")
    return repo


def probe(content: bytes) -> dict[str, Any]:
    """A parser that says which process read what (forked, so never pickled)."""
    return {"pid": os.getpid(), "text": content.decode()}


def candidates(snapshot: Snapshot) -> list[FileEntry]:
    selection = Selection()
    return [e for e in snapshot.files_under(selection.root) if selection.matches(e.path)]


def test_workers_read_a_working_tree_and_answer_in_order(many: GitRepo) -> None:
    snapshot = GitSource(many.root).snapshot(None)
    entries = candidates(snapshot)
    assert len(entries) == 2 * COUNT
    records = list(read_verb.parse_files(probe, snapshot, entries))
    assert [r["text"] for r in records] == [(many.root / e.path).read_text() for e in entries]
    assert os.getpid() not in {r["pid"] for r in records}


def test_workers_read_a_plain_directory(many: GitRepo, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(many.root / "environments", plain / "environments")
    snapshot = DirectorySnapshot(plain)
    entries = candidates(snapshot)
    records = list(read_verb.parse_files(probe, snapshot, entries))
    assert [r["text"] for r in records] == [(plain / e.path).read_text() for e in entries]
    assert os.getpid() not in {r["pid"] for r in records}


def test_a_ref_is_read_here_and_parsed_in_workers(many: GitRepo) -> None:
    committed = (many.root / "environments/e03/conda.yml").read_text()
    many.write("environments/e03/conda.yml", "edited in the working tree\n")
    snapshot = GitSource(many.root).snapshot("HEAD")
    entries = candidates(snapshot)
    records = list(read_verb.parse_files(probe, snapshot, entries))
    by_path = {e.path: r["text"] for e, r in zip(entries, records, strict=True)}
    assert by_path["environments/e03/conda.yml"] == committed
    assert os.getpid() not in {r["pid"] for r in records}


def test_an_oversized_file_of_a_ref_is_refused_as_in_one_process(many: GitRepo) -> None:
    many.write("environments/big.yml", "# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    many.commit("big")
    snapshot = GitSource(many.root).snapshot("HEAD")
    entries = candidates(snapshot)
    from reconciler.core.desired.load import _parse_candidate

    alone = list(serial_parse(_parse_candidate, snapshot, entries))
    snapshot = GitSource(many.root).snapshot("HEAD")
    assert list(read_verb.parse_files(_parse_candidate, snapshot, entries)) == alone
    big = alone[[e.path for e in entries].index("environments/big.yml")]
    assert big["kind"] == "invalid" and "the limit is" in big["diags"][0]["message"]


def test_the_desired_state_is_that_of_one_process(many: GitRepo) -> None:
    many.write("environments/broken.yml", "name: [unclosed\n")  # untracked, invalid
    source = GitSource(many.root)
    alone = load_desired(source.snapshot(None), Selection(), LoadMemo())
    memo = LoadMemo()
    parallel = load_desired(source.snapshot(None), Selection(), memo, mapper=read_verb.parse_files)
    assert parallel.environments == alone.environments
    assert len(parallel.environments) == COUNT
    assert parallel.diagnostics == alone.diagnostics
    assert any(d.path == "environments/broken.yml" for d in parallel.diagnostics)
    assert memo.changed and len(memo.parsed) == 2 * COUNT + 1


@pytest.mark.parametrize("how", ["removed", "replaced by a directory"])
def test_a_file_unreadable_after_listing_fails_as_in_one_process(many: GitRepo, how: str) -> None:
    snapshot = GitSource(many.root).snapshot(None)
    entries = candidates(snapshot)  # listed now; the file goes before it is read
    victim = many.root / "environments/e17/env.yml"
    victim.unlink()
    if how == "replaced by a directory":
        victim.mkdir()
    with pytest.raises(SourceError) as alone:
        list(serial_parse(probe, snapshot, entries))
    with pytest.raises(SourceError) as parallel:
        list(read_verb.parse_files(probe, snapshot, entries))
    assert str(parallel.value) == str(alone.value)
    assert str(alone.value).startswith("cannot read environments/e17/env.yml: ")


def test_alongside_runs_both_at_once_and_returns_both() -> None:
    ready = threading.Event()

    def first() -> str:
        # only returns once the second has started: both run at the same time
        assert ready.wait(timeout=30), "the second was not running meanwhile"
        return "desired"

    def second() -> str:
        ready.set()
        return "registry"

    assert read_verb.alongside(first, second) == ("desired", "registry")


def test_alongside_reports_the_first_error_then_the_second() -> None:
    def broken(what: str) -> Any:
        raise SourceError(what)

    with pytest.raises(SourceError, match="git"):
        read_verb.alongside(lambda: broken("git"), lambda: broken("registry"))
    with pytest.raises(SourceError, match="registry"):
        read_verb.alongside(lambda: "desired", lambda: broken("registry"))


def test_a_conda_file_parsed_later_is_awaited_not_parsed_again(
    many: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "environments/a.yml" comes first, its conda file last: resolving it waits for that
    # file's record from the workers instead of parsing the file a second time here.
    many.write("environments/a.yml", conda_env("a", "zz/conda.yml"))
    many.write("environments/zz/conda.yml", CONDA)
    source = GitSource(many.root)
    alone = load_desired(source.snapshot(None), Selection(), LoadMemo())
    from reconciler.core.spec import yamldoc

    def refuse(content: bytes) -> None:
        raise AssertionError("a conda file was parsed a second time")

    monkeypatch.setattr(yamldoc, "parse_plain_yaml", refuse)
    memo = LoadMemo()
    parallel = load_desired(source.snapshot(None), Selection(), memo, mapper=read_verb.parse_files)
    assert parallel.environments == alone.environments
    assert parallel.environments["a"].conda_path == "environments/zz/conda.yml"
    assert parallel.diagnostics == alone.diagnostics
