"""One physics step of ForceAtlas2 in 3D over any set of arrays (the graph, or a coarse level).

The forces and the per-node speeds are described in ``params``; this module turns them into a
step: build the Barnes–Hut tree over the nodes (positions in layout units), evaluate the
repulsion field, add springs, gravity and walls, adapt the global speed to the layout's swing,
and move every free node.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from . import kernels
from .params import SHAPE_NODES, PhysicsParams

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

COLLISION_REACH = 1.0
"""Nodes closer than this many layout units (one ``rest_length``) push each other apart."""

MIN_EFFICIENCY = 0.05
MAX_SPEED = 1000.0
MAX_RISE = 0.5
"""The global speed rises by at most half of itself a step (ForceAtlas2's maxRise)."""


@dataclass(eq=False, slots=True)
class Speed:
    """ForceAtlas2's global speed and its efficiency, adapted every step."""

    speed: float = 1.0
    efficiency: float = 1.0

    def adapt(self, tolerance: float, m: int, swing: float, traction: float) -> float:
        """The next global speed: as fast as the layout's swing allows, rising slowly.

        The whole layout's swing (how much forces flipped) against its traction (how much they
        kept their direction) sets a target speed within the jitter tolerance, which grows with
        the square root of the node count as in ForceAtlas2.
        """
        if traction <= 0.0:
            return self.speed
        estimate = 0.05 * np.sqrt(m)
        jitter = tolerance * max(np.sqrt(estimate), min(10.0, estimate * traction / (m * m)))
        if swing / traction > 2.0:
            self.efficiency = max(self.efficiency * 0.5, MIN_EFFICIENCY)
            jitter = max(jitter, tolerance)
        target = jitter * self.efficiency * traction / max(swing, 1e-300)
        if swing > jitter * traction:
            self.efficiency = max(self.efficiency * 0.7, MIN_EFFICIENCY)
        elif self.speed < MAX_SPEED:
            self.efficiency *= 1.3
        self.speed = float(self.speed + min(target - self.speed, MAX_RISE * self.speed))
        return self.speed


@dataclass(eq=False, slots=True)
class Arrays:
    """What a step reads and writes, indexed by row (a node id, or a coarse node)."""

    pos: F32  # (rows, 3), wire units
    vel: F32  # (rows, 3)
    live: I64  # the rows that take part
    indptr: I64
    nbr: npt.NDArray[np.int32]
    wts: npt.NDArray[np.float32]
    weight: F64  # repulsion weight by row
    agent: npt.NDArray[np.bool_]
    pinned: npt.NDArray[np.bool_]
    force: F64  # (rows, 3) scratch: this step's force
    last: F64  # (rows, 4): the previous step's force and the node's swing
    heat: F64  # (rows,): how freely each node still moves, 1 (hot) to 0 (frozen)
    component: I64  # (rows,): the connected component of each row (0..k-1 over live rows)


def scratch(rows: int) -> tuple[F64, F64, F64]:
    """Force, last-force and heat buffers for ``rows`` rows (every node hot)."""
    return np.zeros((rows, 3), np.float64), np.zeros((rows, 4), np.float64), np.ones(rows)


def step(a: Arrays, speed: Speed, p: PhysicsParams, agent_p: PhysicsParams, *, seed: int,
         count: int, stride: float = 1.0) -> tuple[float, float]:
    """One step. Returns the mean squared move of a node (layout units²) and the largest move
    (wire units). Moves are scaled by ``stride`` (see :func:`stride`)."""
    live = a.live
    m = live.shape[0]
    if m == 0:
        return 0.0, 0.0
    unit = p.rest_length
    pos = a.pos
    lo = pos[live].min(axis=0).astype(np.float64)
    hi = pos[live].max(axis=0).astype(np.float64)
    cube = max(float((hi - lo).max()), 1e-6) * (1 + 1e-6)
    codes = kernels.morton_codes(pos, live, lo, float((1 << kernels.MORTON_BITS) / cube))
    order = np.argsort(codes, kind="stable")
    rep = np.zeros((m, 3), np.float32)
    crowd = np.zeros((m, 3), np.float32)
    if p.repel_k > 0 or agent_p.repel_k > 0 or p.collision_k > 0 or agent_p.collision_k > 0:
        _repulsion(a, codes[order], live[order], lo, cube, p, rep, crowd)
    # Repulsion is relative to the layout's total weight: a node feels ``repel_k`` from the
    # whole graph at one unit, whatever the size of the graph, so the layout's scale (and the
    # distance at which gravity holds a lone component, repel_k / gravity) does not depend on n.
    total = float(a.weight[live].sum())
    params = np.array([
        [q.repel_k / total, q.spring_k, float(q.linlog), q.gravity, q.center_gravity_k,
         q.bounds_size, q.boundary_margin, q.boundary_k, q.temperature, q.collision_k,
         q.max_force, q.shape_gravity * q.repel_k]
        for q in (p, agent_p)
    ], np.float64)
    hub = _component_centres(a, unit)
    kernels.forces(pos, live, order, rep, crowd, a.weight, a.agent, a.indptr, a.nbr, a.wts,
                   a.component, hub, params, unit, seed, count, a.heat, a.force)
    swing, traction = kernels.swing_traction(a.force, a.last, a.weight, a.pinned, live)
    # a cooling layout also tolerates less swing, or the global speed would rise to undo it
    # (and a coarse level, striding by its long edges, tolerates as much more)
    s = speed.adapt(p.jitter_tolerance * stride * max(float(a.heat[live].mean()), 1e-3), m,
                    swing, traction)
    motion = np.array([[1.0 - q.damping, q.max_velocity * p.dt, q.bounds_size]
                       for q in (p, agent_p)], np.float64)
    moved2, biggest = kernels.move(pos, a.vel, a.force, a.last, a.pinned, a.agent, live, s,
                                   a.heat, stride, unit, p.dt, motion)
    return float(moved2), float(biggest)


def stride(pos: F32, indptr: I64, nbr: npt.NDArray[np.int32], unit: float) -> float:
    """How far nodes should move per unit of force: the median edge length in layout units,
    at least 1.

    LinLog's springs pull with a constant force, so a layout whose edges are ten units long
    would otherwise take ten times the steps to find its shape as one whose edges are one unit.
    """
    rows = np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr))
    if rows.shape[0] == 0:
        return 1.0
    d = np.linalg.norm((pos[rows] - pos[nbr]).astype(np.float64), axis=1)
    d = d[np.isfinite(d)]
    return max(1.0, float(np.median(d)) / unit) if d.shape[0] else 1.0


