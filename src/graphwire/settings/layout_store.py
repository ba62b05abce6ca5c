"""The remembered layout: positions and pins by node key in the settings database, and the
background writer that keeps them current.

A table of its own beside the settings (same SQLite file, own connection), ``layouts``: one row
per source, holding its node keys (a JSON array) and, in the same order, the positions
(float32 x, y, z, little-endian) and pins (one byte a node) as blobs, with whether the layout
had settled, when it was saved and how many nodes it holds. A source is named by what was
served (the resolved path, or ``demo``), so serving another source from the same database
neither reads nor overwrites this one's layout.

One row, not a row per node: a save runs while the layout moves, every few seconds, and binding
10,000 rows one by one held the GIL (which the event loop needs) for 24 ms a save; writing one
row of blobs takes about 1 ms. Layouts saved in the per-node tables of earlier versions
(``layout_nodes``, ``layout_state``) are still read, until the first save replaces them.

Positions change many times a second and are worth a few seconds at most, so the connection
uses ``synchronous=NORMAL`` (in WAL mode a crash of the process loses nothing committed; a
power cut may lose the last saves), and :class:`LayoutSaver` writes from its own thread at most
once per interval, only when a newer snapshot exists: the physics never waits for the disk.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from graphwire.graph.layout_file import Layout
from graphwire.simulation import Snapshot

from .store import StoreError, open_database

log = logging.getLogger("graphwire.layout")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS layouts (
    source TEXT PRIMARY KEY, keys TEXT NOT NULL, pos BLOB NOT NULL, pinned BLOB NOT NULL,
    settled INTEGER NOT NULL, saved_at REAL NOT NULL, nodes INTEGER NOT NULL);
"""

_POS = np.dtype("<f4")
_OLD_TABLES = {"layout_nodes", "layout_state"}  # a row per node, before one row per source


class LayoutStore:
    """The layout of one source in the settings database. Safe to use from any one thread
    at a time (the saver's, or the loop's at start and stop)."""

    def __init__(self, path: str | Path, source: str) -> None:
        self.path = str(path)
        self.source = source
        self._db = open_database(self.path, _SCHEMA, synchronous="NORMAL",
                                 what="the layout tables")
        self._lock = threading.Lock()
        self._migrated = False  # this source's rows of an earlier version removed

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def load(self) -> Layout | None:
        """The stored layout of this source, or None when it has none; StoreError when it
        cannot be read or is damaged."""
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT keys, pos, pinned, settled, nodes FROM layouts WHERE source = ?",
                    (self.source,)).fetchone()
                if row is None:
                    return self._load_per_node()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the layout ({exc})") from exc
        layout = _decode(*row)
        if layout is None:
            raise StoreError(f"{self.path}: the stored layout of {self.source} is damaged")
        return layout

    def _load_per_node(self) -> Layout | None:
        """A layout saved by an earlier version, a row per node (lock held)."""
        if self._old_tables() != _OLD_TABLES:
            return None
        state = self._db.execute("SELECT settled FROM layout_state WHERE source = ?",
                                 (self.source,)).fetchone()
        if state is None:
            return None
        rows = self._db.execute(
            "SELECT key, x, y, z, pinned FROM layout_nodes WHERE source = ?",
            (self.source,)).fetchall()
        return Layout([r[0] for r in rows],
                      np.array([r[1:4] for r in rows], np.float32).reshape(-1, 3),
                      np.array([bool(r[4]) for r in rows], bool), bool(state[0]))

    def save(self, layout: Layout) -> None:
        """Replace this source's layout (one row; the per-node rows of an earlier version
        go with the first save)."""
        keys = json.dumps(layout.keys)  # ASCII: a key with a lone surrogate is still stored
        pos = np.ascontiguousarray(layout.pos, _POS).tobytes()
        pinned = np.ascontiguousarray(layout.pinned, np.uint8).tobytes()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(
                        "INSERT OR REPLACE INTO layouts VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (self.source, keys, pos, pinned, int(layout.settled), time.time(),
                         len(layout.keys)))
                    if not self._migrated:
                        self._drop_per_node()
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                self._migrated = True
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot save the layout ({exc})") from exc

    def _drop_per_node(self) -> None:
        """Remove this source's layout in an earlier version's tables (transaction open)."""
        for table in self._old_tables():
            self._db.execute(f"DELETE FROM {table} WHERE source = ?", (self.source,))

    def _old_tables(self) -> set[str]:
        """Which of an earlier version's per-node tables the database holds."""
        rows = self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r[0] for r in rows} & _OLD_TABLES


def _decode(keys_json: object, pos: object, pinned: object, settled: object,
            nodes: object) -> Layout | None:
    """A stored row as a Layout, or None when it is not what :meth:`LayoutStore.save` wrote."""
    if not (isinstance(keys_json, str) and isinstance(pos, bytes) and isinstance(pinned, bytes)
            and isinstance(nodes, int) and len(pos) == 12 * nodes and len(pinned) == nodes):
        return None
    try:
        keys = json.loads(keys_json)
    except ValueError:
        return None
    if not isinstance(keys, list) or len(keys) != nodes \
            or not all(isinstance(k, str) for k in keys):
        return None
    xyz = np.frombuffer(pos, _POS).reshape(-1, 3).astype(np.float32)
    if not np.isfinite(xyz).all():
        return None
    return Layout(keys, xyz, np.frombuffer(pinned, np.uint8).astype(bool), bool(settled))


def layout_of(snap: Snapshot) -> Layout:
    """The layout a snapshot shows, by key."""
    keys = snap.keys
    return Layout([keys[i] for i in snap.ids.tolist()], snap.pos, snap.pinned, snap.settled)


class LayoutSaver:
    """Saves the newest snapshot's layout from a thread of its own, at most once per
    ``interval()`` seconds and only when it changed; :meth:`stop` saves one last time."""

    def __init__(self, store: LayoutStore, latest: Callable[[], Snapshot | None],
                 interval: Callable[[], float],
                 on_save: Callable[[], None] | None = None) -> None:
        self.store = store
        self.on_save = on_save
        self.latest = latest
        self.interval = interval
        self.saves = 0
        self.failures = 0
        self.last_saved_at = 0.0  # time.time() of the last save
        self._saved: Snapshot | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._run, name="graphwire-layout-saver",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval()):
            self.save(self.latest())

    def save(self, snap: Snapshot | None) -> bool:
        """Save a snapshot's layout unless it is the one saved last; True if written."""
        if snap is None or snap is self._saved:
            return False
        saved = self._saved
        if (saved is not None and saved.seq == snap.seq and saved.keys is snap.keys):
            return False
        try:
            self.store.save(layout_of(snap))
        except StoreError as exc:
            self.failures += 1
            log.warning("%s", exc)
            return False
        self._saved = snap
        self.saves += 1
        self.last_saved_at = time.time()
        if self.on_save is not None:
            self.on_save()
        return True

    def stop(self, final: Snapshot | None = None) -> None:
        """Stop the thread, then save ``final`` (or the newest snapshot) once more."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.save(final if final is not None else self.latest())
