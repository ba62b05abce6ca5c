"""The simulation: a graph, its physics state, settle detection, and the commands that wake it.

:class:`Simulation` knows nothing of sockets. One lock serialises physics steps and every
change (parameters, pins, drags, topology), so a server can step it in a thread while its event
loop applies commands; each change takes effect on the next step. Once the layout is settled
the simulation stops stepping (``step`` returns 0) until a parameter change, pin, drag or
topology change wakes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from graphwire.graph.model import Edge, EdgeSpec, Graph, GraphError, NodeSpec

from . import kernels
from .params import PhysicsParams

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """An immutable copy of the layout at one published step (``seq``)."""

    seq: int
    ids: npt.NDArray[np.uint32]
    agent: npt.NDArray[np.bool_]
    pos: F32
    vel: F32
    settled: bool
    kinetic_energy: float
    topology_version: int
    steps: int


class Simulation:
    """A force-directed 3D layout of a graph, stepped on demand."""

    def __init__(self, graph: Graph, params: PhysicsParams | None = None, *, seed: int = 1,
                 agent_params: PhysicsParams | None = None) -> None:
        self.graph = graph
        self.params = params or PhysicsParams()
        self.params.validate()
        # Agent nodes move by their own parameters (the agent graph's settings); the repulsion
        # field, the time step, warm-up and settling are the layout's, shared by all nodes.
        self.agent_params = agent_params or self.params
        self.agent_params.validate()
        self.seed = seed
        self.lock = threading.RLock()
        self.steps = 0  # physics steps since start
        self.seq = 0  # snapshots published
        self.settled = False
        self.kinetic_energy = 0.0
        self.max_speed = 0.0
        self._calm_steps = 0
        self._since_start = 0
        self._heat = 1.0
        self._force = np.zeros_like(graph.pos)
        self._awake = threading.Event()
        self._awake.set()
        self._rng = np.random.default_rng(seed)
        self.on_wake: Callable[[], None] | None = None  # a runner's nudge, called on wake()
        self._place_unplaced(initial=True)

    # -- placement ---------------------------------------------------------------------------
    def _place_unplaced(self, *, initial: bool = False) -> None:
        g = self.graph
        live = g.live_ids()
        todo = live[np.isnan(g.pos[live, 0])]
        if todo.shape[0] == 0:
            return
        if initial and todo.shape[0] == live.shape[0]:
            g.pos[live] = initial_positions(g, live, self.params, self.seed)
            return
        # Later arrivals: near the centre of their placed neighbours, else near the origin.
        indptr, nbr, _ = g.csr()
        placed = ~np.isnan(g.pos[:, 0])
        for i in todo:
            ns = nbr[indptr[i] : indptr[i + 1]]
            ns = ns[placed[ns]]
            centre = g.pos[ns].mean(axis=0) if ns.shape[0] else np.zeros(3, np.float32)
            jitter = self._rng.normal(0, self.params.rest_length / 3, 3)
            g.pos[i] = (centre + jitter).astype(np.float32)
            placed[i] = True

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
                self._step_once(p)
                done += 1
        return done

    def _step_once(self, p: PhysicsParams) -> None:
        g = self.graph
        live = g.live_ids()
        if self._force.shape != g.pos.shape:
            self._force = np.zeros_like(g.pos)
        m = live.shape[0]
        if m == 0:
            self._mark_settled()
            return
        indptr, nbr, wts = g.csr()
        pos = g.pos
        lo = pos[live].min(axis=0).astype(np.float64)
        hi = pos[live].max(axis=0).astype(np.float64)
        cube = max(float((hi - lo).max()), 1e-6) * (1 + 1e-6)
        codes = kernels.morton_codes(pos, live, lo, float((1 << kernels.MORTON_BITS) / cube))
        order = np.argsort(codes, kind="stable")
        codes = codes[order]
        sorted_pos = pos[live[order]]
        xs = np.ascontiguousarray(sorted_pos[:, 0])
        ys = np.ascontiguousarray(sorted_pos[:, 1])
        zs = np.ascontiguousarray(sorted_pos[:, 2])
        capacity = max(64, 4 * m)
        while True:
            tree = kernels.build_octree(codes, xs, ys, zs, lo, cube, capacity)
            if tree[0] >= 0:
                break
            capacity *= 2
        count, start, end, first, nchild, com, mass, box, parent = tree
        rep = np.zeros((m, 3), np.float32)
        if p.repel_k > 0:
            # a group is the highest cell that is small or a leaf: every point is in one
            cand = (mass[:count] <= kernels.GROUP_SIZE) | (first[:count] < 0)
            top = parent[:count] < 0
            groups = np.flatnonzero(cand & (top | ~cand[np.maximum(parent[:count], 0)]))
            kernels.repulsion(xs, ys, zs, groups, start, end, first, nchild,
                              com.astype(np.float32), mass.astype(np.float32), box, p.repel_k,
                              p.repulsion_cutoff, p.repulsion_softening_epsilon, p.max_force,
                              p.theta, rep)
        ramp = 1.0 if p.warmup_iterations == 0 else min(
            1.0, (self._since_start + 1) / p.warmup_iterations)
        a = self.agent_params
        params = np.array([
            [q.max_force, q.spring_k, q.rest_length, q.center_gravity_k, q.gravity,
             q.bounds_size, q.boundary_margin, q.boundary_k, q.temperature] for q in (p, a)
        ], np.float64)
        motion = np.array([[q.damping, q.max_velocity, q.bounds_size] for q in (p, a)],
                          np.float64)
        kernels.forces(pos, live, order, rep, g.agent, indptr, nbr, wts, params, self.seed,
                       self.steps, self._heat, ramp, self._force)
        energy, speed = kernels.integrate(pos, g.vel, self._force, g.mass, g.pinned, g.agent,
                                          live, p.dt, motion)
        self.steps += 1
        self._since_start += 1
        self._heat *= 1.0 - p.cooling_rate
        self.kinetic_energy = float(energy) / m
        self.max_speed = float(speed)
        if self.kinetic_energy < p.settle_energy and self._since_start > p.warmup_iterations:
            self._calm_steps += 1
            if self._calm_steps >= p.settle_steps:
                self._mark_settled()
        else:
            self._calm_steps = 0

    def _mark_settled(self) -> None:
        self.settled = True
        self._awake.clear()

    def wake(self) -> None:
        """Resume stepping (after a change the layout must answer)."""
        with self.lock:
            self.settled = False
            self._calm_steps = 0
            self._awake.set()
        if self.on_wake is not None:
            self.on_wake()

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
                self.wake()
            return new

    def move(self, ids: Iterable[int], positions: npt.ArrayLike, *, pin: bool = False) -> None:
        """Put nodes where a user dragged them (and pin them there when ``pin``); wakes."""
        ids_a = np.asarray(list(ids), np.int64)
        pos = np.asarray(positions, np.float32).reshape(-1, 3)
        with self.lock:
            g = self.graph
            for i in ids_a.tolist():
                if not g.is_live(i):
                    raise GraphError(f"unknown node id {i}")
            g.pos[ids_a] = pos
            g.vel[ids_a] = 0.0
            if pin:
                g.pinned[ids_a] = True
            self.wake()

    def release(self, ids: Iterable[int]) -> None:
        """Unpin nodes and give them back to the physics; wakes."""
        with self.lock:
            for i in ids:
                if self.graph.is_live(int(i)):
                    self.graph.pinned[int(i)] = False
            self.wake()

    def add(self, nodes: Iterable[NodeSpec] = (),
            edges: Iterable[EdgeSpec] = ()) -> tuple[list[int], list[Edge]]:
        """Add nodes (fresh ids) and edges in one topology change; all or nothing; wakes.

        Returns the new ids and the edges written.
        """
        nodes, edges = list(nodes), list(edges)
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
                self._force = np.zeros_like(g.pos)
                self._place_unplaced()
                self.wake()
            return ids, written

    def remove_node(self, nid: int) -> list[tuple[int, int]]:
        """Remove a node and its edges; wakes."""
        with self.lock:
            gone = self.graph.remove_node(nid)
            self.wake()
            return gone

    def remove_edges(self, pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """Remove edges; wakes if any existed."""
        with self.lock:
            gone = self.graph.remove_edges(pairs)
            if gone:
                self.wake()
            return gone

    # -- reading ----------------------------------------------------------------------------
    def publish(self) -> Snapshot:
        """Copy the current layout as the next snapshot (seq += 1)."""
        with self.lock:
            self.seq += 1
            return self._snapshot(self.seq)

    def _snapshot(self, seq: int) -> Snapshot:
        g = self.graph
        live = g.live_ids()
        return Snapshot(
            seq=seq, ids=live.astype(np.uint32), agent=g.agent[live].copy(),
            pos=g.pos[live].copy(), vel=g.vel[live].copy(), settled=self.settled,
            kinetic_energy=self.kinetic_energy, topology_version=g.topology_version,
            steps=self.steps,
        )


def equilibrium_radius(m: int, p: PhysicsParams) -> float:
    """About the radius a layout of m nodes settles to (measured: ~0.7 of this balance).

    At the surface of a ball the centre spring pulls with ``center_gravity_k · R``; the
    cut-off repulsion of the nodes inside pushes out with about ``ρ · repel_k · cutoff · π``,
    where ``ρ = m / (4/3 π R³)``. Balancing them gives ``R⁴ = ¾ m repel_k cutoff / k``.
    """
    spacing = float(max(p.rest_length, 1.0) * max(m, 1) ** (1 / 3))
    if p.center_gravity_k <= 0 or p.repel_k <= 0:
        return spacing
    balance = float((0.75 * m * p.repel_k * p.repulsion_cutoff / p.center_gravity_k) ** 0.25)
    return min(0.7 * balance, spacing)


def initial_positions(g: Graph, live: I64, params: PhysicsParams, seed: int) -> F32:
    """The default start: random points smoothed along the edges, sized to the equilibrium.

    Each of a few rounds moves every node halfway to the mean of its neighbours, so linked
    nodes start near each other and communities start together: with damping 0.92 a node
    moves only ~0.003 units a step per unit of force, so a start that needs less untangling
    settles thousands of steps sooner. (A Pivot-MDS start was tried and settled slower on
    small-world graphs, whose hop distances are all alike.) Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    m = live.shape[0]
    p = rng.normal(0.0, 1.0, (m, 3))
    indptr, nbr, wts = g.csr()
    index = np.full(g.id_limit, -1, np.int64)
    index[live] = np.arange(m)
    rows = np.repeat(np.arange(g.id_limit), np.diff(indptr))
    keep = (index[rows] >= 0) & (index[nbr] >= 0)
    a = sparse.csr_matrix(
        (wts[keep].astype(np.float64), (index[rows[keep]], index[nbr[keep]])), shape=(m, m))
    deg = np.asarray(a.sum(axis=1)).ravel()
    has = deg > 0
    for _ in range(12):
        mean = a @ p
        mean[has] /= deg[has, None]
        p[has] = 0.5 * p[has] + 0.5 * mean[has]
        p -= p.mean(axis=0)
        p /= p.std(axis=0) + 1e-12
    radius = min(equilibrium_radius(m, params), params.bounds_size * params.boundary_margin)
    r = np.linalg.norm(p, axis=1, keepdims=True)
    scale = radius / max(float(np.percentile(r, 95)), 1e-9)
    return (p * scale).astype(np.float32)
