"""The embedded registry: one SQLite file that follows the service's rules itself.

Versions are immutable except description and tags, nothing is ever deleted (triggers
refuse it), a version created under an archived container is archived, and every write
is logged to ``events`` for ``history``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.adapters.locking import file_lock
from reconciler.adapters.sqlite_token import EMPTY, token_of
from reconciler.core.spec.digest import canonical_json, json_digest

if TYPE_CHECKING:
    from reconciler.core.build.jobs import BuildRecord
    from reconciler.core.spec.model import (
        RegisteredContainer,
        RegisteredVersion,
        RegistryState,
        VersionWrite,
    )
from reconciler.ports import NotFound, RegistryError, TransientRegistryError, VersionConflict

SCHEMA_VERSION = "3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS containers (
    name TEXT PRIMARY KEY,
    archived INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL REFERENCES containers(name),
    version TEXT NOT NULL,
    content TEXT NOT NULL,
    digest TEXT NOT NULL,
    description TEXT,
    tags TEXT NOT NULL,
    datastore TEXT,
    archived INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT,
    action TEXT NOT NULL,
    detail TEXT
);
CREATE TRIGGER IF NOT EXISTS versions_never_deleted BEFORE DELETE ON versions
BEGIN SELECT RAISE(ABORT, 'versions are never deleted'); END;
CREATE TRIGGER IF NOT EXISTS containers_never_deleted BEFORE DELETE ON containers
BEGIN SELECT RAISE(ABORT, 'containers are never deleted'); END;
CREATE TRIGGER IF NOT EXISTS versions_immutable
BEFORE UPDATE OF name, version, content, digest, datastore, created_at ON versions
BEGIN SELECT RAISE(ABORT, 'only description, tags and archived of a version can change'); END;
CREATE TRIGGER IF NOT EXISTS gen_container_insert AFTER INSERT ON containers
BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'; END;
CREATE TRIGGER IF NOT EXISTS gen_container_update AFTER UPDATE ON containers
BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'; END;
CREATE TRIGGER IF NOT EXISTS gen_version_insert AFTER INSERT ON versions
BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'; END;
CREATE TRIGGER IF NOT EXISTS gen_version_update AFTER UPDATE ON versions
BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'; END;
"""


# Schema 2: build records (one per version; the image is shared by content digest).
_BUILDS = """
CREATE TABLE IF NOT EXISTS builds (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    image TEXT,
    started_at TEXT,
    ended_at TEXT,
    log_tail TEXT NOT NULL DEFAULT '',
    log_path TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    message TEXT NOT NULL DEFAULT '',
    cache_hit INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, version),
    FOREIGN KEY (name, version) REFERENCES versions(name, version)
);
CREATE TRIGGER IF NOT EXISTS builds_never_deleted BEFORE DELETE ON builds
BEGIN SELECT RAISE(ABORT, 'build records are never deleted'); END;
CREATE TRIGGER IF NOT EXISTS gen_build_insert AFTER INSERT ON builds
BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'; END;
CREATE TRIGGER IF NOT EXISTS gen_build_update AFTER UPDATE ON builds
BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'; END;
"""
# Schema 3: the digest each base image had when a version was built (base image drift).
# A table of its own, not a column: CREATE IF NOT EXISTS is safe to run twice.
_BUILD_BASES = """
CREATE TABLE IF NOT EXISTS build_bases (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    bases TEXT NOT NULL,
    PRIMARY KEY (name, version),
    FOREIGN KEY (name, version) REFERENCES versions(name, version)
);
CREATE TRIGGER IF NOT EXISTS build_bases_never_deleted BEFORE DELETE ON build_bases
BEGIN SELECT RAISE(ABORT, 'build records are never deleted'); END;
"""
_MIGRATIONS = {"1": _BUILDS, "2": _BUILD_BASES}  # from version -> script to the next


# Test hook, read once per registry: seconds to sleep before each write, so that crash
# tests can kill a reconciler between two writes. Unset (no delay) outside tests.
WRITE_DELAY_VARIABLE = "RECONCILER_TEST_WRITE_DELAY"
# With the delay: a file that gets one line as each write begins, so that a test can kill
# at a chosen write instead of at a time (which a busy machine stretches).
WRITE_LOG_VARIABLE = "RECONCILER_TEST_WRITE_LOG"


