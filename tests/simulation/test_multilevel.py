"""The multilevel start: coarsening, refinement level by level, and what ends it early."""

from __future__ import annotations

import itertools

import numpy as np

from graphwire.bench.graphs import barabasi_albert, grid
from graphwire.bench.quality import neighbour_share
from graphwire.graph.model import NodeSpec
from graphwire.simulation import PhysicsParams, Simulation, multilevel


def finest(sim: Simulation) -> multilevel.Level:
    live = sim.graph.live_ids()
    return sim._finest_level(live)


def test_each_level_is_smaller_and_keeps_weight_and_edges() -> None:
    g = grid(40)
    sim = Simulation(g, PhysicsParams(multilevel=False))
    levels = multilevel.hierarchy(finest(sim))
    sizes = [lv.size for lv in levels]
    assert sizes[0] == 1600 and sizes[-1] <= multilevel.COARSEST
    assert all(b <= 0.75 * a for a, b in itertools.pairwise(sizes))
    for fine, coarse in itertools.pairwise(levels):
        assert fine.parent is not None and fine.parent.shape == (fine.size,)
        assert set(np.unique(fine.parent)) == set(range(coarse.size))  # every group has members
        np.testing.assert_allclose(coarse.weight.sum(), fine.weight.sum())
        # an edge between two groups stands for the fine edges between their members
        rows = np.repeat(np.arange(fine.size), np.diff(fine.indptr))
        crossing = fine.parent[rows] != fine.parent[fine.nbr]
        np.testing.assert_allclose(coarse.wts.sum(), fine.wts[crossing].sum())
    assert levels[-1].parent is None


def test_a_star_collapses_into_its_centre() -> None:
    import networkx as nx

    from graphwire.bench.graphs import _graph

    g = _graph(nx.star_graph(200), "star")
    sim = Simulation(g, PhysicsParams(multilevel=False))
    levels = multilevel.hierarchy(finest(sim))
    assert levels[1].size < 10  # the leaves joined the centre's group, not 100 pairs


def test_small_graphs_are_laid_out_in_one_level() -> None:
    sim = Simulation(barabasi_albert(multilevel.MIN_NODES - 1))
    assert sim.refinement is None


def test_the_refinement_shows_its_levels_and_ends_in_the_graph() -> None:
    g = grid(30)
    indptr, nbr, _ = g.csr()
    sim = Simulation(g)
    r = sim.refinement
    assert r is not None and len(r.levels) > 3
    shares, levels = [], []
    while sim.refinement is not None:
        snap = sim.publish()
        # every node is shown, where the current coarse layout hands it down to
        assert np.unique(snap.pos, axis=0).shape[0] == 900
        shares.append(neighbour_share(snap.pos, indptr, nbr))
        levels.append(sim.refinement.index)
        sim.step(1)
    assert levels == sorted(levels, reverse=True) and levels[-1] == 1
    assert shares[-1] > shares[0]  # the picture sharpens as it refines
    assert neighbour_share(g.pos[:900], indptr, nbr) > 0.45  # already a sheet, not a ball
    sim.run_until_settled(20_000)
    assert sim.settled and neighbour_share(g.pos[:900], indptr, nbr) > 0.55


def test_a_command_during_the_refinement_ends_it_at_once() -> None:
    g = grid(30)
    sim = Simulation(g)
    sim.step(2)
    assert sim.refinement is not None
    sim.add([NodeSpec("late")])
    assert sim.refinement is None
    live = g.live_ids()
    assert np.all(np.isfinite(g.pos[live]))
    assert np.unique(g.pos[live], axis=0).shape[0] == live.shape[0]  # no two nodes coincide
    sim.step(5)
    assert np.all(np.isfinite(g.pos[live]))


def test_the_multilevel_start_unfolds_what_one_level_folds() -> None:
    def share(params: PhysicsParams) -> float:
        g = grid(60)
        sim = Simulation(g, params)
        sim.step(300)
        indptr, nbr, _ = g.csr()
        return neighbour_share(g.pos[:3600], indptr, nbr)

    # measured: 0.65 against 0.54 after 300 steps
    assert share(PhysicsParams()) > share(PhysicsParams(multilevel=False)) + 0.05


def test_a_frozen_layout_shows_every_node_not_the_coarse_groups() -> None:
    g = grid(20)
    sim = Simulation(g, PhysicsParams(enabled=False))
    snap = sim.publish()
    assert sim.refinement is None
    assert np.unique(snap.pos, axis=0).shape[0] == 400
