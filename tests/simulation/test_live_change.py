"""A change read from the source: one topology change, newcomers placed by their neighbours,
a settled layout woken only around them, and a remembered layout that comes back at rest."""

from __future__ import annotations

import numpy as np

from graphwire.graph.diff import TopologyDiff
from graphwire.graph.model import EdgeSpec, NodeSpec
from graphwire.simulation import Simulation

from .test_engine import path


def test_a_new_page_starts_by_its_neighbours_and_wakes_only_its_neighbourhood() -> None:
    g = path(40)
    sim = Simulation(g)
    sim.run_until_settled(30_000)
    assert sim.settled
    before = g.pos[g.live_ids()].copy()
    version = g.topology_version
    change = sim.change(TopologyDiff(
        added_nodes=[NodeSpec("new", label="New")],
        added_edges=[EdgeSpec("new", g.keys[3]), EdgeSpec("new", g.keys[5])]))
    assert g.topology_version == version + 1  # one topology change
    (nid,) = change.added_nodes
    assert nid == 40 and len(change.added_edges) == 2 and not sim.settled  # woken
    centre = (g.pos[3] + g.pos[5]) / 2
    assert np.linalg.norm(g.pos[nid] - centre) < 2 * sim.params.rest_length
    sim.run_until_settled(30_000)
    assert sim.settled
    moved = np.linalg.norm(g.pos[:40] - before, axis=1)
    assert moved[:10].max() > 0  # the neighbourhood made room
    assert np.all(moved[12:] == 0)  # beyond two hops of what changed, nothing moved


def test_updates_keep_ids_and_places_and_missing_keys_are_tolerated() -> None:
    g = path(5)
    sim = Simulation(g)
    sim.run_until_settled(10_000)
    at = g.pos[2].copy()
    change = sim.change(TopologyDiff(
        updated_nodes=[NodeSpec(g.keys[2], label="renamed", metadata={"placeholder": True})],
        removed_nodes=["not there"], removed_edges=[("not", "there")],
        added_edges=[EdgeSpec(g.keys[0], "missing")]))
    assert change.updated_nodes == [2] and not change.added_edges
    assert g.labels[2] == "renamed" and g.metadata[2] == {"placeholder": True}
    assert np.array_equal(g.pos[2], at) and sim.settled  # labels do not move anything