def _write_delay() -> float:
    try:
        return max(0.0, float(os.environ.get(WRITE_DELAY_VARIABLE) or 0))
    except ValueError:
        return 0.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class SqliteRegistry:
    write_concurrency = 1  # one writer at a time: SQLite's own rule
    last_read = None  # every read is a full one: nothing to report
    throttle = None

    def __init__(self, path: Path, url: str | None = None, busy_timeout: float = 10.0) -> None:
        self.path = path
        self.url = url or f"sqlite:///{path}"
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._in_batch = False
        self._delay = _write_delay()
        self._write_log = os.environ.get(WRITE_LOG_VARIABLE) if self._delay else None

    # -- connection -------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                self._migrate(conn)
            except sqlite3.Error as exc:
                raise _translate(exc, f"cannot open the registry {self.path}") from exc
            self._conn = conn
        return self._conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        row = None
        with contextlib.suppress(sqlite3.OperationalError):
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is not None:
            version = row[0]
            while version != SCHEMA_VERSION:
                script = _MIGRATIONS.get(version)
                if script is None:
                    raise RegistryError(
                        f"{self.path}: registry schema {version}, this reconciler knows "
                        f"{SCHEMA_VERSION}; upgrade the reconciler"
                    )
                version = str(int(version) + 1)
                conn.executescript(
                    "BEGIN IMMEDIATE;"
                    + script
                    + f"UPDATE meta SET value = '{version}' WHERE key = 'schema_version';"
                    + "COMMIT;"
                )
            return
        # executescript commits any open transaction first, so the script carries its own;
        # every statement is idempotent, so two processes migrating at once is harmless.
        conn.executescript(
            "BEGIN IMMEDIATE;"
            + _SCHEMA
            + _BUILDS
            + _BUILD_BASES
            + "INSERT OR IGNORE INTO meta VALUES ('generation', '0');"
            + f"INSERT OR IGNORE INTO meta VALUES ('registry_id', '{os.urandom(16).hex()}');"
            + f"INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
            + "COMMIT;"
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write: its own IMMEDIATE transaction, or part of the open batch."""
        if self._write_log:
            with open(self._write_log, "a", encoding="utf-8") as log:
                log.write("write\n")
        if self._delay:
            time.sleep(self._delay)
        conn = self.conn
        if self._in_batch:
            # After an I/O error SQLite may roll the whole batch back: a write now would
            # be committed on its own, half an apply.
            if not conn.in_transaction:
                raise RegistryError(_ROLLED_BACK)
            yield conn
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot start a registry transaction") from exc
        try:
            yield conn
        except BaseException:
            _rollback(conn)
            raise
        if not conn.in_transaction:
            raise RegistryError(f"cannot commit to the registry: {_ROLLED_BACK}")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # disk full, I/O error: nothing of it was written
            _rollback(conn)
            raise _translate(exc, "cannot commit to the registry") from exc

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        if self._in_batch:
            yield
            return
        with self._tx():
            self._in_batch = True
            try:
                yield
            finally:
                self._in_batch = False

    def lock(self, timeout: float) -> contextlib.AbstractContextManager[None]:
        return file_lock(
            self.path.with_name(self.path.name + ".lock"), timeout, f"registry {self.url}"
        )

    # -- reads ------------------------------------------------------------------------

    def state_token(self) -> str | None:
        if not self.path.exists():
            return EMPTY
        return token_of(self.conn)

    def read_state(self) -> RegistryState:
        from reconciler.core.spec.model import RegisteredContainer, RegistryState

        if not self.path.exists():
            return RegistryState({}, EMPTY)
        try:
            token = self.state_token()
            containers = self.conn.execute(
                "SELECT name, archived FROM containers ORDER BY name"
            ).fetchall()
            rows = self.conn.execute(_VERSION_SELECT + " ORDER BY seq").fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, "cannot read the registry") from exc
        versions: dict[str, list[RegisteredVersion]] = {}
        for row in rows:
            versions.setdefault(row[0], []).append(_version(row))
        return RegistryState(
            {
                name: RegisteredContainer(name, bool(archived), tuple(versions.get(name, ())))
                for name, archived in containers
            },
            token,
        )

    def list_containers(self, include_archived: bool = False) -> list[RegisteredContainer]:
        state = self.read_state()
        return [c for c in state.containers.values() if include_archived or not c.archived]

    def get_container(self, name: str) -> RegisteredContainer | None:
        from reconciler.core.spec.model import RegisteredContainer

        if not self.path.exists():
            return None
        row = self.conn.execute("SELECT archived FROM containers WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        rows = self.conn.execute(_VERSION_SELECT + " WHERE name=? ORDER BY seq", (name,))
        return RegisteredContainer(name, bool(row[0]), tuple(_version(r) for r in rows))

    def get_version(self, name: str, version: str) -> RegisteredVersion | None:
        if not self.path.exists():
            return None
        row = self.conn.execute(
            _VERSION_SELECT + " WHERE name=? AND version=?", (name, version)
        ).fetchone()
        return _version(row) if row else None

    def history(self, name: str) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = self.conn.execute(
            "SELECT at, version, action, detail FROM events WHERE name=? ORDER BY seq", (name,)
        )
        return [
            {"at": at, "version": v, "action": action, "detail": json.loads(detail or "{}")}
            for at, v, action, detail in rows
        ]

    def build_records(self) -> dict[tuple[str, str], BuildRecord]:
        from reconciler.core.build.jobs import BuildRecord, BuildStatus

        if not self.path.exists():
            return {}
        rows = self.conn.execute(
            "SELECT b.name, b.version, digest, status, image, started_at, ended_at, log_tail, "
            "log_path, attempts, next_attempt_at, message, cache_hit, bases FROM builds b "
            "LEFT JOIN build_bases USING (name, version)"
        )
        out = {}
        for row in rows:
            record = BuildRecord(
                row[0],
                row[1],
                row[2],
                BuildStatus(row[3]),
                row[4],
                row[5],
                row[6],
                row[7],
                row[8],
                row[9],
                row[10],
                row[11],
                bool(row[12]),
                json.loads(row[13]) if row[13] else {},
            )
            out[(record.name, record.version)] = record
        return out

    def set_build_record(self, record: BuildRecord) -> None:
        try:
            with self._tx() as conn:
                _write_builds(conn, [record])
        except sqlite3.Error as exc:
            raise _translate(
                exc, f"cannot record the build of {record.name}:{record.version}"
            ) from exc

    def set_build_records(self, records: Sequence[BuildRecord]) -> None:
        if self._delay:  # the crash tests' write delay is per record
            for record in records:
                self.set_build_record(record)
            return
        if not records:
            return
        try:
            with self._tx() as conn:
                _write_builds(conn, records)
        except sqlite3.Error as exc:
            raise _translate(exc, f"cannot record the builds of {len(records)} version(s)") from exc

    # -- writes -----------------------------------------------------------------------

    def put_version(self, name: str, version: str, write: VersionWrite) -> RegisteredVersion:
        content_json = canonical_json(dict(write.content))
        digest = json_digest(content_json)
        tags_json = canonical_json(dict(write.tags))
        now = _now()
        try:
            with self._tx() as conn:
                container = conn.execute(
                    "SELECT archived FROM containers WHERE name=?", (name,)
                ).fetchone()
                row = None  # a new container has no versions (they reference it)
                if container is None:
                    conn.execute("INSERT INTO containers VALUES (?, 0, ?, ?)", (name, now, now))
                    archived = False
                else:
                    archived = bool(container[0])
                    row = conn.execute(
                        _VERSION_SELECT + " WHERE name=? AND version=?", (name, version)
                    ).fetchone()
                if row is not None:
                    existing = _version(row)
                    if existing.digest != digest:
                        raise VersionConflict(
                            f"{name}:{version} already exists with different content "
                            f"({existing.digest} != {digest})"
                        )
                    if existing.description == write.description and dict(existing.tags) == dict(
                        write.tags
                    ):
                        return existing
                    conn.execute(
                        "UPDATE versions SET description=?, tags=?, updated_at=? "
                        "WHERE name=? AND version=?",
                        (write.description, tags_json, now, name, version),
                    )
                    _event(
                        conn,
                        now,
                        name,
                        version,
                        "update_metadata",
                        {"description": write.description, "tags": dict(write.tags)},
                    )
                else:
                    inserted, created = _new_version(
                        name, version, write, (content_json, digest, tags_json), archived, now
                    )
                    conn.execute(_INSERT_VERSION, inserted)
                    _event(
                        conn,
                        now,
                        name,
                        version,
                        "create",
                        {"digest": digest, "tags": dict(write.tags)},
                    )
                    return created
                row = conn.execute(
                    _VERSION_SELECT + " WHERE name=? AND version=?", (name, version)
                ).fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, f"cannot write {name}:{version}") from exc
        return _version(row)

    def put_versions(
        self, writes: Sequence[tuple[str, str, VersionWrite]]
    ) -> list[RegisteredVersion]:
        """put_version of each, in order, all or nothing: new versions are inserted a
        statement per table (the common apply, creates only); anything else (an existing
        version, a name twice, the crash tests' write delay) goes one by one, still inside
        one savepoint."""
        if not writes:
            return []
        try:
            with self.batch():  # put_version's own writes join this transaction
                conn = self.conn
                conn.execute("SAVEPOINT put_versions")
                try:
                    written = self._insert_all(conn, writes)
                    if written is None:
                        written = [self.put_version(n, v, w) for n, v, w in writes]
                except BaseException:
                    # the batch around may go on: this call leaves nothing in it
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK TO put_versions")
                        conn.execute("RELEASE put_versions")
                    raise
                conn.execute("RELEASE put_versions")
        except sqlite3.Error as exc:
            raise _translate(exc, f"cannot write {len(writes)} version(s)") from exc
        return written

    def _insert_all(
        self, conn: sqlite3.Connection, writes: Sequence[tuple[str, str, VersionWrite]]
    ) -> list[RegisteredVersion] | None:
        """The writes as plain inserts, or None (nothing written) when one is not new."""
        keys = {(name, version) for name, version, _ in writes}
        if self._delay or len(keys) != len(writes):
            return None
        names = list(dict.fromkeys(name for name, _, _ in writes))
        archived = {
            name: bool(flag)
            for name, flag in _rows_named(conn, "SELECT name, archived FROM containers", names)
        }
        existing = [name for name in names if name in archived]
        for name, version in _rows_named(conn, "SELECT name, version FROM versions", existing):
            if (name, version) in keys:
                return None  # an update or a conflict: put_version's own checks
        containers, versions, events, written = [], [], [], []
        for name, version, write in writes:
            now = _now()
            if name not in archived:
                archived[name] = False
                containers.append((name, now, now))
            flag = archived[name]
            content_json = canonical_json(dict(write.content))
            digest = json_digest(content_json)
            tags_json = canonical_json(dict(write.tags))
            inserted, created = _new_version(
                name, version, write, (content_json, digest, tags_json), flag, now
            )
            versions.append(inserted)
            # canonical_json({"digest": ..., "tags": ...}), without encoding the tags twice
            events.append(
                (now, name, version, "create", f'{{"digest":"{digest}","tags":{tags_json}}}')
            )
            written.append(created)
        conn.executemany("INSERT INTO containers VALUES (?, 0, ?, ?)", containers)
        conn.executemany(_INSERT_VERSION, versions)
        conn.executemany(
            "INSERT INTO events (at, name, version, action, detail) VALUES (?, ?, ?, ?, ?)",
            events,
        )
        return written

    def set_container_archived(self, name: str, archived: bool) -> None:
        try:
            with self._tx() as conn:
                cur = conn.execute(
                    "UPDATE containers SET archived=?, updated_at=? WHERE name=? AND archived<>?",
                    (int(archived), _now(), name, int(archived)),
                )
                if (
                    cur.rowcount == 0
                    and conn.execute("SELECT 1 FROM containers WHERE name=?", (name,)).fetchone()
                    is None
                ):
                    raise NotFound(f"no environment {name!r} in the registry")
                if cur.rowcount:
                    _event(conn, _now(), name, None, "archive" if archived else "restore", {})
        except sqlite3.Error as exc:
            raise _translate(exc, f"cannot archive or restore {name}") from exc

    def set_version_archived(self, name: str, version: str, archived: bool) -> None:
        try:
            with self._tx() as conn:
                container = conn.execute(
                    "SELECT archived FROM containers WHERE name=?", (name,)
                ).fetchone()
                if container is None:
                    raise NotFound(f"no environment {name!r} in the registry")
                if not archived and container[0]:
                    raise RegistryError(
                        f"cannot restore {name}:{version} while {name} is archived; restore "
                        "the environment first"
                    )
                cur = conn.execute(
                    "UPDATE versions SET archived=?, updated_at=? "
                    "WHERE name=? AND version=? AND archived<>?",
                    (int(archived), _now(), name, version, int(archived)),
                )
                if (
                    cur.rowcount == 0
                    and conn.execute(
                        "SELECT 1 FROM versions WHERE name=? AND version=?", (name, version)
                    ).fetchone()
                    is None
                ):
                    raise NotFound(f"no version {name}:{version} in the registry")
                if cur.rowcount:
                    _event(conn, _now(), name, version, "archive" if archived else "restore", {})
        except sqlite3.Error as exc:
            raise _translate(exc, f"cannot archive or restore {name}:{version}") from exc


_UPSERT_BUILD = (
    "INSERT INTO builds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (name, version) DO UPDATE SET digest=excluded.digest, "
    "status=excluded.status, image=excluded.image, "
    "started_at=excluded.started_at, ended_at=excluded.ended_at, "
    "log_tail=excluded.log_tail, log_path=excluded.log_path, "
    "attempts=excluded.attempts, next_attempt_at=excluded.next_attempt_at, "
    "message=excluded.message, cache_hit=excluded.cache_hit"
)
_UPSERT_BASES = (
    "INSERT INTO build_bases VALUES (?, ?, ?) ON CONFLICT (name, version) "
    "DO UPDATE SET bases=excluded.bases"
)


def _write_builds(conn: sqlite3.Connection, records: Sequence[BuildRecord]) -> None:
    """Build records and their base digests, a statement per table."""
    conn.executemany(
        _UPSERT_BUILD,
        [
            (
                r.name,
                r.version,
                r.digest,
                r.status.value,
                r.image,
                r.started_at,
                r.ended_at,
                r.log_tail,
                r.log_path,
                r.attempts,
                r.next_attempt_at,
                r.message,
                int(r.cache_hit),
            )
            for r in records
        ],
    )
    conn.executemany(
        _UPSERT_BASES, [(r.name, r.version, canonical_json(dict(r.bases))) for r in records]
    )


_ROLLED_BACK = "a write failed and SQLite rolled the transaction back; nothing of it was written"
_CHUNK = 500  # names per IN (...) query, well under SQLite's limit on parameters


def _rows_named(conn: sqlite3.Connection, select: str, names: list[str]) -> Iterator[Any]:
    """The rows of ``select`` whose name is one of ``names``, a chunk of names at a time."""
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        yield from conn.execute(f"{select} WHERE name IN ({','.join('?' * len(chunk))})", chunk)


_VERSION_SELECT = (
    "SELECT name, version, content, digest, description, tags, archived, created_at, "
    "datastore FROM versions"
)


class _LazyJson(Mapping[str, Any]):
    """Stored content, decoded on first use: a plan compares digests and rarely needs it."""

    __slots__ = ("_text", "_value")

    def __init__(self, text: str) -> None:
        self._text = text
        self._value: dict[str, Any] | None = None

    def _data(self) -> dict[str, Any]:
        if self._value is None:
            self._value = json.loads(self._text)
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())


_INSERT_VERSION = (
    "INSERT INTO versions (name, version, content, digest, description, tags, "
    "datastore, archived, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _new_version(
    name: str,
    version: str,
    write: VersionWrite,
    encoded: tuple[str, str, str],
    archived: bool,
    now: str,
) -> tuple[tuple[Any, ...], RegisteredVersion]:
    """A new version's row for _INSERT_VERSION, and the version as reading that row back
    would give (so a write is not followed by a read). ``encoded``: the content's
    canonical JSON, its digest, and the tags' canonical JSON."""
    content_json, digest, tags_json = encoded
    read = (name, version, content_json, digest, write.description, tags_json, archived, now)
    inserted = (*read[:6], write.datastore, int(archived), now, now)
    return inserted, _version((*read, write.datastore))


def _version(row: tuple[Any, ...]) -> RegisteredVersion:
    from reconciler.core.spec.model import RegisteredVersion  # cheap once imported

    name, version, content, digest, description, tags, archived, created_at, datastore = row
    return RegisteredVersion(
        name=name,
        version=version,
        content=_LazyJson(content),
        digest=digest,
        description=description,
        tags=json.loads(tags),
        archived=bool(archived),
        created_at=created_at,
        datastore=datastore,
    )


def _event(
    conn: sqlite3.Connection,
    at: str,
    name: str,
    version: str | None,
    action: str,
    detail: Mapping[str, Any],
) -> None:
    conn.execute(
        "INSERT INTO events (at, name, version, action, detail) VALUES (?, ?, ?, ?, ?)",
        (at, name, version, action, canonical_json(dict(detail))),
    )


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may have rolled back already (after SQLITE_FULL, say): that is no new error
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _translate(exc: sqlite3.Error, what: str) -> RegistryError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return TransientRegistryError(f"{what}: the database is busy ({text})")
    return RegistryError(f"{what}: {text}")
