"""Durable settings in SQLite (standard library, WAL): one row per path, revisions, a change log.

Each change set is one transaction that writes only the rows it changes and the new global
revision, with ``synchronous=FULL``: when :meth:`SettingsStore.commit` returns the change is on
disk, so an acknowledged change survives a crash of the process (and of the machine). Writers
never read-modify-write a whole document, so concurrent writes to different paths are never
lost. The store also keeps the epoch counter of docs/protocol.md §7 and the path ids, so ids stay
the same across restarts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

LOG_REVISIONS = 10_000
"""Revisions kept in the change log for Sync; older ones answer with a Snapshot (§5)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS paths (path TEXT PRIMARY KEY, id INTEGER NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS settings (
    path_id INTEGER PRIMARY KEY, value BLOB NOT NULL, revision INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER NOT NULL, path_id INTEGER NOT NULL, PRIMARY KEY (revision, path_id));
"""


class StoreError(Exception):
    """The settings database cannot be opened or written."""


def open_database(path: str, schema: str, *, synchronous: str, what: str) -> sqlite3.Connection:
    """A connection to the settings database (WAL, autocommit, 5 s busy timeout) with
    ``schema`` created; StoreError naming ``what`` if it cannot be opened."""
    try:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"{path}: cannot open {what} ({exc})") from exc
    return db


class SettingsStore:
    """The SQLite file behind the settings service. Use from one thread."""

    def __init__(self, path: str | Path, *, log_revisions: int = LOG_REVISIONS) -> None:
        self.path = str(path)
        self.log_revisions = log_revisions
        self._db = open_database(self.path, _SCHEMA, synchronous="FULL",
                                 what="the settings database")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    # -- meta ------------------------------------------------------------------------------
    def _meta(self, key: str, default: int = 0) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    @property
    def revision(self) -> int:
        """The global revision of the last committed change set (0: none yet)."""
        return self._meta("revision")

    @property
    def epoch(self) -> int:
        """The last epoch this file recorded (0: none yet)."""
        return self._meta("epoch")

    def bump_epoch(self) -> int:
        """Raise the epoch by one (every start or reload of the source) and return it."""
        with self._tx():
            epoch = self._meta("epoch") + 1
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (epoch,))
        return epoch

    # -- path ids ----------------------------------------------------------------------------
    def path_ids(self, paths: Iterable[str], fixed: dict[str, int]) -> dict[str, int]:
        """Ids for every path: the fixed ones, ids already stored, and new ones for the rest."""
        wanted = list(paths)
        with self._tx():
            known = dict(self._db.execute("SELECT path, id FROM paths").fetchall())
            for path, pid in fixed.items():
                if known.get(path) not in (None, pid):
                    raise StoreError(f"{self.path}: path {path} is stored with id "
                                     f"{known[path]}, the contract fixes {pid}")
                if path not in known and path in wanted:
                    self._db.execute("INSERT INTO paths VALUES (?, ?)", (path, pid))
                    known[path] = pid
            next_id = max([*known.values(), max(fixed.values(), default=0)]) + 1
            for path in wanted:
                if path not in known:
                    self._db.execute("INSERT INTO paths VALUES (?, ?)", (path, next_id))
                    known[path] = next_id
                    next_id += 1
        return {p: known[p] for p in wanted}

    # -- values -------------------------------------------------------------------------------
    def load(self) -> dict[int, bytes]:
        """Every stored value (encoded), by path id."""
        return dict(self._db.execute("SELECT path_id, value FROM settings").fetchall())

    def seed(self, values: dict[int, bytes]) -> None:
        """Store values for paths that have none yet (defaults), without a revision."""
        with self._tx():
            self._db.executemany(
                "INSERT OR IGNORE INTO settings VALUES (?, ?, 0)", list(values.items()))

    def commit(self, changes: list[tuple[int, bytes]], revision: int | None = None) -> int:
        """Write one change set as the next revision (or as ``revision``, which a replica takes
        from the writer), durably; returns the revision."""
        try:
            with self._tx():
                if revision is None:
                    revision = self._meta("revision") + 1
                self._db.executemany(
                    "INSERT OR REPLACE INTO settings VALUES (?, ?, ?)",
                    [(pid, value, revision) for pid, value in changes])
                self._db.executemany("INSERT INTO changes VALUES (?, ?)",
                                     [(revision, pid) for pid, _ in changes])
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)",
                                 (revision,))
                self._db.execute("DELETE FROM changes WHERE revision <= ?",
                                 (revision - self.log_revisions,))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot write settings ({exc})") from exc
        return revision

    def adopt(self, values: dict[int, bytes], revision: int) -> None:
        """Replace every value and the revision with the writer's (a replica that fell too far
        behind). The change log restarts empty: a Sync from before answers with a Snapshot."""
        try:
            with self._tx():
                self._db.executemany("INSERT OR REPLACE INTO settings VALUES (?, ?, ?)",
                                     [(pid, value, revision) for pid, value in values.items()])
                self._db.execute("DELETE FROM changes")
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)",
                                 (revision,))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot write settings ({exc})") from exc

    def set_epoch(self, epoch: int) -> None:
        """Record an epoch chosen elsewhere (the cluster's), so a restart goes past it."""
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (epoch,))

    def oldest_logged(self) -> int:
        """The oldest revision still in the change log (current + 1 when the log is empty)."""
        row = self._db.execute("SELECT MIN(revision) FROM changes").fetchone()
        return int(row[0]) if row and row[0] is not None else self.revision + 1

    def changed_since(self, revision: int) -> list[int]:
        """Path ids changed after ``revision``, ascending."""
        rows = self._db.execute(
            "SELECT DISTINCT path_id FROM changes WHERE revision > ? ORDER BY path_id",
            (revision,)).fetchall()
        return [int(r[0]) for r in rows]

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
