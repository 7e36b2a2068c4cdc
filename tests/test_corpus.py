"""Every environment file of the shared corpus of real Azure ML repositories.

The corpus (``../shared/corpus`` next to this project) holds one folder per repository
root and a MANIFEST.tsv whose ``expect`` column says what reconciler must do with each
environment file: ``valid`` files load and plan, ``invalid: ...`` files (the SDK rejects
them) and ``service-invalid: ...`` files (the service's rules reject them) each yield
error diagnostics that name the file and a rule.
"""

from __future__ import annotations

import csv
import os
import posixpath
import re
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.adapters.gitsource import DirectorySnapshot
from reconciler.core.desired.load import load_desired
from reconciler.core.desired.selection import Selection
from reconciler.core.desired.types import DesiredState, LoadMemo
from reconciler.core.plan.planner import make_plan
from reconciler.core.plan.types import Action
from reconciler.core.spec.diagnostics import Diagnostic, Severity
from reconciler.core.spec.model import RegistryState

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
MANIFEST = CORPUS / "MANIFEST.tsv"
COLUMNS = [
    "repo",
    "commit",
    "path",
    "kind",
    "azure_ai_ml_verdict",
    "corpus_path",
    "note",
    "expect",
]

VALID = "valid"
INVALID = "invalid"
SERVICE_INVALID = "service-invalid"

# Rules for what the SDK accepts but the service refuses (see reconciler/core/spec.py and
# reconciler/core/desired.py).
SERVICE_RULES = frozenset(
    {
        "dockerfile-missing",
        "dockerfile-too-large",
        "reserved-name",
        "name-pattern",
        "conda-with-build",
    }
)
# Rules about a conda file that reconciler may report at the conda file's own path.
CONDA_FILE_RULES = frozenset({"conda-file"})
# Rules for a file or directory the environment points at that cannot be used.
PATH_RULES = frozenset(
    {"conda-file-missing", "path-absolute", "path-escape", "symlink-escape", "symlink-loop"}
)

# The SDK's message (the manifest's `expect` after "invalid: ") -> the rules reconciler
# must report for it: each entry is a set of alternatives, one of which must be among the
# file's error rules. Every message must match at least one pattern.
INVALID_RULES: list[tuple[re.Pattern[str], frozenset[str]]] = [
    (re.compile(r"(?:^|[:;] )docker: Unknown field"), frozenset({"legacy-docker"})),
    (re.compile(r"(?:^|[:;] )path: Unknown field"), frozenset({"legacy-path"})),
    (re.compile(r"(?:^|[:;] )conda: Unknown field"), frozenset({"legacy-conda"})),
    (re.compile(r"build\.local_path: Unknown field"), frozenset({"legacy-build-local-path"})),
    (re.compile(r"Error while parsing yaml file"), frozenset({"yaml-syntax"})),
    (re.compile(r"No such file or directory: \S*/file:"), frozenset({"legacy-file-prefix"})),
    (re.compile(r"No such file or directory: (?!\S*/file:)"), PATH_RULES),
    (re.compile(r"(?:^|[:;] )name: Missing data for required field"), frozenset({"schema"})),
    (
        re.compile(r"build\.path\._schema: Can't find directory"),
        frozenset({"build-context-missing"}),
    ),
    (re.compile(r"Docker image or Dockerfile is required"), frozenset({"image-or-build"})),
]
# The manifest's `expect` after "service-invalid: " -> the service rule it names.
SERVICE_INVALID_RULES: list[tuple[re.Pattern[str], frozenset[str]]] = [
    (re.compile(r"no Dockerfile", re.IGNORECASE), frozenset({"dockerfile-missing"})),
    (
        re.compile(r"Dockerfile.*(large|size|MB)", re.IGNORECASE),
        frozenset({"dockerfile-too-large"}),
    ),
    (re.compile(r"reserved", re.IGNORECASE), frozenset({"reserved-name"})),
    (re.compile(r"name pattern|name .*pattern", re.IGNORECASE), frozenset({"name-pattern"})),
    (re.compile(r"conda.*build|build.*conda", re.IGNORECASE), frozenset({"conda-with-build"})),
]


def _ci() -> bool:
    return bool(os.environ.get("CI"))


