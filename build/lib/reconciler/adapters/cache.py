"""On-disk caches under ``.reconciler/cache``: parse results by blob id, and the last plan.

Both are pure accelerators: deleting the directory changes nothing but speed. Writes are
atomic (temporary file + rename) so a killed process never leaves a torn cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import marshal
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import reconciler.core
from reconciler import __version__

if TYPE_CHECKING:
    from reconciler.core.desired import LoadMemo

_MEMO_FILE = "parsed.marshal"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _core_revision() -> str:
    """Parse results depend on the core's code, not only on the package version: hash the
    core's sources so that any change to parsing or validation invalidates the cache."""
    digest = hashlib.sha256(__version__.encode())
    core = Path(reconciler.core.__file__).parent
    for source in sorted(core.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


class DiskCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._revision: str | None = None

    @property
    def revision(self) -> str:
        if self._revision is None:
            self._revision = _core_revision()
        return self._revision

    def load_memo(self) -> LoadMemo:
        from reconciler.core.desired import LoadMemo

        try:
            raw = (self.directory / _MEMO_FILE).read_bytes()
            data = marshal.loads(raw)
        except (OSError, ValueError, EOFError, TypeError):
            return LoadMemo()
        if not isinstance(data, dict) or data.get("version") != self.revision:
            return LoadMemo()  # written by another reconciler version: parse again
        return LoadMemo(parsed=data["parsed"], conda=data["conda"], sizes=data["sizes"])

    def save_memo(self, memo: LoadMemo) -> None:
        if not memo.changed:
            return
        payload = {
            "version": self.revision,
            "parsed": memo.parsed,
            "conda": memo.conda,
            "sizes": memo.sizes,
        }
        with contextlib.suppress(OSError):  # a cache that cannot be written is no error
            _atomic_write(self.directory / _MEMO_FILE, marshal.dumps(payload))

    def _plan_path(self, slot: str) -> Path:
        name = hashlib.sha256(slot.encode()).hexdigest()[:16]
        return self.directory / f"plan-{name}.json"

    def load_plan(self, slot: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._plan_path(slot).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("revision") != self.revision:
            return None
        return data

    def save_plan(self, slot: str, entry: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            payload = dict(entry, revision=self.revision)
            _atomic_write(self._plan_path(slot), json.dumps(payload).encode())
