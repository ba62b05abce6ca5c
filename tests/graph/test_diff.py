"""The topology diff by key: what changed between two versions of a source."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphwire.graph import Graph
from graphwire.graph.diff import canonical, diff, graph_canonical
from graphwire.graph.model import EdgeSpec, GraphData, GraphError, NodeSpec


def data(nodes: dict[str, str], edges: list[tuple[str, str, float]]) -> GraphData:
    return GraphData([NodeSpec(k, label=v) for k, v in nodes.items()],
                     [EdgeSpec(a, b, w) for a, b, w in edges])


def test_canonical_reads_data_as_the_graph_builds_it() -> None:
    d = GraphData([NodeSpec("b"), NodeSpec("a", label="A")],
                  [EdgeSpec("b", "a", 1.0, "link"), EdgeSpec("a", "b", 2.0, None),
                   EdgeSpec("a", "a", 1.0)])
    c = canonical(d)
    assert c.nodes["a"].label == "A" and c.nodes["b"].label == "b"
    assert c.edges == {("a", "b"): (3.0, "link")}
    assert c == graph_canonical(Graph.from_data(d))


def test_canonical_refuses_what_the_graph_refuses() -> None:
    with pytest.raises(GraphError, match="twice"):
        canonical(GraphData([NodeSpec("a"), NodeSpec("a")], []))
    with pytest.raises(GraphError, match="unknown node key 'z'"):
        canonical(GraphData([NodeSpec("a")], [EdgeSpec("a", "z")]))
    with pytest.raises(GraphError, match="positive"):
        canonical(GraphData([NodeSpec("a"), NodeSpec("b")], [EdgeSpec("a", "b", -1.0)]))


def test_diff_is_the_smallest_change() -> None:
    old = canonical(data({"a": "a", "b": "b", "c": "c"}, [("a", "b", 1), ("b", "c", 1)]))
    new = canonical(data({"a": "A", "b": "b", "d": "d"}, [("a", "b", 2), ("a", "d", 1)]))
    d = diff(old, new)
    assert [n.key for n in d.added_nodes] == ["d"]
    assert d.removed_nodes == ["c"]
    assert [(n.key, n.label) for n in d.updated_nodes] == [("a", "A")]
    assert [(e.source, e.target) for e in d.added_edges] == [("a", "d")]
    assert d.removed_edges == []  # b-c goes with c
    assert [(e.source, e.target, e.weight) for e in d.updated_edges] == [("a", "b", 2.0)]
    assert not diff(new, new) and d.size == 5


@st.composite
def graph_data(draw: st.DrawFn) -> GraphData:
    keys = draw(st.lists(st.sampled_from("abcdefgh"), unique=True, min_size=1))
    labels = {k: draw(st.sampled_from([k, k.upper()])) for k in keys}
    edges = draw(st.lists(st.tuples(st.sampled_from(keys), st.sampled_from(keys),
                                    st.sampled_from([1.0, 2.0])), max_size=12))
    return data(labels, edges)


@settings(max_examples=150, deadline=None)
@given(graph_data(), graph_data())
def test_applying_the_diff_to_a_graph_gives_the_new_graph(old: GraphData,
                                                          new: GraphData) -> None:
    from graphwire.simulation import Simulation

    sim = Simulation(Graph.from_data(old), seed=random.randrange(100))
    before = {sim.graph.keys[i]: i for i in sim.graph.live_ids().tolist()}
    change = sim.change(diff(canonical(old), canonical(new)))
    g = sim.graph
    assert graph_canonical(g) == canonical(new)
    for key, nid in before.items():  # ids of kept keys stay, removed ids are never reused
        if g.id_of(key) is not None:
            assert g.id_of(key) == nid
    assert set(change.added_nodes).isdisjoint(before.values())
    assert g.topology_version <= 1  # one topology change at most
