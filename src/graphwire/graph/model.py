"""The graph: nodes with ids and keys (docs/protocol.md §3.1) and undirected weighted edges.

Everything the physics reads lives in numpy arrays indexed by node id: positions, velocities,
masses, the pinned mask, the alive mask and a CSR adjacency. Ids are ``0 … N-1`` in ascending key
order at load; nodes added later take fresh ids; removed ids are never reused, so the arrays are
indexed by id and dead slots are masked out. Every change of nodes or edges bumps
``topology_version``.

The model is not thread-safe on its own: the simulation serialises access with its lock.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_ID = (1 << 30) - 1


class NodeType(StrEnum):
    """The two node types of §3.1."""

    KNOWLEDGE = "knowledge"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node as a source or a client describes it, before it has an id."""

    key: str
    label: str | None = None
    type: NodeType = NodeType.KNOWLEDGE
    metadata: Mapping[str, Any] = field(default_factory=dict)
    position: tuple[float, float, float] | None = None


@dataclass(frozen=True, slots=True)
class EdgeSpec:
    """An undirected edge between two keys, with a spring weight (default 1)."""

    source: str
    target: str
    weight: float = 1.0
    type: str | None = None


@dataclass(slots=True)
class GraphData:
    """What a source produces: node and edge specs, in any order."""

    nodes: list[NodeSpec]
    edges: list[EdgeSpec]
    name: str = "graph"
    skipped: list[str] = field(default_factory=list)
    """Parts of the source left out because they could not be read, each with why (a vault's
    unreadable pages: one bad note does not keep the others from being served)."""
    warnings: list[str] = field(default_factory=list)
    """What was read but not all of it, each with why (a vault page whose front matter was
    ignored): nothing is left out of the graph."""


class GraphError(ValueError):
    """A request that the graph cannot honour (unknown node, bad weight, duplicate key)."""


class UnknownNodeError(GraphError):
    """A request names a node id or key the graph does not hold."""


@dataclass(frozen=True, slots=True)
class Edge:
    """An edge as stored: ends as ids with ``source < target``."""

    source: int
    target: int
    weight: float
    type: str | None


def _edge_key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


