"""The simulation: a graph, its physics state, settle detection, and the commands that wake it.

:class:`Simulation` knows nothing of sockets. One lock serialises physics steps and every
change (parameters, pins, drags, topology), so a server can step it in a thread while its event
loop applies commands; each change takes effect on the next step. Once the layout is settled
the simulation stops stepping (``step`` returns 0) until a parameter change, pin, drag or
topology change wakes it.

A graph loaded without positions starts with the multilevel refinement (``multilevel``): while
it runs, a step lays out the current coarse level (as many coarse steps as cost about one step
of the whole graph) and a snapshot shows every node at its coarse group, so a viewer watches the
shape appear and sharpen. A drag, pin or topology change ends the refinement at once.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from graphwire.graph.diff import TopologyDiff
from graphwire.graph.model import (
    Edge,
    EdgeSpec,
    Graph,
    GraphData,
    GraphError,
    NodeSpec,
    UnknownNodeError,
)

from . import forcefield, multilevel
from .params import PhysicsParams

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """An immutable copy of the layout at one published step (``seq``)."""

    seq: int
    ids: npt.NDArray[np.uint32]
    agent: npt.NDArray[np.bool_]
    pos: F32
    vel: F32
    settled: bool  # the layout is at rest: settled, or physics disabled (frozen)
    kinetic_energy: float
    topology_version: int
    steps: int
    # the pins of ``ids``, and the graph's keys by id (append-only and shared, not a copy):
    # what a remembered layout is made of (empty in a snapshot not made by a Simulation)
    pinned: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))
    keys: list[str] = field(default_factory=list)
    edge_count: int = -1  # edges of the graph at ``topology_version`` (-1: not known)


@dataclass(frozen=True, slots=True)
class Change:
    """What one topology change did, by id (see :meth:`Simulation.change`)."""

    added_nodes: list[int]
    removed_nodes: list[int]
    updated_nodes: list[int]
    added_edges: list[Edge]
    removed_edges: list[tuple[int, int]]
    updated_edges: list[Edge]

    def __bool__(self) -> bool:
        return bool(self.added_nodes or self.removed_nodes or self.updated_nodes
                    or self.added_edges or self.removed_edges or self.updated_edges)


class Simulation:
    """A force-directed 3D layout of a graph, stepped on demand."""

    def __init__(self, graph: Graph, params: PhysicsParams | None = None, *, seed: int = 1,
                 agent_params: PhysicsParams | None = None) -> None:
        self.graph = graph
        self.params = params or PhysicsParams()
        self.params.validate()
        # Agent nodes move by their own parameters (the agent graph's settings); the repulsion
        # tree, the global speed, the time step and settling are the layout's.
        self.agent_params = agent_params or self.params
        self.agent_params.validate()
        self.seed = seed
        self.lock = threading.RLock()
        self.steps = 0  # physics steps since start
        self.seq = 0  # snapshots published
        self._awake = threading.Event()
        self.on_wake: Callable[[], None] | None = None  # a runner's nudge, called on wake()
        self._start(graph)

    def _start(self, graph: Graph) -> None:
        """Take a graph as the layout's, with fresh physics state (and place its nodes)."""
        self.graph = graph
        self.settled = False
        self.kinetic_energy = 0.0
        self.max_speed = 0.0
        self._calm_steps = 0
        self._fine_steps = 0  # steps on the graph itself (not on coarse levels)
        self._force, self._last, self._heat = forcefield.scratch(graph.pos.shape[0])
        self._speed = forcefield.Speed()
        self._weight = np.ones(0)
        self._weight_key: tuple[int, bool, int] | None = None
        self._component = np.zeros(0, np.int64)
        self._component_key: tuple[int, int] | None = None
        self._awake.set()
        self._rng = np.random.default_rng(self.seed)
        self.refinement: multilevel.Refinement | None = None
        self._place_unplaced(initial=True)

    def replace_graph(self, graph: Graph) -> None:
        """Lay out another graph from now on (a reload of the source): fresh physics state;
        nodes with positions keep them, the others are placed as at the start; wakes."""
        with self.lock:
            self._start(graph)
        self.wake()

    def rest(self, hot: Iterable[int] = ()) -> None:
        """Take the current positions as a settled layout (one restored from where it was
        settled): nothing steps until a change, except near ``hot`` nodes (ones placed anew),
        which are warmed as by a local change."""
        with self.lock:
            if self.refinement is not None:
                self.finish_refinement()
            self._mark_settled()
            self.kinetic_energy = 0.0
            hot = list(hot)
        if hot:
            self.wake(hot)

    # -- placement ---------------------------------------------------------------------------
    def _place_unplaced(self, *, initial: bool = False) -> None:
        g = self.graph
        live = g.live_ids()
        todo = live[np.isnan(g.pos[live, 0])]
        if todo.shape[0] == 0:
            return
        if initial and todo.shape[0] == live.shape[0]:
            levels = (multilevel.hierarchy(self._finest_level(live)) if self.params.multilevel
                      else [])
            if len(levels) > 1:
                self.refinement = multilevel.Refinement(levels, live, self.params, self._rng)
                g.pos[live] = self.refinement.finest_positions(self.params)
            else:
                g.pos[live] = initial_positions(g, live, self.params, self.seed)
            return
        # Later arrivals: at the centre of their placed neighbours with a small offset, so the
        # layout around them barely moves. Newcomers are placed in breadth-first order from the
        # placed layout (one pass over the newcomers and their edges), so one linked only to
        # other newcomers follows them; a group of newcomers with no path to the layout starts
        # from one of them put at the layout's centre.
        indptr, nbr, _ = g.csr()
        placed = np.zeros(g.pos.shape[0], bool)
        placed[live] = True
        placed[todo] = False
        centre = (g.pos[placed].astype(np.float64).mean(axis=0) if placed.any()
                  else np.zeros(3))
        newcomer = np.zeros(placed.shape[0], bool)
        newcomer[todo] = True
        queued = np.zeros(placed.shape[0], bool)
        queue: deque[int] = deque()
        for i in todo.tolist():  # the first wave: newcomers that touch the layout
            if placed[nbr[indptr[i] : indptr[i + 1]]].any():
                queue.append(i)
                queued[i] = True
        seeds = iter(todo.tolist())
        while True:
            if not queue:  # what is left has no path to the layout: seed a group
                seed = next((i for i in seeds if not queued[i]), None)
                if seed is None:
                    break
                queue.append(seed)
                queued[seed] = True
            i = queue.popleft()
            around = nbr[indptr[i] : indptr[i + 1]]
            near = around[placed[around]]
            at = g.pos[near].astype(np.float64).mean(axis=0) if near.shape[0] else centre
            g.pos[i] = (at + self._rng.normal(0, self.params.rest_length / 3, 3)).astype(
                np.float32)
            placed[i] = True
            for j in around[newcomer[around] & ~queued[around]].tolist():
                queue.append(j)
                queued[j] = True

    def _finest_level(self, live: I64) -> multilevel.Level:
        """The graph's live nodes as the finest level of a hierarchy (rows in ``live`` order)."""
        g = self.graph
        adj = live_adjacency(g, live)
        return multilevel.Level(adj.indptr.astype(np.int64), adj.indices.astype(np.int32),
                                adj.data.astype(np.float32), self._weights(self.params)[live],
                                g.agent[live].copy())

    # -- stepping ----------------------------------------------------------------------------
    def step(self, count: int = 1) -> int:
        """Run up to ``count`` physics steps; stops early once settled. Returns steps run."""
        done = 0
        with self.lock:
            p = self.params
            if not p.enabled:
                return 0
            for _ in range(count):
                if self.settled:
                    break
                if self.refinement is not None:
                    self._refine(p)
                else:
                    self._step_once(p)
                self.steps += 1
                done += 1
        return done

    def _refine(self, p: PhysicsParams) -> None:
        """About one step's worth of work on the coarse levels (a refinement step)."""
        r = self.refinement
        assert r is not None
        work = 0
        budget = self.graph.node_count
        # a coarse level is small, but stands for the graph: it takes no shape pull
        p = dataclasses.replace(p, shape_gravity=0.0)
        agent_p = dataclasses.replace(self.agent_params, shape_gravity=0.0)
        while work < budget:
            level = r.level
            arrays = forcefield.Arrays(
                r.pos, r.vel, r.live, level.indptr, level.nbr, level.wts, level.weight,
                level.agent, r.pinned, r.force, r.last, r.heat, r.component)
            moved2, biggest = forcefield.step(arrays, r.speed, p, agent_p,
                                              seed=self.seed, count=self.steps, stride=r.stride)
            work += level.size
            self.kinetic_energy = moved2
            self.max_speed = biggest / p.dt
            if r.record(moved2):
                out = r.descend(p)
                if out is not None:
                    self._end_refinement(out)
                    return

    def _end_refinement(self, finest: F32) -> None:
        r = self.refinement
        assert r is not None
        self.graph.pos[r.ids] = finest
        self.graph.vel[r.ids] = 0.0
        self.refinement = None

    def finish_refinement(self) -> None:
        """End a running multilevel start now: every node goes where its group is."""
        with self.lock:
            if self.refinement is not None:
                self._end_refinement(self.refinement.finish(self.params))

    def _step_once(self, p: PhysicsParams) -> None:
        g = self.graph
        cap = g.pos.shape[0]
        if self._force.shape[0] != cap:
            force, last, heat = forcefield.scratch(cap)
            n = min(cap, self._last.shape[0])
            last[:n] = self._last[:n]
            heat[:n] = self._heat[:n]
            self._force, self._last, self._heat = force, last, heat
        live = g.live_ids()
        if live.shape[0] == 0:
            self._mark_settled()
            return
        indptr, nbr, wts = g.csr()
        arrays = forcefield.Arrays(g.pos, g.vel, live, indptr, nbr, wts, self._weights(p),
                                   g.agent, g.pinned, self._force, self._last, self._heat,
                                   self._components())
        moved2, biggest = forcefield.step(arrays, self._speed, p, self.agent_params,
                                          seed=self.seed, count=self.steps)
        self._fine_steps += 1
        if self._fine_steps > p.warmup_iterations:
            self._heat[live] *= 1.0 - p.cooling_rate
        self.kinetic_energy = moved2
        self.max_speed = biggest / p.dt
        if moved2 < p.settle_energy:
            self._calm_steps += 1
            if self._calm_steps >= p.settle_steps:
                self._mark_settled()
        else:
            self._calm_steps = 0

    def _components(self) -> I64:
        """The connected component of every id (cached until the topology changes)."""
        g = self.graph
        key = (g.topology_version, g.id_limit)
        if self._component_key != key:
            indptr, nbr, _ = g.csr()
            self._component = forcefield.components(indptr, nbr, g.id_limit)
            self._component_key = key
        return self._component

    def _weights(self, p: PhysicsParams) -> F64:
        """Each node's repulsion weight by id: degree + 1 (ForceAtlas2's mass), or 1."""
        g = self.graph
        key = (g.topology_version, p.degree_repulsion, g.pos.shape[0])
        if self._weight_key != key:
            indptr, _, _ = g.csr()
            w = np.ones(g.pos.shape[0], np.float64)
            if p.degree_repulsion:
                w[: indptr.shape[0] - 1] += np.diff(indptr)
            self._weight, self._weight_key = w, key
        return self._weight

    def _mark_settled(self) -> None:
        self.settled = True
        self._heat[:] = 0.0  # at rest: only a change warms nodes again
        self._awake.clear()

    def wake(self, near: Iterable[int] | None = None) -> None:
        """Resume stepping (after a change the layout must answer).

        ``near``: the nodes a local change touched; they and their neighbours up to
        :data:`WARM_HOPS` hops away are free to move again, the rest of the layout stays as
        cool as it was. Without ``near`` (a parameter change) every node is.
        """
        with self.lock:
            if near is None:
                self._heat[:] = 1.0
            else:
                self._warm(np.fromiter(near, np.int64))
            self.settled = False
            self._calm_steps = 0
            self._awake.set()
        if self.on_wake is not None:
            self.on_wake()

    def _warm(self, ids: I64) -> None:
        g = self.graph
        if self._heat.shape[0] < g.pos.shape[0]:
            heat = np.ones(g.pos.shape[0])
            heat[: self._heat.shape[0]] = self._heat
            self._heat = heat
        indptr, nbr, _ = g.csr()
        ids = ids[(ids >= 0) & (ids < g.id_limit)]
        for _ in range(WARM_HOPS):
            if ids.shape[0] == 0:
                break
            self._heat[ids] = 1.0
            ids = np.unique(np.concatenate([nbr[indptr[i]:indptr[i + 1]] for i in ids]))
        self._heat[ids] = 1.0

    def wait_awake(self, timeout: float | None = None) -> bool:
        """Block until the simulation is not settled (or ``timeout``); True if awake."""
        return self._awake.wait(timeout)

    def run_until_settled(self, max_steps: int, *, batch: int = 50,
                          progress: Any = None) -> int:
        """Step until settled or ``max_steps``; ``progress`` (tqdm-like) is updated per batch."""
        total = 0
        while total < max_steps:
            n = self.step(min(batch, max_steps - total))
            total += n
            if progress is not None:
                progress.update(n)
            if n == 0 or self.settled:
                break
        return total

    # -- commands ---------------------------------------------------------------------------
    def set_params(self, *, agent: bool = False, **changes: Any) -> PhysicsParams:
        """Change parameters (of agent nodes with ``agent``); they take effect on the next step
        and wake the layout."""
        with self.lock:
            old = self.agent_params if agent else self.params
            new = old.replace(**changes)
            if new != old:
                if agent:
                    self.agent_params = new
                else:
                    self.params = new
                    if new.enabled and any(getattr(new, k) != getattr(old, k)
                                           for k in SCALE_KNOBS):
                        self._to_equilibrium_size()
                self.wake()
            return new

    def _to_equilibrium_size(self) -> None:
        """After a change of what sets the layout's size: scale the layout (its free knowledge
        nodes with links, about their centre) to where their springs balance their repulsion,
        when it is more than twice off. The shape stays; the layout answers at once instead of
        drifting for minutes, and one blown up against the bounds by a huge ``repel_k`` comes
        back whole when the value is put back (it stayed 7 times too large and lost
        neighbourhoods). Only free knowledge nodes with links count; unlinked ones move with
        them, pinned, agent and removed ones stay; growth is capped at 20 times, and nothing
        leaves the bounds."""
        if self.refinement is not None:
            return  # the multilevel start sizes each level itself
        g = self.graph
        n = g.id_limit
        indptr, nbr, wts = g.csr()
        moved = g.alive[:n] & ~g.agent[:n] & ~g.pinned[:n]
        rows = np.repeat(np.arange(n), np.diff(indptr))
        keep = moved[rows] & moved[nbr]
        free = moved & (np.bincount(rows[keep], minlength=n) > 0)  # linked to a free node
        if free.sum() < 2:
            return
        sub_indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=n))])
        weight = np.where(free, self._weights(self.params)[:n], 0.0)
        limit = np.float32(self.params.bounds_size)
        total = 1.0
        for _ in range(4):  # each factor is clipped to 0.05 … 20
            factor = forcefield.virial_scale(g.pos[:n], sub_indptr, nbr[keep], wts[keep],
                                             weight, self.params)
            factor = min(factor, 20.0 / total)
            if 0.5 <= factor <= 2.0:
                break
            total *= factor
            pos = g.pos[:n]
            centre = pos[free].mean(axis=0)
            # unlinked nodes did not count, but move with the rest (blown out, they would stay)
            pos[moved] = np.clip((pos[moved] - centre) * np.float32(factor) + centre,
                                 -limit, limit)
            g.vel[:n][moved] = 0.0
        if total != 1.0:
            self._speed = forcefield.Speed()

    def move(self, ids: Iterable[int], positions: npt.ArrayLike, *, pin: bool = False) -> None:
        """Put nodes where a user dragged them (and pin them there when ``pin``); wakes."""
        ids_a = np.asarray(list(ids), np.int64)
        pos = np.asarray(positions, np.float32).reshape(-1, 3)
        self.finish_refinement()
        with self.lock:
            g = self.graph
            for i in ids_a.tolist():
                if not g.is_live(i):
                    raise UnknownNodeError(f"unknown node id {i}")
            g.pos[ids_a] = pos
            g.vel[ids_a] = 0.0
            if pin:
                g.pinned[ids_a] = True
            self.wake(ids_a)

    def release(self, ids: Iterable[int]) -> None:
        """Unpin nodes and give them back to the physics; wakes. Nodes that are not pinned are
        left alone (a stray double-click in a viewer neither ends the multilevel start nor wakes
        a settled layout)."""
        ids = [int(i) for i in ids]
        with self.lock:
            if not any(self.graph.is_live(i) and self.graph.pinned[i] for i in ids):
                return
        self.finish_refinement()
        with self.lock:
            freed = [i for i in ids if self.graph.is_live(i) and self.graph.pinned[i]]
            self.graph.pinned[freed] = False
            self.wake(freed)

    def add(self, nodes: Iterable[NodeSpec] = (),
            edges: Iterable[EdgeSpec] = ()) -> tuple[list[int], list[Edge]]:
        """Add nodes (fresh ids) and edges in one topology change; all or nothing; wakes.

        Returns the new ids and the edges written.
        """
        nodes, edges = list(nodes), list(edges)
        self.finish_refinement()
        with self.lock, self.graph.batch():
            g = self.graph
            ids = g.add_nodes(nodes)
            try:
                written = g.add_edges(edges)
            except GraphError:
                for nid in ids:  # undo: the ids stay retired, never reused
                    g.remove_node(nid)
                raise
            if ids or written:
                self._place_unplaced()
                self.wake([*ids, *(e.source for e in written), *(e.target for e in written)])
            return ids, written

    def change(self, d: TopologyDiff) -> Change:
        """Apply a change by key (a source re-read) as one topology change; wakes near it.

        The graph may have moved away from the source (nodes and edges added or removed over
        the API), so the change is applied to what is there: a removal of what is gone is
        skipped, an added key that exists is updated, an update of a missing key adds it, an
        edge with a missing end is skipped. New nodes start at the centre of their neighbours.
        """
        self.finish_refinement()
        with self.lock, self.graph.batch():
            g = self.graph
            pairs = [(a, b) for a, b in ((g.id_of(x), g.id_of(y)) for x, y in d.removed_edges)
                     if a is not None and b is not None]
            removed_edges = g.remove_edges(pairs)
            removed_nodes: list[int] = []
            for key in d.removed_nodes:
                nid = g.id_of(key)
                if nid is not None:
                    removed_edges += g.remove_node(nid)
                    removed_nodes.append(nid)
            specs = [*d.added_nodes, *d.updated_nodes]
            known = [g.id_of(s.key) is not None for s in specs]  # before the new ones are added
            added = g.add_nodes([s for s, k in zip(specs, known, strict=True) if not k])
            updated = g.update_nodes([s for s, k in zip(specs, known, strict=True) if k])
            edges = [e for e in (*d.added_edges, *d.updated_edges)
                     if g.id_of(str(e.source)) is not None and g.id_of(str(e.target)) is not None]
            existed = [g.has_edge(g.resolve(e.source), g.resolve(e.target)) for e in edges]
            written = g.add_edges(edges)
            out = Change(added, removed_nodes, updated,
                         [e for e, old in zip(written, existed, strict=True) if not old],
                         removed_edges,
                         [e for e, old in zip(written, existed, strict=True) if old])
            if added or removed_nodes or written or removed_edges:
                self._place_unplaced()
                ends = [n for e in written for n in (e.source, e.target)]
                ends += [n for pair in removed_edges for n in pair if g.is_live(n)]
                self.wake([*added, *ends])
            return out

    def remove_node(self, nid: int) -> list[tuple[int, int]]:
        """Remove a node and its edges; wakes."""
        self.finish_refinement()
        with self.lock:
            gone = self.graph.remove_node(nid)
            self.wake([end for pair in gone for end in pair if end != nid])
            return gone

    def remove_edges(self, pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """Remove edges; wakes if any existed."""
        self.finish_refinement()
        with self.lock:
            gone = self.graph.remove_edges(pairs)
            if gone:
                self.wake([end for pair in gone for end in pair])
            return gone

    # -- reading ----------------------------------------------------------------------------
    def publish(self) -> Snapshot:
        """Copy the current layout as the next snapshot (seq += 1)."""
        with self.lock:
            self.seq += 1
            if self.refinement is not None and not self.params.enabled:
                self.finish_refinement()  # frozen: show every node, not the coarse groups
            if self.refinement is not None:
                self.graph.pos[self.refinement.ids] = self.refinement.finest_positions(
                    self.params)
            return self._snapshot(self.seq)

    def _snapshot(self, seq: int) -> Snapshot:
        g = self.graph
        live = g.live_ids()
        return Snapshot(
            seq=seq, ids=live.astype(np.uint32), agent=g.agent[live].copy(),
            pos=g.pos[live].copy(), vel=g.vel[live].copy(),
            settled=self.settled or not self.params.enabled,  # frozen: nothing moves
            kinetic_energy=self.kinetic_energy, topology_version=g.topology_version,
            steps=self.steps, pinned=g.pinned[live].copy(), keys=g.keys,
            edge_count=g.edge_count,
        )


def compile_kernels() -> None:
    """Run every physics kernel once (numba compiles or loads them on first use, which takes
    a second or more): on a small ring, through its multilevel start and some steps after."""
    n = 3 * multilevel.MIN_NODES
    keys = [f"w{i:03d}" for i in range(n)]
    g = Graph.from_data(GraphData([NodeSpec(k) for k in keys],
                                  [EdgeSpec(keys[i], keys[(i + 1) % n]) for i in range(n)]))
    sim = Simulation(g)
    while sim.refinement is not None:
        sim.step(1)
    sim.step(2)


WARM_HOPS = 2
"""A local change frees the nodes it touched and their neighbours this many hops away."""

SCALE_KNOBS = ("repel_k", "spring_k", "rest_length", "linlog", "degree_repulsion")
"""Parameters that set the size a layout comes to rest at: a change brings it there at once."""

START_RADIUS = 2.0
"""A start of m nodes fills a ball of about ``START_RADIUS · m^(1/3)`` layout units."""


def live_adjacency(g: Graph, live: I64) -> sparse.csr_matrix:
    """The weighted adjacency among ``live`` nodes, rows and columns in ``live`` order."""
    index = np.full(g.id_limit, -1, np.int64)
    index[live] = np.arange(live.shape[0])
    indptr, nbr, wts = g.csr()
    rows = np.repeat(np.arange(g.id_limit), np.diff(indptr))
    keep = (index[rows] >= 0) & (index[nbr] >= 0)
    m = live.shape[0]
    return sparse.csr_matrix((wts[keep].astype(np.float64),
                              (index[rows[keep]], index[nbr[keep]])), shape=(m, m))


def initial_positions(g: Graph, live: I64, params: PhysicsParams, seed: int) -> F32:
    """The default start: random points smoothed along the edges, sized to the equilibrium.

    Each of a few rounds moves every node halfway to the mean of its neighbours, so linked
    nodes start near each other and communities start together; the three axes are kept
    orthogonal (an iteration towards the graph's three slowest modes). Used when the multilevel
    start is off or the graph is too small for one. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    m = live.shape[0]
    p = rng.normal(0.0, 1.0, (m, 3))
    a = live_adjacency(g, live)
    deg = np.asarray(a.sum(axis=1)).ravel()
    has = deg > 0
    for _ in range(12):
        mean = a @ p
        mean[has] /= deg[has, None]
        p[has] = 0.5 * p[has] + 0.5 * mean[has]
        p -= p.mean(axis=0)
        if m > 3:
            # the axes kept orthogonal: smoothed alone, each would tend to the same slowest
            # mode of the graph, and a small graph would start (and rest) on a line
            p = np.linalg.qr(p)[0] * np.sqrt(m)
        else:
            p /= p.std(axis=0) + 1e-12
    radius = min(START_RADIUS * params.rest_length * max(m, 1) ** (1 / 3),
                 params.bounds_size * params.boundary_margin)
    r = np.linalg.norm(p, axis=1, keepdims=True)
    scale = radius / max(float(np.percentile(r, 95)), 1e-9)
    out: F32 = (p * scale).astype(np.float32)
    return out