@dataclass(frozen=True)
class Row:
    repo: str
    commit: str
    path: str
    kind: str
    verdict: str
    corpus_path: str
    note: str
    expect: str

    @property
    def top(self) -> str:
        return self.corpus_path.split("/", 1)[0]

    @property
    def relpath(self) -> str:
        """The file's path inside its repository root folder."""
        return self.corpus_path.split("/", 1)[1]

    @property
    def category(self) -> str | None:
        if self.expect == VALID:
            return VALID
        if self.expect.startswith(SERVICE_INVALID):
            return SERVICE_INVALID
        if self.expect.startswith(INVALID):
            return INVALID
        return None


def _read_manifest() -> list[Row]:
    if not MANIFEST.is_file():
        return []
    with MANIFEST.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        assert header == COLUMNS, f"unexpected MANIFEST.tsv header: {header}"
        rows = []
        for number, fields in enumerate(reader, start=2):
            assert len(fields) == len(COLUMNS), f"MANIFEST.tsv line {number}: {fields}"
            rows.append(Row(*fields))
    return rows


ENVIRONMENT_ROWS = [row for row in _read_manifest() if row.kind == "environment"]

_SNAPSHOTS: dict[str, DirectorySnapshot] = {}
_MEMO = LoadMemo()


def _require_corpus() -> None:
    if MANIFEST.is_file():
        return
    message = f"the shared corpus is missing: no {MANIFEST}"
    if _ci():
        pytest.fail(message)
    pytest.skip(message)


def _snapshot(top: str) -> DirectorySnapshot:
    snapshot = _SNAPSHOTS.get(top)
    if snapshot is None:
        snapshot = _SNAPSHOTS[top] = DirectorySnapshot(CORPUS / top)
    return snapshot


def _show(diagnostics: list[Diagnostic]) -> str:
    if not diagnostics:
        return "  (no diagnostics)"
    return "\n".join(
        f"  {d.severity.value} {d.rule} at {d.location() or '-'}: {d.message}" for d in diagnostics
    )


def _errors(state: DesiredState) -> list[Diagnostic]:
    return [d for d in state.diagnostics if d.severity is Severity.ERROR]


