"""What the reconciler applied to each registry, kept beside the repository.

The registry's own stamps vanish with the asset; this record (like Flux's inventory)
remembers that `NAME:VERSION` was applied, so an environment that later disappears from
the registry is reported as `missing`, not as new. Local state: safe to delete (the
`missing` class then has nothing to compare with until the next apply).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from reconciler.adapters.report_files import write_files


class Inventory:
    def __init__(self, directory: Path, registry_url: str) -> None:
        key = hashlib.sha256(registry_url.encode()).hexdigest()[:16]
        self.path = directory / f"{key}.json"
        self.registry_url = registry_url
        # What this object last wrote, with the file's stat data after the write: the same
        # record again is not rewritten while the file is still that one (an atomic
        # replace by anyone gives the file a new inode).
        self._written: tuple[dict[str, str], tuple[int, int, int]] | None = None

    def load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        applied = data.get("applied") if isinstance(data, dict) else None
        if not isinstance(applied, dict):
            return {}
        return {str(k): str(v) for k, v in applied.items()}

    def save(self, applied: Mapping[str, str]) -> None:
        """Atomically (write, then rename): a crash leaves the old record or the new one."""
        if self._written is not None and self._written == (dict(applied), self._stat()):
            return
        body = json.dumps(
            {"registry": self.registry_url, "applied": dict(sorted(applied.items()))}, indent=1
        )
        self._written = None
        write_files(self.path.parent, {self.path.name: body})
        self._written = (dict(applied), self._stat())

    def _stat(self) -> tuple[int, int, int]:
        try:
            info = os.stat(self.path)
        except OSError:
            return (0, 0, 0)
        return (info.st_ino, info.st_size, info.st_mtime_ns)
