"""``graphwire bench layout``: layout quality against igraph and ForceAtlas2 under one clock.

Each graph is laid out in 3D by graphwire, igraph (``layout_fruchterman_reingold_3d``, and
``layout_drl`` with ``dim=3`` where it finishes) and ForceAtlas2 (the ``fa2`` package,
``dim=3``) under the same wall-clock budgets, and every layout is judged by the same measures
(``bench.quality``): neighbour share and, where the graph has known communities, the
community ratio.

- graphwire: one :class:`Simulation` from its default start (the multilevel refinement
  included in the clock), stepped until each budget; the clock pauses while a layout is copied
  out. ``budgetS: "rest"``: run until settled, as ``graphwire layout`` does.
- igraph FR and fa2 are whole-layout calls: at each budget they run the number of iterations
  that fits it (timed on a short calibration run), from their own random starts; a budget
  shorter than one iteration gets one iteration and its real time. ``budgetS: "end"``: igraph FR
  with its own default of 500 iterations; DrL runs to its own end in a child process, given up
  after :data:`DRL_TIMEOUT` seconds.

Rows ``{graph, impl, budgetS, neighbourShare, communityRatio, steps, seconds}``. The peers are
optional dependencies (``pip install 'graphwire[bench]'``); a missing one is reported on
stderr and left out.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from graphwire.graph.model import Graph
from graphwire.simulation import PhysicsParams, Simulation, compile_kernels

from .graphs import SBM_BLOCKS, barabasi_albert, grid, planted_communities
from .quality import community_ratio, neighbour_share
from .report import Row, positive, progress

BUDGETS = (1.0, 2.0, 5.0, 10.0, 20.0)
"""The issue's budgets (1, 5, 20 s) and the two its goals name (2 s, 10 s)."""
GRAPHS = ("communities", "grid", "ba10k", "demo")
REST_STEPS = 20_000
"""``budgetS: "rest"`` stops here if the layout has not settled."""
FR_END_ITERATIONS = 500  # igraph's own default
DRL_TIMEOUT = 300.0

F64 = npt.NDArray[np.float64]


@dataclass(eq=False)
class Case:
    """A graph to lay out (ids 0..n-1), made fresh for every run, and its communities."""

    name: str
    make: Callable[[], Graph]
    community: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        self.graph = self.make()  # the reference copy: edges and adjacency for judging

    @property
    def edges(self) -> npt.NDArray[np.int64]:
        """Edges as an (m, 2) array of ids."""
        src, dst, _ = self.graph.edge_arrays()
        return np.stack([src, dst], axis=1)

    def judge(self, pos: npt.ArrayLike) -> dict[str, float | None]:
        """Both measures of a layout (rows in id order)."""
        indptr, nbr, _ = self.graph.csr()
        share = neighbour_share(pos, indptr, nbr)
        ratio = (community_ratio(pos, self.community) if self.community is not None
                 else None)
        return {"neighbourShare": round(share, 4),
                "communityRatio": None if ratio is None else round(ratio, 4)}


def cases(names: Sequence[str] | None = None, *, small: bool = False) -> list[Case]:
    """The bench's graphs (``small``: tiny versions, for a quick check of the command)."""
    out: list[Case] = []
    want = set(names) if names else set(GRAPHS)
    if "communities" in want:
        blocks = 4 if small else SBM_BLOCKS
        out.append(Case("communities", lambda: planted_communities(blocks)[0],
                        planted_communities(blocks)[1]))
    if "grid" in want:
        side = 12 if small else 100
        out.append(Case("grid", lambda: grid(side)))
    if "ba10k" in want:
        n = 300 if small else 10_000
        out.append(Case("ba10k", lambda: barabasi_albert(n)))
    if "demo" in want:
        out.append(_demo_case())
    return out


