"""The remembered layout in a real SQLite file, and its background saver."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from graphwire.graph import Graph
from graphwire.graph.layout_file import Layout, read_layout, write_layout
from graphwire.graph.model import EdgeSpec, GraphData, NodeSpec
from graphwire.graph.sources import SourceError
from graphwire.settings import SettingsStore, StoreError
from graphwire.settings.layout_store import LayoutSaver, LayoutStore
from graphwire.simulation import Simulation, Snapshot


def small_graph() -> Graph:
    keys = ["a", "b", "c", "d"]
    return Graph.from_data(GraphData([NodeSpec(k) for k in keys],
                                     [EdgeSpec("a", "b"), EdgeSpec("b", "c"), EdgeSpec("c", "d")]))


def test_layouts_are_kept_per_source_beside_the_settings(tmp_path: Path) -> None:
    db = tmp_path / "settings.db"
    settings = SettingsStore(db)  # the same file holds both
    store = LayoutStore(db, "/vault/one")
    assert store.load() is None
    layout = Layout(["a", "b"], np.array([[1, 2, 3], [4.5, 5, 6]], np.float32),
                    np.array([False, True]), settled=True)
    store.save(layout)
    other = LayoutStore(db, "/vault/two")
    other.save(Layout(["a"], np.zeros((1, 3), np.float32)))
    store.close()
    again = LayoutStore(db, "/vault/one").load()
    assert again is not None and again.keys == ["a", "b"] and again.settled
    assert np.array_equal(again.pos, layout.pos) and again.pinned.tolist() == [False, True]
    store2 = LayoutStore(db, "/vault/two")
    loaded = store2.load()
    assert loaded is not None and loaded.keys == ["a"] and not loaded.settled
    assert settings.revision == 0  # the settings are untouched
    settings.close()


def test_a_layout_saved_a_row_per_node_by_an_earlier_version_is_read_then_replaced(
        tmp_path: Path) -> None:
    db = tmp_path / "settings.db"
    with sqlite3.connect(db) as old:  # the tables of the first remembered layout
        old.executescript("""
            CREATE TABLE layout_nodes (source TEXT NOT NULL, key TEXT NOT NULL, x REAL NOT NULL,
                y REAL NOT NULL, z REAL NOT NULL, pinned INTEGER NOT NULL,
                PRIMARY KEY (source, key));
            CREATE TABLE layout_state (source TEXT PRIMARY KEY, settled INTEGER NOT NULL,
                saved_at REAL NOT NULL, nodes INTEGER NOT NULL);
            INSERT INTO layout_nodes VALUES ('src', 'a', 1, 2, 3, 0), ('src', 'b', 4, 5, 6, 1),
                ('other', 'z', 7, 7, 7, 0);
            INSERT INTO layout_state VALUES ('src', 1, 0, 2), ('other', 0, 0, 1);
        """)
    old.close()
    store = LayoutStore(db, "src")
    loaded = store.load()
    assert loaded is not None and loaded.keys == ["a", "b"] and loaded.settled
    assert loaded.pos.tolist() == [[1, 2, 3], [4, 5, 6]] and loaded.pinned.tolist() == [0, 1]
    loaded.pos[0] = [9, 9, 9]
    store.save(loaded)
    again = LayoutStore(db, "src").load()
    assert again is not None and again.pos.tolist() == [[9, 9, 9], [4, 5, 6]]
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT count(*) FROM layout_nodes WHERE source = 'src'"
                             ).fetchone() == (0,)
        assert check.execute("SELECT count(*) FROM layout_nodes").fetchone() == (1,)
    check.close()
    other = LayoutStore(db, "other").load()  # another source's old layout is left as it was
    assert other is not None and other.keys == ["z"]


@pytest.mark.parametrize("damage", [
    "pos = x'00'",  # too short
    "pos = 7",  # not a blob
    "pos = '" + "x" * 24 + "'",  # text of the right length
    "pos = x'" + "0000c07f" * 6 + "'",  # NaN positions
    "pinned = 1",
    "keys = 'not json at all'",
    "keys = '[1, 2]'",
    "nodes = 3",
])
def test_a_damaged_stored_layout_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    db = tmp_path / "settings.db"
    store = LayoutStore(db, "src")
    store.save(Layout(["a", "b"], np.zeros((2, 3), np.float32)))
    assert store.load() is not None
    with sqlite3.connect(db) as broken:
        broken.execute(f"UPDATE layouts SET {damage}")
    broken.close()
    with pytest.raises(StoreError, match="damaged"):
        store.load()


def test_any_key_is_stored_even_one_that_is_not_valid_unicode(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "settings.db", "src")
    keys = ["\ud800 lone surrogate", "naïve ✓"]
    store.save(Layout(keys, np.ones((2, 3), np.float32)))
    loaded = store.load()
    assert loaded is not None and loaded.keys == keys


def test_a_layout_restores_positions_and_pins_by_key() -> None:
    g = small_graph()
    layout = Layout(["d", "a", "gone"], np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3]], np.float32),
                    np.array([True, False, False]))
    restored = layout.apply(g)
    assert sorted(restored.tolist()) == [g.id_of("a"), g.id_of("d")]
    assert g.pos[g.id_of("d")].tolist() == [1, 1, 1] and g.pinned[g.id_of("d")]
    assert np.isnan(g.pos[g.id_of("b"), 0])  # no stored place: the simulation places it
    sim = Simulation(g)
    sim.rest([g.id_of("b"), g.id_of("c")])
    assert sim.refinement is None  # no multilevel start: positions were restored
    assert not sim.settled  # the two newcomers warm their neighbourhood
    b = g.pos[g.id_of("b")]
    assert np.linalg.norm(b - (g.pos[g.id_of("a")] + g.pos[g.id_of("c")]) / 2) < \
        3 * sim.params.rest_length


def test_positions_file_round_trip_and_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "layout.json"
    layout = Layout(["x", "y"], np.array([[0.5, 1, 2], [3, 4, 5]], np.float32),
                    np.array([True, False]), settled=True)
    write_layout(path, layout, [7, 9], steps=12)
    back = read_layout(path)
    assert back.keys == ["x", "y"] and back.settled and back.pinned.tolist() == [True, False]
    assert np.array_equal(back.pos, layout.pos)
    old_style = tmp_path / "old.json"  # as `graphwire layout` wrote it before: still read
    old_style.write_text('{"nodes": [{"id": 0, "key": "x", "x": 1, "y": 2, "z": 3}], '
                         '"steps": 5, "settled": false}')
    assert read_layout(old_style).keys == ["x"]
    for text, expect in [("[1, 2]", "expected"), ('{"nodes": [{"key": "x", "x": 1}]}', "finite"),
                         ('{"nodes": [{"key": "x", "x": 1, "y": 1, "z": 1}, '
                          '{"key": "x", "x": 1, "y": 1, "z": 1}]}', "twice"),
                         ("{", "not JSON")]:
        path.write_text(text)
        with pytest.raises(SourceError, match=expect):
            read_layout(path)


def test_the_saver_writes_only_new_snapshots_at_its_pace_and_once_at_stop(
        tmp_path: Path) -> None:
    sim = Simulation(small_graph())
    store = LayoutStore(tmp_path / "s.db", "src")
    latest: list[Snapshot] = [sim.publish()]
    saved = threading.Event()
    saver = LayoutSaver(store, lambda: latest[-1], lambda: 0.05, on_save=saved.set)
    saver.start()
    assert saved.wait(10)
    first = saver.saves
    assert saver.save(latest[-1]) is False  # the same snapshot is not written twice
    sim.step(3)
    latest.append(sim.publish())
    saver.stop()
    assert saver.saves == first + 1 and saver.failures == 0
    stored = store.load()
    assert stored is not None
    g = sim.graph
    assert np.array_equal(stored.pos, g.pos[g.live_ids()])
