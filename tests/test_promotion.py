"""Targets and the promotion gate on plain data, and `[targets]` in reconciler.toml."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from reconciler.core.promotion.gate import (
    Deferral,
    Landed,
    Target,
    TargetError,
    Upstream,
    Wait,
    check,
    gate_order,
)
from reconciler.core.promotion.status import Cell, CellState, TargetView, matrix
from reconciler.settings import Settings, SettingsError, load_settings

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _targets(**after: tuple[str, ...]) -> dict[str, Target]:
    return {name: Target(name, f"sqlite:///{name}.db", deps) for name, deps in after.items()}


def test_gate_order_puts_every_target_after_the_ones_it_waits_for() -> None:
    targets = _targets(prod=("test",), test=("dev",), dev=(), sandbox=())
    order = gate_order(targets)
    assert order.index("dev") < order.index("test") < order.index("prod")
    # ties keep the order of declaration
    assert order == ("dev", "sandbox", "test", "prod")


def test_gate_order_refuses_a_cycle_and_names_it() -> None:
    with pytest.raises(TargetError, match=r"cycle \((a -> b -> a|b -> a -> b)\)"):
        gate_order(_targets(a=("b",), b=("a",), c=()))


def test_gate_order_refuses_an_unknown_target_naming_the_key() -> None:
    with pytest.raises(TargetError, match=r"\[targets.prod\] after: unknown target 'stage'"):
        gate_order(_targets(prod=("stage",), dev=()))


def test_target_selects_by_include_and_exclude_globs() -> None:
    target = Target("prod", "sqlite:///p.db", include=("serving-*",), exclude=("*-test",))
    assert target.selects("serving-cpu")
    assert not target.selects("training-gpu")
    assert not target.selects("serving-test")
    assert Target("dev", "sqlite:///d.db").selects("anything")


def _dev(*landed: Landed, builds: bool = False, reachable: bool = True) -> Upstream:
    return Upstream("dev", {"ml": landed}, builds_configured=builds, reachable=reachable)


def _v(version: str, digest: str, **kw: Any) -> Landed:
    landed = Landed(
        version, digest, managed=True, archived=False, created_at=NOW - timedelta(days=3)
    )
    return replace(landed, **kw)


def test_content_registered_upstream_passes_and_keeps_its_version() -> None:
    gate = check("ml", "d2", [_dev(_v("1", "d1"), _v("2", "d2"))], None, NOW)
    assert gate.passed
    assert gate.source == ("dev", "2")
    assert gate.promoted_from("ml") == "dev:ml:2"


@pytest.mark.parametrize(
    ("upstream", "wait", "text"),
    [
        (_dev(_v("1", "d1")), Wait.NOT_REGISTERED, "waiting for dev: not registered"),
        (_dev(_v("2", "d2", managed=False)), Wait.NOT_REGISTERED, "waiting for dev: not regis"),
        (_dev(_v("2", "d2", archived=True)), Wait.ARCHIVED, "waiting for dev: archived"),
        (
            _dev(_v("2", "d2", build="failed"), builds=True),
            Wait.BUILD_FAILED,
            "waiting for dev: build failed",
        ),
        (
            _dev(_v("2", "d2", build="building"), builds=True),
            Wait.NOT_BUILT,
            "waiting for dev: not built yet",
        ),
        (_dev(_v("2", "d2"), reachable=False), Wait.UNREACHABLE, "waiting for dev: its registry"),
    ],
)
def test_content_not_ready_upstream_is_deferred_with_the_reason(
    upstream: Upstream, wait: Wait, text: str
) -> None:
    gate = check("ml", "d2", [upstream], None, NOW)
    assert not gate.passed
    assert gate.source is None
    (deferral,) = gate.deferrals
    assert deferral.wait is wait
    assert deferral.text.startswith(text)


def test_a_failed_build_does_not_hold_when_builds_are_not_configured() -> None:
    assert check("ml", "d2", [_dev(_v("2", "d2", build="failed"))], None, NOW).passed


def test_soak_holds_until_the_content_has_lived_upstream_long_enough() -> None:
    landed = _v("2", "d2", created_at=NOW - timedelta(hours=2))
    gate = check("ml", "d2", [_dev(landed)], timedelta(hours=24), NOW)
    (deferral,) = gate.deferrals
    assert deferral == Deferral("dev", Wait.SOAKING, NOW + timedelta(hours=22))
    assert deferral.text == "soaking in dev until 2026-12-02T08:00Z"
    later = NOW + timedelta(hours=22, seconds=1)
    assert check("ml", "d2", [_dev(landed)], timedelta(hours=24), later).passed


def test_soak_counts_from_the_oldest_active_registration() -> None:
    old = _v("2", "d2", created_at=NOW - timedelta(days=2))
    new = _v("5", "d2", created_at=NOW - timedelta(minutes=5))
    gate = check("ml", "d2", [_dev(old, new)], timedelta(hours=24), NOW)
    assert gate.passed
    assert gate.source == ("dev", "2")


def test_every_upstream_must_hold_the_content() -> None:
    dev = _dev(_v("2", "d2"))
    test = Upstream("test", {"ml": ()})
    gate = check("ml", "d2", [dev, test], None, NOW)
    assert [d.text for d in gate.deferrals] == ["waiting for test: not registered"]


def test_an_upstream_that_does_not_hold_the_environment_defers_it() -> None:
    upstream = Upstream("dev", {}, selects=frozenset({"other"}))
    (deferral,) = check("ml", "d2", [upstream], None, NOW).deferrals
    assert deferral.wait is Wait.NOT_SELECTED


def _settings(tmp_path: Path, text: str) -> Settings:
    (tmp_path / "reconciler.toml").write_text(text)
    return load_settings(tmp_path, {}, environ={})


def test_targets_load_from_reconciler_toml_with_overrides(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        """
image_registry = "127.0.0.1:5000/top"
archive_limit_count = 4

