"""The embedded registry's state token: which registry (its id) and how many writes it
has seen (its generation). Readable without the adapter, so that a replayed `plan`
(cli/replay.py) checks it and loads nothing else."""

from __future__ import annotations

import os
import sqlite3

TOKEN_QUERY = "SELECT key, value FROM meta WHERE key IN ('registry_id', 'generation')"
EMPTY = "empty"  # no registry file yet


def token_of(conn: sqlite3.Connection) -> str:
    rows = dict(conn.execute(TOKEN_QUERY))
    return f"{rows.get('registry_id')}:{rows.get('generation')}"


def read_token(path: str) -> str | None:
    """The token of the registry file at ``path``, opened read-only (None: unreadable)."""
    if not os.path.exists(path):
        return EMPTY
    # A URI, so that a file that vanished meanwhile is not created empty.
    escaped = path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    try:
        conn = sqlite3.connect(f"file:{escaped}?mode=ro", uri=True, timeout=5.0)
        try:
            return token_of(conn)
        finally:
            conn.close()
    except sqlite3.Error:
        return None
