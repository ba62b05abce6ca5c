"""Shortest paths: scipy's Dijkstra over lengths 1/weight, agreeing with networkx."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from graphwire.graph.model import EdgeSpec, Graph, GraphData, NodeSpec
from graphwire.simulation import no_paths, shortest_paths


def test_distances_and_parents_match_networkx() -> None:
    rng = np.random.default_rng(2)
    nxg = nx.gnm_random_graph(300, 900, seed=2)
    weights = {e: float(rng.uniform(0.2, 5)) for e in nxg.edges}
    nxg.add_node(300)  # unreachable
    g = Graph.from_data(GraphData(
        [NodeSpec(f"{i:03d}") for i in nxg.nodes],
        [EdgeSpec(f"{a:03d}", f"{b:03d}", w) for (a, b), w in weights.items()]))
    for (a, b), w in weights.items():
        nxg[a][b]["length"] = 1.0 / w
    sp = shortest_paths(g, 0)
    want = nx.single_source_dijkstra_path_length(nxg, 0, weight="length")
    for node, dist in want.items():
        assert sp.distance[node] == pytest.approx(dist, rel=1e-5)
    assert sp.distance[0] == 0 and sp.parent[0] == -1
    assert np.isinf(sp.distance[300]) and sp.parent[300] == -1
    for node in range(1, 300):  # each parent lies on a shortest path
        par = sp.parent[node]
        if node not in want:
            assert par == -1 and np.isinf(sp.distance[node])
            continue
        assert sp.distance[node] == pytest.approx(
            sp.distance[par] + 1.0 / weights.get((par, node), weights.get((node, par), 0)),
            rel=1e-5)


def test_removed_ids_and_no_source() -> None:
    g = Graph.from_data(GraphData([NodeSpec(k) for k in "abcd"],
                                  [EdgeSpec("a", "b"), EdgeSpec("b", "c"), EdgeSpec("c", "d")]))
    g.remove_node(2)
    sp = shortest_paths(g, 0)
    assert sp.distance.tolist()[:2] == [0.0, 1.0]
    assert np.isinf(sp.distance[2]) and np.isinf(sp.distance[3]) and sp.parent[3] == -1
    none = no_paths(g)
    assert none.source is None and np.all(np.isinf(none.distance)) and np.all(none.parent == -1)
    with pytest.raises(ValueError):
        shortest_paths(g, 2)
