"""The smallest topology change between two versions of a source, by node key.

A source re-read after an edit is compared with what it said before, key by key: nodes added,
removed, or updated in place (label, type or metadata: a placeholder promoted to a page keeps its
id), edges added, removed, or re-weighted. Nothing here knows ids: the graph gives ids to what is
added (fresh ones, never reused) and looks up the rest by key.

:func:`canonical` reads a :class:`~graphwire.graph.model.GraphData` exactly as
``Graph.from_data`` builds a graph from it (one node per key, self-links dropped, an edge stated
twice pulls with the sum of its weights, the last stated edge type wins), so two sources that
build equal graphs have equal canonical forms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .model import EdgeSpec, Graph, GraphData, GraphError, NodeSpec, NodeType

EdgeKey = tuple[str, str]
"""An undirected edge by the keys of its ends, the smaller key first."""


def edge_key(a: str, b: str) -> EdgeKey:
    """The canonical key of the edge between ``a`` and ``b``."""
    return (a, b) if a < b else (b, a)


@dataclass(frozen=True, slots=True)
class NodeState:
    """What a node is apart from its id and position."""

    label: str
    type: NodeType
    metadata: Mapping[str, Any]

    def spec(self, key: str) -> NodeSpec:
        """The node ``key`` with this state, as a graph takes it."""
        return NodeSpec(key, self.label, self.type, dict(self.metadata))


@dataclass(slots=True)
class Canonical:
    """A graph by key: nodes and undirected edges ``(weight, type)``."""

    nodes: dict[str, NodeState] = field(default_factory=dict)
    edges: dict[EdgeKey, tuple[float, str | None]] = field(default_factory=dict)


def canonical(data: GraphData) -> Canonical:
    """The graph ``Graph.from_data(data)`` would build, by key; a GraphError where it would
    fail (a key twice, an edge to an unknown key, a weight that is not a positive number).

    Read straight from the data: building the graph costs 5x as much (3 s against 0.6 s at
    100,000 nodes), and this runs on every change of a watched file."""
    out = Canonical()
    for spec in data.nodes:
        if not isinstance(spec.key, str) or not spec.key:
            raise GraphError("a node key must be a non-empty string")
        if spec.key in out.nodes:
            raise GraphError(f"node key {spec.key!r} appears twice")
        out.nodes[spec.key] = NodeState(spec.label if spec.label is not None else spec.key,
                                        NodeType(spec.type), dict(spec.metadata))
    for e in data.edges:
        a, b = str(e.source), str(e.target)
        for end in (a, b):
            if end not in out.nodes:
                raise GraphError(f"unknown node key {end!r}")
        if a == b:
            continue
        w = float(e.weight)
        if not math.isfinite(w) or w <= 0:
            raise GraphError(f"edge weight {e.weight!r} must be a positive number")
        k = edge_key(a, b)
        earlier = out.edges.get(k)
        if earlier is not None:
            out.edges[k] = (earlier[0] + w, e.type if e.type is not None else earlier[1])
        else:
            out.edges[k] = (w, e.type)
    return out


def graph_canonical(g: Graph) -> Canonical:
    """The live part of a graph, by key (hold the simulation lock while it may change)."""
    out = Canonical()
    for nid in g.live_ids().tolist():
        out.nodes[g.keys[nid]] = NodeState(g.labels[nid], g.node_type(nid), g.metadata[nid])
    for e in g.edges():
        out.edges[edge_key(g.keys[e.source], g.keys[e.target])] = (e.weight, e.type)
    return out


@dataclass(slots=True)
class TopologyDiff:
    """What changed between two versions of a graph, by key (see the module docstring)."""

    added_nodes: list[NodeSpec] = field(default_factory=list)
    removed_nodes: list[str] = field(default_factory=list)
    updated_nodes: list[NodeSpec] = field(default_factory=list)
    added_edges: list[EdgeSpec] = field(default_factory=list)
    removed_edges: list[EdgeKey] = field(default_factory=list)
    updated_edges: list[EdgeSpec] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added_nodes or self.removed_nodes or self.updated_nodes
                    or self.added_edges or self.removed_edges or self.updated_edges)

    @property
    def size(self) -> int:
        """How many nodes and edges the change touches."""
        return (len(self.added_nodes) + len(self.removed_nodes) + len(self.updated_nodes)
                + len(self.added_edges) + len(self.removed_edges) + len(self.updated_edges))

    def summary(self) -> str:
        """A short account for logs: ``+2 -1 ~0 nodes, +3 -0 ~1 edges``."""
        return (f"+{len(self.added_nodes)} -{len(self.removed_nodes)} "
                f"~{len(self.updated_nodes)} nodes, +{len(self.added_edges)} "
                f"-{len(self.removed_edges)} ~{len(self.updated_edges)} edges")


def diff(old: Canonical, new: Canonical) -> TopologyDiff:
    """The change that turns ``old`` into ``new``: nodes and edges in key order."""
    out = TopologyDiff()
    for key in sorted(old.nodes.keys() - new.nodes.keys()):
        out.removed_nodes.append(key)
    for key in sorted(new.nodes):
        state = new.nodes[key]
        before = old.nodes.get(key)
        if before is None:
            out.added_nodes.append(state.spec(key))
        elif before != state:
            out.updated_nodes.append(state.spec(key))
    gone = set(out.removed_nodes)
    for k in sorted(old.edges.keys() - new.edges.keys()):
        if k[0] not in gone and k[1] not in gone:  # those go with their node
            out.removed_edges.append(k)
    for k in sorted(new.edges):
        w, kind = new.edges[k]
        before_edge = old.edges.get(k)
        if before_edge is None:
            out.added_edges.append(EdgeSpec(k[0], k[1], w, kind))
        elif before_edge != (w, kind):
            out.updated_edges.append(EdgeSpec(k[0], k[1], w, kind))
    return out
