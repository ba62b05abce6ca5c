"""The remembered layout: positions and pins by node key in the settings database, and the
background writer that keeps them current.

Two tables of their own beside the settings (same SQLite file, own connection): ``layout_nodes``
(one row per source and node key: x, y, z, pinned) and ``layout_state`` (per source: settled,
when saved, how many nodes). A source is named by what was served (the resolved path, or
``demo``), so serving another source from the same database neither reads nor overwrites this
one's layout.

Each save replaces the source's rows in one transaction. Positions change many times a second
and are worth a few seconds at most, so the connection uses ``synchronous=NORMAL`` (in WAL
mode a crash of the process loses nothing committed; a power cut may lose the last saves), and
:class:`LayoutSaver` writes from its own thread at most once per interval, only when a newer
snapshot exists: the physics never waits for the disk.
"""

from __future__ import annotations

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
CREATE TABLE IF NOT EXISTS layout_nodes (
    source TEXT NOT NULL, key TEXT NOT NULL, x REAL NOT NULL, y REAL NOT NULL, z REAL NOT NULL,
    pinned INTEGER NOT NULL, PRIMARY KEY (source, key));
CREATE TABLE IF NOT EXISTS layout_state (
    source TEXT PRIMARY KEY, settled INTEGER NOT NULL, saved_at REAL NOT NULL,
    nodes INTEGER NOT NULL);
"""


class LayoutStore:
    """The layout of one source in the settings database. Safe to use from any one thread
    at a time (the saver's, or the loop's at start and stop)."""

    def __init__(self, path: str | Path, source: str) -> None:
        self.path = str(path)
        self.source = source
        self._db = open_database(self.path, _SCHEMA, synchronous="NORMAL",
                                 what="the layout tables")
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def load(self) -> Layout | None:
        """The stored layout of this source, or None when it has none."""
        with self._lock:
            state = self._db.execute("SELECT settled FROM layout_state WHERE source = ?",
                                     (self.source,)).fetchone()
            if state is None:
                return None
            rows = self._db.execute(
                "SELECT key, x, y, z, pinned FROM layout_nodes WHERE source = ?",
                (self.source,)).fetchall()
        keys = [r[0] for r in rows]
        pos = np.array([r[1:4] for r in rows], np.float32).reshape(-1, 3)
        pinned = np.array([bool(r[4]) for r in rows], bool)
        return Layout(keys, pos, pinned, bool(state[0]))

    def save(self, layout: Layout) -> None:
        """Replace this source's layout, in one transaction."""
        rows = [(self.source, k, float(p[0]), float(p[1]), float(p[2]), int(pin))
                for k, p, pin in zip(layout.keys, layout.pos.tolist(), layout.pinned.tolist(),
                                     strict=True)]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute("DELETE FROM layout_nodes WHERE source = ?", (self.source,))
                    self._db.executemany("INSERT INTO layout_nodes VALUES (?, ?, ?, ?, ?, ?)",
                                         rows)
                    self._db.execute("INSERT OR REPLACE INTO layout_state VALUES (?, ?, ?, ?)",
                                     (self.source, int(layout.settled), time.time(), len(rows)))
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot save the layout ({exc})") from exc


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
