"""A long-running reconciler keeps the parse memo in memory and writes it to disk only
between reconciles, when it is due: never inside a reconcile someone is waiting for."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.adapters import cache as cache_module
from reconciler.adapters.cache import DiskCache, KeptCache


def test_the_kept_parse_memo_is_written_when_idle_and_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "cache"
    kept = KeptCache(DiskCache(directory))
    memo = kept.load_memo()
    memo.parsed["blob-a"] = {"kind": "invalid", "diags": []}
    memo.changed = True

    monkeypatch.setattr(cache_module, "MEMO_SAVE_SECONDS", 0.0)
    kept.save_memo(memo)  # what a reconcile calls: nothing is written then
    assert DiskCache(directory).load_memo().parsed == {}

    monkeypatch.setattr(cache_module, "MEMO_SAVE_SECONDS", 3600.0)
    kept.flush_due()  # idle, but written a moment ago (at start): not yet
    assert DiskCache(directory).load_memo().parsed == {}

    monkeypatch.setattr(cache_module, "MEMO_SAVE_SECONDS", 0.0)
    kept.flush_due()
    assert DiskCache(directory).load_memo().parsed == {"blob-a": memo.parsed["blob-a"]}
    assert not memo.changed


def test_closing_writes_what_is_kept(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    kept = KeptCache(DiskCache(directory))
    memo = kept.load_memo()
    memo.sizes["blob-b"] = 12
    memo.changed = True
    kept.save_memo(memo)
    kept.flush()
    assert DiskCache(directory).load_memo().sizes == {"blob-b": 12}