def _demo_case() -> Case:
    """The bundled demo (the standard library); its communities are top-level packages."""
    from graphwire.graph.sources.demo import load_demo

    data = load_demo(progress=False)
    case = Case("demo", lambda: Graph.from_data(data))
    g = case.graph
    package = [str(g.metadata[i].get("package", g.keys[i].split(".")[0]))
               for i in g.live_ids()]
    names = {p: k for k, p in enumerate(sorted(set(package)))}
    case.community = np.array([names[p] for p in package], np.int64)
    return case


# -- graphwire --------------------------------------------------------------------------------
def graphwire_rows(case: Case, budgets: Sequence[float], *, rest: bool = True,
                   keep: dict[str, F64] | None = None) -> list[Row]:
    """graphwire at each budget (one run, the clock paused while a layout is copied out)."""
    rows: list[Row] = []
    elapsed = 0.0
    graph = case.make()  # built outside the clock, as the peers' graphs are
    t0 = time.perf_counter()
    sim = Simulation(graph, PhysicsParams())
    for budget in sorted(budgets):
        while elapsed + (time.perf_counter() - t0) < budget and not sim.settled:
            sim.step(1)
        elapsed += time.perf_counter() - t0
        pos = sim.publish().pos.astype(np.float64)
        rows.append({"graph": case.name, "impl": "graphwire", "budgetS": budget,
                     **case.judge(pos), "steps": sim.steps, "seconds": round(elapsed, 2)})
        if keep is not None:
            keep[f"graphwire {budget:g} s"] = pos
        t0 = time.perf_counter()
    if rest:
        graph = case.make()
        t0 = time.perf_counter()
        sim = Simulation(graph, PhysicsParams())
        steps = sim.run_until_settled(REST_STEPS)
        seconds = time.perf_counter() - t0
        pos = sim.publish().pos.astype(np.float64)
        rows.append({"graph": case.name, "impl": "graphwire", "budgetS": "rest",
                     **case.judge(pos), "steps": steps, "seconds": round(seconds, 2),
                     "settled": sim.settled})
        if keep is not None:
            keep["graphwire rest"] = pos
    return rows


# -- peers ------------------------------------------------------------------------------------
Layout = Callable[[int], F64]
"""A peer: iterations → positions (n, 3)."""


def _igraph_fr(case: Case) -> Layout:
    import igraph

    g = igraph.Graph(n=case.graph.node_count, edges=case.edges.tolist())

    def run(iterations: int) -> F64:
        return np.asarray(g.layout_fruchterman_reingold_3d(niter=iterations).coords)

    return run


def _fa2(case: Case) -> Layout:
    from fa2 import ForceAtlas2
    from scipy import sparse

    n = case.graph.node_count
    e = case.edges
    adj = sparse.coo_matrix((np.ones(e.shape[0]), (e[:, 0], e[:, 1])), shape=(n, n))
    adj = (adj + adj.T).tolil()

    def run(iterations: int) -> F64:
        fa = ForceAtlas2(dim=3, verbose=False, seed=1)
        return np.asarray(fa.forceatlas2(adj, iterations=iterations))

    return run


PEERS: dict[str, Callable[[Case], Layout]] = {"igraph-fr": _igraph_fr, "fa2": _fa2}
IMPLS = ("graphwire", "igraph-fr", "igraph-drl", "fa2")


def peer_rows(case: Case, impl: str, budgets: Sequence[float], *,
              keep: dict[str, F64] | None = None) -> list[Row]:
    """A whole-layout peer at each budget: as many iterations as fit, from its own start."""
    try:
        run = PEERS[impl](case)
    except ImportError as exc:
        progress(f"layout: {impl} is not installed ({exc}); skipped")
        return []
    t0 = time.perf_counter()
    run(2)
    per_iteration = max((time.perf_counter() - t0) / 2, 1e-6)
    rows: list[Row] = []
    plan = [(b, max(1, int(b / per_iteration))) for b in budgets]
    if impl == "igraph-fr":
        plan.append(("end", FR_END_ITERATIONS))  # type: ignore[arg-type]
    for budget, iterations in plan:
        progress(f"layout: {case.name} {impl} {budget} ({iterations} iterations)")
        t0 = time.perf_counter()
        pos = run(iterations)
        seconds = time.perf_counter() - t0
        rows.append({"graph": case.name, "impl": impl, "budgetS": budget, **case.judge(pos),
                     "steps": iterations, "seconds": round(seconds, 2)})
        if keep is not None:
            keep[f"{impl} {budget if isinstance(budget, str) else f'{budget:g} s'}"] = pos
    return rows