def virial_scale(pos: F32, indptr: I64, nbr: npt.NDArray[np.int32],
                 wts: npt.NDArray[np.float32], weight: F64, p: PhysicsParams) -> float:
    """The factor that brings a layout to the scale where springs balance repulsion.

    At equilibrium the virial of the springs, ``Σ_edges F(d) · d``, equals that of the
    repulsion, ``Σ_pairs k w_i w_j`` (each pair's ``w_i w_j / d`` force times its distance), which
    does not depend on the scale; springs grow with it (linearly for LinLog, quadratically for
    linear springs). Scaling the layout by the returned factor makes the two equal, so a start
    is at the right size at once instead of after hundreds of steps of growing or shrinking.
    """
    rows = np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr))
    if rows.shape[0] == 0 or p.repel_k <= 0 or p.spring_k <= 0:
        return 1.0
    d = np.linalg.norm((pos[rows] - pos[nbr]).astype(np.float64), axis=1) / p.rest_length
    springs = 0.5 * p.spring_k * float((wts * d * (1.0 if p.linlog else d)).sum())
    total = float(weight.sum())
    repulsion = p.repel_k / total * 0.5 * (total * total - float((weight * weight).sum()))
    if springs <= 0 or repulsion <= 0:
        return 1.0
    ratio = repulsion / springs
    return float(np.clip(ratio if p.linlog else np.sqrt(ratio), 0.05, 20.0))


def components(indptr: I64, nbr: npt.NDArray[np.int32], rows: int) -> I64:
    """The connected component of every row (labels 0..k-1)."""
    adj = sparse.csr_matrix((np.ones(nbr.shape[0], np.int8), nbr, indptr), shape=(rows, rows))
    _, labels = connected_components(adj, directed=False)
    out: I64 = labels.astype(np.int64)
    return out


def _component_centres(a: Arrays, unit: float) -> F64:
    """Per connected component, (k, 4): its weighted centre (layout units) and the scale of
    its shape pull, ``min(1, SHAPE_NODES / n) / R`` (R: its weighted RMS radius, at least
    one unit)."""
    live = a.live
    comp = a.component[live]
    k = int(comp.max()) + 1 if comp.shape[0] else 0
    w = a.weight[live]
    total = np.maximum(np.bincount(comp, weights=w, minlength=k), 1e-300)
    hub = np.empty((k, 4), np.float64)
    for axis in range(3):
        hub[:, axis] = np.bincount(comp, weights=w * a.pos[live, axis], minlength=k)
    hub[:, :3] /= total[:, None] * unit
    off = a.pos[live] / unit - hub[comp, :3]
    r2 = np.bincount(comp, weights=w * (off * off).sum(axis=1), minlength=k) / total
    size = np.maximum(np.bincount(comp, minlength=k), 1)
    hub[:, 3] = np.minimum(1.0, SHAPE_NODES / size) / np.sqrt(np.maximum(r2, 1.0))
    return hub


def _repulsion(a: Arrays, codes: I64, rows: I64, lo: F64, cube: float, p: PhysicsParams,
               out: F32, crowd: F32) -> None:
    """The repulsion field at every row of ``rows`` (Morton order), into ``out``."""
    unit = p.rest_length
    sorted_pos = a.pos[rows] / np.float32(unit)
    xs = np.ascontiguousarray(sorted_pos[:, 0])
    ys = np.ascontiguousarray(sorted_pos[:, 1])
    zs = np.ascontiguousarray(sorted_pos[:, 2])
    ws = a.weight[rows].astype(np.float32)
    capacity = max(64, 4 * rows.shape[0])
    while True:
        tree = kernels.build_octree(codes, xs, ys, zs, ws, lo / unit, cube / unit, capacity)
        if tree[0] >= 0:
            break
        capacity *= 2
    count, start, end, first, nchild, com, mass, box, parent = tree
    # a group is the highest cell that is small or a leaf: every point is in one
    cand = (end[:count] - start[:count] <= kernels.GROUP_SIZE) | (first[:count] < 0)
    top = parent[:count] < 0
    groups = np.flatnonzero(cand & (top | ~cand[np.maximum(parent[:count], 0)]))
    kernels.repulsion(xs, ys, zs, ws, groups, start, end, first, nchild,
                      com.astype(np.float32), mass.astype(np.float32), box,
                      p.repulsion_cutoff / unit, p.repulsion_softening_epsilon, p.theta,
                      COLLISION_REACH if p.collision_k > 0 else 0.0, out, crowd)
