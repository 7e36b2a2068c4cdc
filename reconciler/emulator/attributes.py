"""The fields of the published API that the embedded registry does not model, kept beside it.

Per container: description, tags, properties, when it was created and last modified, and
the archived flag of a container created by ``PUT`` before it has a version. Per version:
``autoRebuild``, ``stage``, ``intellectualProperty``, ``isAnonymous``, ``autoDeleteSetting``
and when it was last modified. They live in a table of their own in the registry's SQLite
file, written in the registry's transaction, and are held in memory for listings.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

from reconciler.adapters.sqlite_registry import SqliteRegistry

_TABLE = "emulator_attributes"


def container_key(scope_key: str, name: str) -> str:
    return f"container\t{scope_key}/{name}"


def version_key(scope_key: str, name: str, version: str) -> str:
    return f"version\t{scope_key}/{name}\t{version}"


class AttributeStore:
    def __init__(self, registry: SqliteRegistry) -> None:
        self.registry = registry
        self.revision = 0  # bumped on every write: listings cached on it see the change
        self._values: dict[str, dict[str, Any]] = {}
        registry.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        self.reload()

    def reload(self) -> None:
        """Read everything again (after a write that rolled back)."""
        rows = self.registry.conn.execute(f"SELECT key, value FROM {_TABLE}").fetchall()
        self._values = {key: json.loads(value) for key, value in rows}
        self.revision += 1

    def get(self, key: str) -> dict[str, Any]:
        return dict(self._values.get(key, {}))

    def has(self, key: str) -> bool:
        return key in self._values

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value``; call inside the registry's batch, so it commits with it."""
        try:
            self.registry.conn.execute(
                f"INSERT OR REPLACE INTO {_TABLE} (key, value) VALUES (?, ?)",
                (key, json.dumps(value, sort_keys=True)),
            )
        except sqlite3.Error:
            self.reload()
            raise
        self._values[key] = dict(value)
        self.revision += 1

    def containers(self, scope_key: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(name, attributes)`` of every container of the scope that has attributes."""
        prefix = container_key(scope_key, "")
        for key, value in self._values.items():
            if key.startswith(prefix):
                yield key[len(prefix) :], dict(value)
