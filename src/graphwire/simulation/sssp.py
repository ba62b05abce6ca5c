"""Single-source shortest paths over the graph (docs/protocol.md §4.9), with scipy's Dijkstra.

The length of an edge is ``1/weight``: a strong link is a short path. The result is indexed by
node id up to the highest id assigned: ``+inf`` and ``-1`` where no path exists (removed ids
included); the source has distance 0 and parent -1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from graphwire.graph.model import Graph


@dataclass(frozen=True, slots=True, eq=False)
class ShortestPaths:
    """Distance and parent of every id, from ``source`` (None: no source set)."""

    source: int | None
    distance: npt.NDArray[np.float32]
    parent: npt.NDArray[np.int32]
    topology_version: int


def no_paths(g: Graph) -> ShortestPaths:
    """The answer when no source is set: every distance +inf, every parent -1."""
    n = g.id_limit
    return ShortestPaths(None, np.full(n, np.inf, np.float32), np.full(n, -1, np.int32),
                         g.topology_version)


def shortest_paths(g: Graph, source: int | None) -> ShortestPaths:
    """Dijkstra from ``source`` over edge lengths 1/weight."""
    if source is None:
        return no_paths(g)
    if not g.is_live(source):
        raise ValueError(f"unknown node id {source}")
    n = g.id_limit
    indptr, nbr, wts = g.csr()
    lengths = csr_matrix((1.0 / wts.astype(np.float64), nbr, indptr), shape=(n, n))
    dist, pred = dijkstra(lengths, directed=True, indices=source, return_predecessors=True)
    parent = np.where(pred < 0, -1, pred).astype(np.int32)
    return ShortestPaths(source, dist.astype(np.float32), parent, g.topology_version)
