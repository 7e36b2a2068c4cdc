"""The embedded registry's state token: which registry (its id) and how many writes it
has seen (its generation). Readable without the adapter, so that a replayed `plan`
(cli/replay.py) checks it and loads nothing else; and its stamp, which proves the token
unchanged without even loading SQLite."""

from __future__ import annotations

import os
import time

# Stat data this recent may change again within the same timestamp tick: a stamp that
# includes it proves nothing (the same rule as for the files).
from reconciler.adapters.git_fingerprint import RACY_SECONDS

TYPE_CHECKING = False
if TYPE_CHECKING:
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
    import sqlite3  # here: a stamp that matches spares a replay this import

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


def stamp(path: str) -> tuple[int, ...] | None:
    """The stat data of the registry file and of its write-ahead log, while that holds
    anything (None: no registry file, or one changed a moment ago).

    Every committed write changes the file or its log, so an unchanged stamp means an
    unchanged token, provided the stamp was taken before a read of the token that it is
    then kept with. An empty log holds no writes, whether it exists or not: a read-only
    reader may create one."""
    fresh_after = (time.time() - RACY_SECONDS) * 1e9
    numbers: list[int] = []
    for name in (path, path + "-wal"):
        try:
            info = os.stat(name)
        except FileNotFoundError:
            if name == path:
                return None
            info = None
        if info is None or (name != path and info.st_size == 0):
            numbers += (0, 0, 0, 0, 0)
            continue
        if info.st_mtime_ns > fresh_after:  # as for files: a write always moves mtime
            return None
        numbers += (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)
    return tuple(numbers)
