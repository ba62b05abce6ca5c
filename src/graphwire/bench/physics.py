"""``graphwire bench physics``: time per physics step and per shortest-path computation.

Rows ``{nodes, impl, stepMs}``: ``graphwire`` at 1,000, 10,000 and 100,000 nodes of a
Barabási–Albert graph (3 edges a node), timed after the 200 warm-up steps from the default start
(median of the timed steps); ``networkx`` (``spring_layout`` in 3D, one iteration) at 1,000 and
10,000. Rows ``{nodes: 100000, impl, ssspMs}``: ``scipy`` (graphwire's shortest paths) and
``networkx`` (``single_source_dijkstra``), lengths 1/weight, from node 0.
"""

from __future__ import annotations

import statistics
import time

import networkx as nx

from graphwire.simulation import PhysicsParams, Simulation, shortest_paths

from .graphs import barabasi_albert
from .report import Row, progress

WARMUP = 200


def graphwire_step_ms(n: int, timed: int) -> float:
    """Median ms per step at n nodes, after the warm-up steps."""
    sim = Simulation(barabasi_albert(n), PhysicsParams())
    sim.step(WARMUP)
    times = []
    for _ in range(timed):
        t0 = time.perf_counter()
        sim.step(1)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def networkx_step_ms(n: int) -> float:
    """ms for one 3D spring_layout iteration of networkx."""
    g = nx.barabasi_albert_graph(n, 3, seed=1)
    t0 = time.perf_counter()
    nx.spring_layout(g, dim=3, iterations=1, seed=1)
    return round((time.perf_counter() - t0) * 1000, 1)


def sssp_rows(n: int = 100_000) -> list[Row]:
    """scipy (as graphwire runs it) against networkx, on the same graph and lengths."""
    graph = barabasi_albert(n)
    shortest_paths(graph, 0)  # first call loads scipy's routines
    t0 = time.perf_counter()
    shortest_paths(graph, 0)
    scipy_ms = (time.perf_counter() - t0) * 1000
    g = nx.Graph()
    for e in graph.edges():
        g.add_edge(e.source, e.target, length=1.0 / e.weight)
    t0 = time.perf_counter()
    nx.single_source_dijkstra(g, 0, weight="length")
    nx_ms = (time.perf_counter() - t0) * 1000
    return [{"nodes": n, "impl": "scipy", "ssspMs": round(scipy_ms, 1)},
            {"nodes": n, "impl": "networkx", "ssspMs": round(nx_ms, 1)}]


def run() -> list[Row]:
    """All rows of the physics bench."""
    rows: list[Row] = []
    for n, timed in ((1000, 50), (10_000, 30), (100_000, 8)):
        progress(f"physics: graphwire {n} nodes")
        rows.append({"nodes": n, "impl": "graphwire", "stepMs": graphwire_step_ms(n, timed)})
    for n in (1000, 10_000):
        progress(f"physics: networkx {n} nodes")
        rows.append({"nodes": n, "impl": "networkx", "stepMs": networkx_step_ms(n)})
    progress("physics: shortest paths")
    rows += sssp_rows()
    return rows