class Graph:
    """Nodes and undirected weighted edges, with the arrays the physics reads."""

    def __init__(self, capacity: int = 16) -> None:
        cap = max(16, capacity)
        self.keys: list[str] = []
        self.labels: list[str] = []
        self.metadata: list[dict[str, Any]] = []
        self.agent = np.zeros(cap, bool)
        self.alive = np.zeros(cap, bool)
        self.pos = np.zeros((cap, 3), np.float32)
        self.vel = np.zeros((cap, 3), np.float32)
        self.mass = np.ones(cap, np.float32)
        self.pinned = np.zeros(cap, bool)
        self._by_key: dict[str, int] = {}
        self._edges: dict[tuple[int, int], tuple[float, str | None]] = {}
        self.topology_version = 0
        self._csr: tuple[npt.NDArray[np.int64], npt.NDArray[np.int32],
                         npt.NDArray[np.float32]] | None = None
        self._live: npt.NDArray[np.int64] | None = None
        self._batch = 0
        self._dirty = False

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_data(cls, data: GraphData) -> Graph:
        """Build a graph: ids in ascending key order; edges to unknown keys are an error."""
        specs: dict[str, NodeSpec] = {}
        for spec in data.nodes:
            if spec.key in specs:
                raise GraphError(f"node key {spec.key!r} appears twice")
            specs[spec.key] = spec
        g = cls(len(specs))
        for key in sorted(specs):
            g._append(specs[key])
        g._add_edges(data.edges, accumulate=True)
        g.topology_version = 0
        return g

    def _append(self, spec: NodeSpec) -> int:
        if not isinstance(spec.key, str) or not spec.key:
            raise GraphError("a node key must be a non-empty string")
        if spec.key in self._by_key:
            raise GraphError(f"node key {spec.key!r} already exists")
        nid = len(self.keys)
        if nid > MAX_ID:
            raise GraphError("the id space of this epoch (2^30 ids) is used up")
        self._grow(nid + 1)
        self.keys.append(spec.key)
        self.labels.append(spec.label if spec.label is not None else spec.key)
        self.metadata.append(dict(spec.metadata))
        self.agent[nid] = NodeType(spec.type) == NodeType.AGENT
        self.alive[nid] = True
        self.mass[nid] = 1.0
        self.vel[nid] = 0.0
        self.pinned[nid] = False
        if spec.position is not None:
            self.pos[nid] = spec.position
        else:
            self.pos[nid] = np.nan  # placed by the simulation (see initial_positions)
        self._by_key[spec.key] = nid
        return nid

    def _grow(self, need: int) -> None:
        cap = self.alive.shape[0]
        if need <= cap:
            return
        new = max(need, cap * 2)
        for name in ("agent", "alive", "mass", "pinned"):
            old = getattr(self, name)
            arr = np.zeros(new, old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)
        for name in ("pos", "vel"):
            old = getattr(self, name)
            arr = np.zeros((new, 3), old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)

    # -- reading ---------------------------------------------------------------------------
    @property
    def id_limit(self) -> int:
        """The highest id assigned in this graph + 1 (the SSSP ``count`` of §4.9)."""
        return len(self.keys)

    @property
    def node_count(self) -> int:
        """Live nodes."""
        return int(self.live_ids().shape[0])

    @property
    def edge_count(self) -> int:
        """Edges between live nodes."""
        return len(self._edges)

    def live_ids(self) -> npt.NDArray[np.int64]:
        """Ids of live nodes, ascending (cached until the topology changes)."""
        if self._live is None:
            self._live = np.flatnonzero(self.alive[: self.id_limit]).astype(np.int64)
        return self._live

    def id_of(self, key: str) -> int | None:
        """The id of a live node with this key."""
        nid = self._by_key.get(key)
        return nid if nid is not None and self.alive[nid] else None

    def is_live(self, nid: int) -> bool:
        """Whether ``nid`` names a live node."""
        return 0 <= nid < self.id_limit and bool(self.alive[nid])

    def node_type(self, nid: int) -> NodeType:
        """The type of a node."""
        return NodeType.AGENT if self.agent[nid] else NodeType.KNOWLEDGE

    def node_json(self, nid: int) -> dict[str, Any]:
        """A node as in ``/api/graph/data``."""
        x, y, z = (float(c) for c in self.pos[nid])
        return {
            "id": nid, "key": self.keys[nid], "label": self.labels[nid],
            "type": self.node_type(nid).value, "x": x, "y": y, "z": z,
            "metadata": self.metadata[nid],
        }

    def edges(self) -> list[Edge]:
        """Every edge, ``source < target``, in ascending order."""
        return [Edge(a, b, w, t) for (a, b), (w, t) in sorted(self._edges.items())]

    def edge_json(self, e: Edge) -> dict[str, Any]:
        """An edge as in ``/api/graph/data``."""
        return {"source": e.source, "target": e.target, "weight": e.weight, "type": e.type}

    def has_edge(self, a: int, b: int) -> bool:
        """Whether an edge joins a and b."""
        return _edge_key(a, b) in self._edges

    def edge_arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                   npt.NDArray[np.float32]]:
        """Edges as three arrays (source, target, weight)."""
        if not self._edges:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
        # fromiter over flat iterators: several times faster than arrays of tuples, and this
        # runs (under the simulation lock) after every topology change
        m = len(self._edges)
        pairs = np.fromiter(itertools.chain.from_iterable(self._edges), np.int64,
                            count=2 * m).reshape(m, 2)
        weights = np.fromiter((w for w, _ in self._edges.values()), np.float32, count=m)
        return pairs[:, 0], pairs[:, 1], weights

    def csr(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """Symmetric adjacency over ids ``0 … id_limit-1``: (indptr, neighbours, weights)."""
        if self._csr is None:
            n = self.id_limit
            src, dst, w = self.edge_arrays()
            rows = np.concatenate([src, dst])
            cols = np.concatenate([dst, src]).astype(np.int32)
            ws = np.concatenate([w, w])
            order = np.argsort(rows, kind="stable")
            indptr = np.zeros(n + 1, np.int64)
            np.add.at(indptr, rows + 1, 1)
            self._csr = (np.cumsum(indptr), cols[order], ws[order])
        return self._csr

    # -- changing ---------------------------------------------------------------------------
    def _changed(self) -> None:
        self._csr = None
        self._live = None
        if self._batch:
            self._dirty = True
        else:
            self.topology_version += 1

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Make every change inside one topology change (one version bump)."""
        self._batch += 1
        try:
            yield
        finally:
            self._batch -= 1
            if not self._batch and self._dirty:
                self._dirty = False
                self.topology_version += 1

    def add_nodes(self, specs: Iterable[NodeSpec]) -> list[int]:
        """Add nodes with fresh ids (never reused); all or nothing."""
        specs = list(specs)
        keys = [s.key for s in specs]
        if len(set(keys)) != len(keys):
            raise GraphError("the same key appears twice in one request")
        for k in keys:
            if not isinstance(k, str) or not k:
                raise GraphError("a node key must be a non-empty string")
            if k in self._by_key:
                raise GraphError(f"node key {k!r} already exists")
        ids = [self._append(s) for s in specs]
        if ids:
            self._changed()
        return ids

    def update_nodes(self, specs: Iterable[NodeSpec]) -> list[int]:
        """Give live nodes (by key) a new label, type and metadata; positions and ids stay.

        Returns the ids of the nodes updated; keys of no live node are an error (nothing
        changes).
        """
        specs = list(specs)
        ids = []
        for s in specs:
            nid = self.id_of(s.key)
            if nid is None:
                raise GraphError(f"unknown node key {s.key!r}")
            ids.append(nid)
        for nid, s in zip(ids, specs, strict=True):
            self.labels[nid] = s.label if s.label is not None else s.key
            self.metadata[nid] = dict(s.metadata)
            self.agent[nid] = NodeType(s.type) == NodeType.AGENT
        if ids:
            self._changed()
        return ids

    def resolve(self, end: str | int) -> int:
        """The id of a live node given by id or key, or GraphError."""
        if isinstance(end, int) and not isinstance(end, bool):
            if not self.is_live(end):
                raise UnknownNodeError(f"unknown node id {end}")
            return end
        nid = self.id_of(str(end))
        if nid is None:
            raise UnknownNodeError(f"unknown node key {end!r}")
        return nid

    def _add_edges(self, specs: Iterable[EdgeSpec], *, accumulate: bool) -> list[Edge]:
        staged: dict[tuple[int, int], tuple[float, str | None]] = {}
        for e in specs:
            a, b = self.resolve(e.source), self.resolve(e.target)
            if a == b:
                continue  # a self-link carries no force and no path
            w = float(e.weight)
            if not np.isfinite(w) or w <= 0:
                raise GraphError(f"edge weight {e.weight!r} must be a positive number")
            k = _edge_key(a, b)
            earlier = staged.get(k)
            if accumulate and earlier is not None:
                w += earlier[0]  # a link stated twice (two mentions, alias and tag) pulls harder
            kind = e.type if e.type is not None else (earlier or self._edges.get(k, (0, None)))[1]
            staged[k] = (w, kind)
        self._edges.update(staged)
        if staged:
            self._changed()
        return [Edge(a, b, w, t) for (a, b), (w, t) in staged.items()]

    def add_edges(self, specs: Iterable[EdgeSpec]) -> list[Edge]:
        """Add edges, or set the weight of existing ones; ends are ids or keys; all or nothing."""
        return self._add_edges(list(specs), accumulate=False)

    def remove_edges(self, pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """Remove edges; returns those that existed."""
        gone = []
        for a, b in pairs:
            k = _edge_key(int(a), int(b))
            if self._edges.pop(k, None) is not None:
                gone.append(k)
        if gone:
            self._changed()
        return gone

    def remove_node(self, nid: int) -> list[tuple[int, int]]:
        """Remove a node and its edges; its id is never used again. Returns removed edges."""
        if not self.is_live(nid):
            raise UnknownNodeError(f"unknown node id {nid}")
        gone = [k for k in self._edges if nid in k]
        for k in gone:
            del self._edges[k]
        self.alive[nid] = False
        self.pinned[nid] = False
        self.vel[nid] = 0.0
        self._by_key.pop(self.keys[nid], None)
        self._changed()
        return gone