def _document(row: Row) -> Any:
    try:
        return yaml.safe_load((CORPUS / row.corpus_path).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None


def _referenced_conda_file(row: Row) -> str | None:
    """The repository path of the conda file the environment file names, if any."""
    document = _document(row)
    ref = document.get("conda_file") if isinstance(document, dict) else None
    if not isinstance(ref, str):
        return None
    ref = ref.removeprefix("file:")
    return posixpath.normpath(posixpath.join(posixpath.dirname(row.relpath), ref))


def _expected_rules(row: Row) -> list[frozenset[str]]:
    """For an invalid row: sets of alternative rules, one of each must be reported."""
    reason = row.expect.split(":", 1)[1].strip() if ":" in row.expect else ""
    table = SERVICE_INVALID_RULES if row.category == SERVICE_INVALID else INVALID_RULES
    wanted = [rules for pattern, rules in table if pattern.search(reason)]
    if not wanted:
        pytest.fail(f"no rule mapping for expect {row.expect!r}: extend the tables in {__file__}")
    if row.category == INVALID and "No such file or directory" in reason:
        document = _document(row)
        if isinstance(document, dict) and "image" not in document and "build" not in document:
            # The file also lacks `image`/`build`: reconciler reports that first and does
            # not resolve paths of an environment that cannot load anyway.
            wanted = [rules | {"image-or-build"} for rules in wanted]
    return wanted


def _load(row: Row) -> DesiredState:
    snapshot = _snapshot(row.top)
    try:
        return load_desired(snapshot, Selection(path=""), _MEMO, only=[row.relpath])
    except Exception:
        pytest.fail(f"load_desired raised on {row.corpus_path}:\n{traceback.format_exc()}")


# Rows where reconciler deliberately disagrees with the manifest, with the rule it reports.
# The manifest's offline SDK check passed these; the service could not build them.
KNOWN_DISAGREEMENTS = {
    # `build.path: ./env_nemo.yml` names the YAML file itself, not a directory with a
    # Dockerfile (the same file at commit 12615856848d says `./env_nemo`).
    "NVIDIA__NVIDIA_AI_Enterprise_AzureML@df33146a8be6/src/environments/NeMo/env_nemo.yml": (
        "build-context-missing"
    ),
}
DISAGREED = "disagreed"


def check_row(row: Row) -> str:
    """Check one environment row against its expectation; return its category."""
    category = row.category
    if category is None:
        pytest.fail(f"unknown expect {row.expect!r} for {row.corpus_path}")
    state = _load(row)
    errors = _errors(state)
    shown = _show(state.diagnostics)
    if row.corpus_path in KNOWN_DISAGREEMENTS:
        rule = KNOWN_DISAGREEMENTS[row.corpus_path]
        assert rule in {d.rule for d in errors}, f"{row.corpus_path}: expected {rule}:\n{shown}"
        assert all(d.path == row.relpath for d in errors), shown
        return DISAGREED

    if category == VALID:
        assert not state.has_errors, f"{row.corpus_path} is valid but was rejected:\n{shown}"
        assert len(state.environments) == 1, (
            f"{row.corpus_path}: expected one environment, got {sorted(state.environments)}\n"
            f"{shown}"
        )
        try:
            plan = make_plan(state, RegistryState({}), Selection(path=""))
        except Exception:
            pytest.fail(f"make_plan raised on {row.corpus_path}:\n{traceback.format_exc()}")
        assert not plan.has_errors, (
            f"{row.corpus_path}: plan has errors:\n{_show(list(plan.diagnostics))}"
        )
        assert len(plan.changes) == 1, f"{row.corpus_path}: changes {plan.changes}"
        change = plan.changes[0]
        assert change.action is Action.CREATE, change
        assert change.source_path == row.relpath, change
        assert change.write is not None, change
        assert change.write.digest.startswith("sha256:"), change.write.digest
        return category

    # invalid or service-invalid
    assert errors, f"{row.corpus_path} ({row.expect}) was accepted:\n{shown}"
    assert not state.environments, (
        f"{row.corpus_path} ({row.expect}) loaded environments {sorted(state.environments)}"
    )
    conda_file = _referenced_conda_file(row)
    for d in errors:
        assert d.rule, f"{row.corpus_path}: an error without a rule:\n{shown}"
        assert d.message, f"{row.corpus_path}: an error without a message:\n{shown}"
        if d.path == row.relpath:
            continue
        assert d.rule in CONDA_FILE_RULES and d.path is not None and d.path == conda_file, (
            f"{row.corpus_path}: an error names {d.path!r}, neither the file nor its conda "
            f"file:\n{shown}"
        )
    rules = {d.rule for d in errors}
    if category == SERVICE_INVALID:
        assert rules <= SERVICE_RULES, (
            f"{row.corpus_path} ({row.expect}): the SDK accepts it, so only service rules "
            f"{sorted(SERVICE_RULES)} may fire, got {sorted(rules)}:\n{shown}"
        )
    for alternatives in _expected_rules(row):
        assert rules & alternatives, (
            f"{row.corpus_path} ({row.expect}): expected one of {sorted(alternatives)}, "
            f"got {sorted(rules)}:\n{shown}"
        )
    return category


@pytest.mark.parametrize("row", ENVIRONMENT_ROWS, ids=[row.corpus_path for row in ENVIRONMENT_ROWS])
def test_corpus_environment(row: Row) -> None:
    _require_corpus()
    check_row(row)


def test_corpus_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs every row again (cheap: parses are memoised) and reports the tally."""
    _require_corpus()
    manifest = Counter(row.category for row in ENVIRONMENT_ROWS)
    passed: Counter[str | None] = Counter()
    failures: list[str] = []
    for row in ENVIRONMENT_ROWS:
        try:
            passed[check_row(row)] += 1
        except (AssertionError, pytest.fail.Exception) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            failures.append(f"{row.corpus_path}: {first}")
    tally = (
        f"corpus: {passed[VALID]} valid loaded and planned, {passed[INVALID]} invalid "
        f"diagnosed, {passed[SERVICE_INVALID]} service-invalid diagnosed "
        f"(manifest: {manifest[VALID]} valid, {manifest[INVALID]} invalid, "
        f"{manifest[SERVICE_INVALID]} service-invalid; {passed[DISAGREED]} known "
        f"disagreement(s) rejected on purpose; {len(failures)} failing)"
    )
    with capsys.disabled():
        print(f"\n{tally}")
    assert ENVIRONMENT_ROWS, "MANIFEST.tsv lists no environment files"
    assert manifest[None] == 0, "rows with an unknown expect value"
    assert passed[VALID] + passed[DISAGREED] == manifest[VALID], tally + "\n" + "\n".join(failures)
    assert passed[INVALID] == manifest[INVALID], tally + "\n" + "\n".join(failures)
    assert passed[SERVICE_INVALID] == manifest[SERVICE_INVALID], tally + "\n" + "\n".join(failures)
