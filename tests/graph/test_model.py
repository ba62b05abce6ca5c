"""The graph model: ids in key order, fresh ids, CSR, topology versions."""

from __future__ import annotations

import numpy as np
import pytest

from graphwire.graph.model import EdgeSpec, Graph, GraphData, GraphError, NodeSpec, NodeType


def small() -> Graph:
    return Graph.from_data(GraphData(
        [NodeSpec("b"), NodeSpec("a"), NodeSpec("c", type=NodeType.AGENT)],
        [EdgeSpec("a", "b"), EdgeSpec("b", "a", 2.0), EdgeSpec("b", "c", 0.5)]))


def test_ids_follow_key_order_and_duplicate_links_add_up() -> None:
    g = small()
    assert g.keys == ["a", "b", "c"] and g.id_of("c") == 2
    assert g.node_type(2) == NodeType.AGENT and g.topology_version == 0
    assert [(e.source, e.target, e.weight) for e in g.edges()] == [(0, 1, 3.0), (1, 2, 0.5)]
    indptr, nbr, w = g.csr()
    assert indptr.tolist() == [0, 1, 3, 4]
    assert sorted(zip(nbr[1:3].tolist(), w[1:3].tolist(), strict=True)) == [(0, 3.0), (2, 0.5)]


def test_runtime_changes_bump_the_version_and_never_reuse_ids() -> None:
    g = small()
    assert g.add_nodes([NodeSpec("d")]) == [3]
    g.add_edges([EdgeSpec(3, "a", 4.0)])
    assert g.has_edge(0, 3) and g.topology_version == 2
    g.add_edges([EdgeSpec("d", 0, 1.5)])  # an existing edge is re-weighted, not added to
    assert [e.weight for e in g.edges() if e.target == 3] == [1.5]
    gone = g.remove_node(3)
    assert gone == [(0, 3)] and not g.is_live(3) and g.id_of("d") is None
    assert g.add_nodes([NodeSpec("d")]) == [4]
    assert g.id_limit == 5 and g.node_count == 4
    assert g.live_ids().tolist() == [0, 1, 2, 4]


@pytest.mark.parametrize("bad", [
    [EdgeSpec("a", "zz")], [EdgeSpec("a", "b", 0.0)], [EdgeSpec("a", "b", float("nan"))],
    [EdgeSpec(99, "b")],
])
def test_bad_edges_change_nothing(bad: list[EdgeSpec]) -> None:
    g = small()
    before = (g.edges(), g.topology_version)
    with pytest.raises(GraphError):
        g.add_edges([EdgeSpec("a", "c"), *bad])
    assert (g.edges(), g.topology_version) == before


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(GraphError, match="twice"):
        Graph.from_data(GraphData([NodeSpec("a"), NodeSpec("a")], []))
    g = small()
    with pytest.raises(GraphError, match="exists"):
        g.add_nodes([NodeSpec("z"), NodeSpec("a")])
    assert g.id_of("z") is None and g.id_limit == 3


def test_arrays_grow_past_the_initial_capacity() -> None:
    g = Graph.from_data(GraphData([NodeSpec(f"{i:03d}") for i in range(20)], []))
    g.add_nodes([NodeSpec(f"x{i}") for i in range(100)])
    assert g.pos.shape[0] >= 120 and g.alive[:120].all()
    assert np.isnan(g.pos[119, 0])  # not placed yet: the simulation places new nodes
