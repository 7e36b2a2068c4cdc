"""The promotion matrix: environments as rows, targets as columns, each cell the version
a target holds and where it stands. Pure: built from what each target's plan, drift and
build records already say."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

STATUS_FORMAT_VERSION = 1


class CellState(StrEnum):
    IN_SYNC = "in_sync"
    PENDING = "pending"
    DEFERRED = "deferred"
    DRIFT = "drift"
    BUILD_FAILED = "build_failed"
    NOT_IN_TARGET = "not_in_target"
    UNKNOWN = "unknown"  # the target's registry could not be read


# Which state a cell shows when several hold: the one that needs attention first.
_PRECEDENCE = (
    CellState.UNKNOWN,
    CellState.BUILD_FAILED,
    CellState.DRIFT,
    CellState.DEFERRED,
    CellState.PENDING,
    CellState.IN_SYNC,
    CellState.NOT_IN_TARGET,
)


@dataclass(frozen=True, slots=True)
class Cell:
    state: CellState
    version: str | None = None  # the newest version the target holds
    detail: str = ""  # e.g. the pending version, or what a deferred change waits for


@dataclass(frozen=True, slots=True)
class TargetView:
    """One target's facts, per environment name (from its plan and drift report)."""

    name: str
    selected: frozenset[str]  # environments this target holds (its include/exclude)
    versions: Mapping[str, str] = field(default_factory=dict)  # newest active version
    pending: Mapping[str, str] = field(default_factory=dict)  # e.g. "new_version ml:3"
    deferred: Mapping[str, str] = field(default_factory=dict)  # what it waits for
    drift: Mapping[str, str] = field(default_factory=dict)  # drift classes
    build_failed: Mapping[str, str] = field(default_factory=dict)
    reachable: bool = True
    error: str = ""


@dataclass(frozen=True, slots=True)
class Matrix:
    targets: tuple[str, ...]
    rows: Mapping[str, Mapping[str, Cell]]  # environment -> target -> cell

    @property
    def in_sync(self) -> bool:
        return all(
            cell.state in (CellState.IN_SYNC, CellState.NOT_IN_TARGET)
            for row in self.rows.values()
            for cell in row.values()
        )

    @property
    def has_unknown(self) -> bool:
        return any(c.state is CellState.UNKNOWN for row in self.rows.values() for c in row.values())

    def counts(self) -> dict[str, dict[str, int]]:
        """Per target, how many environments are in each state."""
        out: dict[str, dict[str, int]] = {t: {s.value: 0 for s in CellState} for t in self.targets}
        for row in self.rows.values():
            for target, cell in row.items():
                out[target][cell.state.value] += 1
        return out


def cell(view: TargetView, name: str) -> Cell:
    version = view.versions.get(name)
    if not view.reachable:
        return Cell(CellState.UNKNOWN, None, view.error or "registry could not be read")
    found: list[Cell] = []
    if name in view.build_failed:
        found.append(Cell(CellState.BUILD_FAILED, version, view.build_failed[name]))
    if name in view.drift:
        found.append(Cell(CellState.DRIFT, version, view.drift[name]))
    if name in view.deferred:
        found.append(Cell(CellState.DEFERRED, version, view.deferred[name]))
    if name in view.pending:
        found.append(Cell(CellState.PENDING, version, view.pending[name]))
    if name not in view.selected:
        found.append(Cell(CellState.NOT_IN_TARGET, version))
    elif not found:
        found.append(Cell(CellState.IN_SYNC, version))
    return min(found, key=lambda c: _PRECEDENCE.index(c.state))


def matrix(views: Sequence[TargetView]) -> Matrix:
    """Rows for every environment any target selects or holds, in name order."""
    names: set[str] = set()
    for view in views:
        names |= view.selected | set(view.versions)
    rows = {name: {view.name: cell(view, name) for view in views} for name in sorted(names)}
    return Matrix(tuple(view.name for view in views), rows)


def status_document(matrix_: Matrix, registries: Mapping[str, str]) -> dict[str, object]:
    """The `status --json` document (schema: schemas/status.schema.json)."""
    return {
        "format_version": STATUS_FORMAT_VERSION,
        "in_sync": matrix_.in_sync,
        "targets": [
            {"name": t, "registry": registries.get(t, ""), "counts": matrix_.counts()[t]}
            for t in matrix_.targets
        ],
        "environments": [
            {
                "name": name,
                "targets": {
                    t: {"state": c.state.value, "version": c.version, "detail": c.detail}
                    for t, c in row.items()
                },
            }
            for name, row in matrix_.rows.items()
        ],
    }