[targets.dev]
registry = "sqlite:///dev.db"

[targets.prod]
registry = "sqlite:///prod.db"
after = ["dev"]
soak = "24h"
stage = "Production"
include = ["serving-*"]
archive_limit_count = 2
""",
    )
    targets = settings.targets
    assert list(targets) == ["dev", "prod"]
    prod = targets["prod"]
    assert prod.after == ("dev",)
    assert prod.soak == timedelta(hours=24)
    assert prod.stage == "Production"
    assert prod.include == ("serving-*",)
    as_prod = settings.for_target("prod")
    assert as_prod.registry == "sqlite:///prod.db"
    assert as_prod.archive_limit_count == 2
    assert as_prod.image_registry == "127.0.0.1:5000/top"  # inherited
    as_dev = settings.for_target("dev")
    assert as_dev.archive_limit_count == 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[targets.dev]\nregistry = "sqlite:///d.db"\nfoo = 1\n',
            r"\[targets.dev\]: unknown key `foo`",
        ),
        ('[targets.dev]\nregistry = "sqlite:///d.db"\npath = "x"\n', r"unknown key `path`"),
        ("[targets.dev]\nafter = []\n", r"\[targets.dev\]: `registry` is required"),
        (
            '[targets.a]\nregistry = "sqlite:///a.db"\nafter = ["b"]\n'
            '[targets.b]\nregistry = "sqlite:///b.db"\nafter = ["a"]\n',
            r"cycle",
        ),
        (
            '[targets.prod]\nregistry = "sqlite:///p.db"\nafter = ["dev"]\n',
            r"\[targets.prod\] after: unknown target 'dev'",
        ),
        ('[targets.dev]\nregistry = "sqlite:///d.db"\nsoak = "soon"\n', r"soak: 'soon' is not"),
        (
            '[targets.dev]\nregistry = "sqlite:///d.db"\narchive_limit_count = "x"\n',
            r"\[targets.dev\]: `archive_limit_count`",
        ),
    ],
)
def test_bad_targets_are_errors_naming_the_file_and_key(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as raised:
        _settings(tmp_path, body)
    assert "reconciler.toml" in str(raised.value)


def test_no_targets_table_means_no_targets(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 'registry = "sqlite:///one.db"\n')
    assert settings.targets == {}


def _view(name: str, **kw: Any) -> TargetView:
    return replace(TargetView(name, selected=frozenset({"ml", "serve"})), **kw)


def test_status_matrix_shows_each_target_and_the_most_urgent_state() -> None:
    dev = _view(
        "dev",
        versions={"ml": "3", "serve": "1"},
        build_failed={"serve": "build failed"},
        drift={"serve": "out_of_band"},
    )
    prod = _view(
        "prod",
        selected=frozenset({"serve"}),
        versions={"ml": "2", "serve": "1"},
        deferred={"serve": "waiting for dev: build failed"},
    )
    found = matrix([dev, prod])
    assert found.targets == ("dev", "prod")
    assert found.rows["ml"]["dev"] == Cell(CellState.IN_SYNC, "3")
    assert found.rows["ml"]["prod"].state is CellState.NOT_IN_TARGET
    assert found.rows["serve"]["dev"] == Cell(CellState.BUILD_FAILED, "1", "build failed")
    assert found.rows["serve"]["prod"].detail == "waiting for dev: build failed"
    assert not found.in_sync
    assert found.counts()["dev"]["build_failed"] == 1


def test_status_document_matches_its_schema() -> None:
    import json

    import jsonschema

    from reconciler.core.promotion.status import status_document

    down = _view("prod", reachable=False, error="connection refused")
    doc = status_document(matrix([_view("dev", versions={"ml": "1"}), down]), {"dev": "x"})
    schema = json.loads(
        (Path(__file__).parent.parent / "reconciler/schemas/status.schema.json").read_text()
    )
    jsonschema.validate(doc, schema)
    # (the document is JSON: its rows are typed as the schema just checked describes them)
    row = cast(list[dict[str, Any]], doc["environments"])[0]
    assert row["targets"]["prod"] == {
        "state": "unknown",
        "version": None,
        "detail": "connection refused",
    }
    assert doc["in_sync"] is False
