"""The pieces of the long-running reconcilers: durations, backoff, the line format, and
the in-memory registry state (which must answer exactly as a fresh read)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.adapters.cache import KeptState
from reconciler.adapters.sqlite_registry import SqliteRegistry
from reconciler.core.loop.reconcile_pass import CycleResult, Outcome
from reconciler.core.spec.model import RegistryState, VersionWrite
from reconciler.render.cycle import format_cycle
from reconciler.watch.control import Backoff, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("500ms", 0.5), ("90", 90)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10x", "m10", "0s", "-5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(base=1.0, cap=5.0)
    delays = [backoff.next_delay() for _ in range(5)]
    for delay, expected in zip(delays, [1, 2, 4, 5, 5], strict=True):
        assert expected * 0.9 <= delay <= min(5.0, expected * 1.1)
    backoff.reset()
    assert backoff.next_delay() <= 1.1


def test_lines() -> None:
    started = datetime(2024, 1, 1, 12, 0, 1, tzinfo=UTC)
    applied = CycleResult(
        3, "2 file events", started, 0.042, Outcome.APPLIED, applied=("a:2 new_version",)
    )
    assert format_cycle(applied).endswith(
        "reconcile 3 (2 file events): applied 1 (a:2 new_version) in 42 ms"
    )
    invalid = CycleResult(
        4, "1 file event", started, 0.01, Outcome.INVALID, errors=("environments/a.yml:3 bad",)
    )
    assert "invalid: 1 error(s), registry left as is: environments/a.yml:3 bad" in format_cycle(
        invalid
    )
    many = CycleResult(5, "start", started, 0.5, Outcome.APPLIED, applied=tuple("abcde"))
    assert "applied 5 (a, b, c, +2 more)" in format_cycle(many)
    assert invalid.status == "error" and applied.status == "applied"


def write(description: str, image: str = "busybox:1.36") -> VersionWrite:
    content = {"image": image}
    return VersionWrite(content, "", description, {"team": "x"})


def view(state: RegistryState) -> dict[str, object]:
    return {
        name: (
            c.archived,
            [(v.version, v.digest, v.description, dict(v.tags), v.archived) for v in c.versions],
        )
        for name, c in state.containers.items()
    }


def test_kept_state_answers_as_a_fresh_read(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    kept = KeptState(SqliteRegistry(db))
    other = SqliteRegistry(db)  # another writer on the same registry
    kept.put_version("a", "1", write("one"))
    first = kept.read_state()
    assert kept.read_state() is first  # nothing changed: answered from memory
    with kept.batch():
        kept.put_version("a", "1", write("two"))  # metadata in place
        kept.put_version("a", "2", write("two", "busybox:1.37"))  # a new version
        kept.put_version("b", "1", write("new"))  # a new container
    patched = kept.read_state()
    assert view(patched) == view(other.read_state())
    assert patched.token == other.state_token()

    other.put_version("a", "3", write("by hand", "busybox:1.38"))  # not through `kept`
    after = kept.read_state()
    assert after is not patched and [v.version for v in after.containers["a"].versions] == [
        "1",
        "2",
        "3",
    ]
    with pytest.raises(RuntimeError), kept.batch():
        kept.put_version("c", "1", write("rolled back"))
        raise RuntimeError("interrupted")
    assert "c" not in kept.read_state().containers
    assert view(kept.read_state()) == view(other.read_state())
    kept.set_container_archived("b", True)
    assert kept.read_state().containers["b"].archived
    kept.close()
    other.close()
