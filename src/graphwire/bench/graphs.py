"""Standard graphs for benchmarks and quality checks (networkx generators, fixed seeds)."""

from __future__ import annotations

import networkx as nx
import numpy as np

from graphwire.graph.model import EdgeSpec, Graph, GraphData, NodeSpec


def _graph(g: nx.Graph, name: str) -> Graph:
    width = len(str(max(g.number_of_nodes() - 1, 0)))
    key = [str(i).zfill(width) for i in range(g.number_of_nodes())]  # key order = node order
    return Graph.from_data(GraphData(
        [NodeSpec(key[i]) for i in g.nodes],
        [EdgeSpec(key[a], key[b]) for a, b in g.edges],
        name=name,
    ))


def barabasi_albert(n: int, m: int = 3, seed: int = 1) -> Graph:
    """A Barabási–Albert graph: n nodes, m edges per new node (the standard trace: 10k, 3, 1)."""
    return _graph(nx.barabasi_albert_graph(n, m, seed=seed), f"ba{n}")


SBM_BLOCKS, SBM_SIZE, SBM_P_IN, SBM_P_OUT = 20, 100, 0.2, 0.001
"""The planted-community graph: 20 blocks of 100 nodes, about 20 edges a node inside its block
and 2 to other blocks."""


def planted_communities(blocks: int = SBM_BLOCKS, seed: int = 3) -> tuple[Graph, np.ndarray]:
    """The stochastic block model of the quality check (node i is id i), and each node's
    block."""
    p = np.full((blocks, blocks), SBM_P_OUT)
    np.fill_diagonal(p, SBM_P_IN)
    g = nx.stochastic_block_model([SBM_SIZE] * blocks, p.tolist(), seed=seed)
    return _graph(g, f"sbm{blocks}"), np.arange(blocks * SBM_SIZE) // SBM_SIZE


def grid(side: int = 100) -> Graph:
    """A side × side grid graph; node ``r · side + c`` is row r, column c."""
    g = nx.grid_2d_graph(side, side)
    return _graph(nx.convert_node_labels_to_integers(g, ordering="sorted"), f"grid{side}")