def _drl_child(edges: list[list[int]], n: int, out: Any) -> None:
    import igraph

    g = igraph.Graph(n=n, edges=edges)
    out.send(np.asarray(g.layout_drl(dim=3).coords))


def drl_rows(case: Case, *, timeout: float = DRL_TIMEOUT,
             keep: dict[str, F64] | None = None) -> list[Row]:
    """igraph's DrL in 3D, to its own end, in a child process given up after ``timeout``."""
    try:
        import igraph  # noqa: F401
    except ImportError:
        progress("layout: igraph is not installed; DrL skipped")
        return []
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_drl_child,
                        args=(case.edges.tolist(), case.graph.node_count, there), daemon=True)
    t0 = time.perf_counter()
    child.start()
    there.close()
    row: Row = {"graph": case.name, "impl": "igraph-drl", "budgetS": "end"}
    if here.poll(timeout):
        pos = here.recv()
        seconds = time.perf_counter() - t0
        row.update(case.judge(pos), steps=None, seconds=round(seconds, 2))
        if keep is not None:
            keep["igraph-drl end"] = pos
    else:
        row.update(neighbourShare=None, communityRatio=None, steps=None,
                   seconds=None, timedOut=timeout)
    child.kill()
    child.join()
    return [row]


# -- the command ------------------------------------------------------------------------------
def run(argv: Sequence[str] | None = None) -> list[Row]:
    """All rows of the layout bench (``argv``: the options after ``bench layout``)."""
    ap = argparse.ArgumentParser(prog="graphwire bench layout")
    ap.add_argument("--graphs", nargs="*", choices=GRAPHS, metavar="GRAPH",
                    help=f"some of {', '.join(GRAPHS)} (default: all)")
    ap.add_argument("--budgets", type=positive, nargs="*", default=list(BUDGETS),
                    metavar="SECONDS", help="wall-clock budgets to judge each layout at")
    ap.add_argument("--impls", nargs="*", choices=IMPLS, default=list(IMPLS), metavar="IMPL",
                    help=f"some of {', '.join(IMPLS)} (default: all)")
    ap.add_argument("--small", action="store_true", help="tiny graphs: a quick check")
    ap.add_argument("--plots", type=Path, help="write a picture of each graph's layouts here")
    args = ap.parse_args(list(argv or []))
    rows: list[Row] = []
    compile_kernels()  # a one-time cost of the process, like importing a peer: not in a budget
    for case in cases(args.graphs, small=args.small):
        keep: dict[str, F64] | None = {} if args.plots else None
        for impl in args.impls:
            progress(f"layout: {case.name} ({case.graph.node_count} nodes) with {impl}")
            if impl == "graphwire":
                rows += graphwire_rows(case, args.budgets, keep=keep)
            elif impl == "igraph-drl":
                rows += drl_rows(case, keep=keep)
            else:
                rows += peer_rows(case, impl, args.budgets, keep=keep)
        if args.plots and keep:
            from .plots import layout_figure

            args.plots.mkdir(parents=True, exist_ok=True)
            layout_figure(case, keep, args.plots / f"layout-{case.name}.png",
                          {r["impl"] + " " + _budget(r["budgetS"]): r for r in rows
                           if r["graph"] == case.name})
    return rows


def _budget(b: float | str) -> str:
    return b if isinstance(b, str) else f"{b:g} s"


__all__ = ["BUDGETS", "Case", "cases", "drl_rows", "graphwire_rows", "peer_rows", "run"]
