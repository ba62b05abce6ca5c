"""The multilevel start: coarsen a graph level by level, lay out the coarsest, refine.

A single-level force layout of a large sparse graph (a grid, a road map, a tree) folds: parts
that belong side by side start on opposite sides and repulsion alone cannot pass them through
each other. Multilevel methods (Walshaw 2003; Hu's sfdp 2005; FM³) lay out a small coarse
version of the graph first, where the global shape is cheap to find, then hand that shape down:
each node of a finer level starts where its coarse node ended, and the finer level only has to
sort out its neighbourhood.

Coarsening here is heavy-edge matching (nodes in ascending degree, each matched with the free
neighbour of the heaviest edge relative to both ends' weights, so groups stay balanced), then
every node left alone joins its heaviest neighbour's group, so a star collapses into its centre
instead of staying a star. A coarse node's weight is the sum of its members' (the repulsion of a
group is the repulsion of its members), a coarse edge's weight the sum of the edges it stands
for. With repulsion relative to the total weight (see ``engine``), each level settles at about
the scale of the next, so positions pass down without rescaling. Agent nodes are never merged.
Coarsening stops at :data:`COARSEST` nodes, or when a level shrinks by less than
:data:`MIN_SHRINK`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit
from scipy import sparse

from .forcefield import Speed, components, scratch, stride, virial_scale
from .params import PhysicsParams

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]

COARSEST = 8
"""Coarsening stops once a level has at most this many nodes."""

MIN_SHRINK = 0.25
"""A level that removes less than this share of nodes ends the coarsening (no progress)."""

MIN_NODES = 16
"""Graphs smaller than this are laid out in one level (they do not fold)."""


@dataclass(eq=False, slots=True)
class Level:
    """One level of the hierarchy: a graph over rows 0..n-1, and the group each row is in."""

    indptr: I64
    nbr: npt.NDArray[np.int32]
    wts: npt.NDArray[np.float32]
    weight: F64
    agent: npt.NDArray[np.bool_]
    parent: I64 | None = None  # for each row, its row in the next coarser level

    @property
    def size(self) -> int:
        """Rows (nodes) of this level."""
        return int(self.weight.shape[0])


@njit(cache=True, nogil=True)
def _match(indptr, nbr, wts, weight, agent, order):  # type: ignore[no-untyped-def]
    """Group rows: heavy-edge matching, then lone rows join a neighbour's group."""
    n = indptr.shape[0] - 1
    group = np.full(n, -1, np.int64)
    count = 0
    for u in order:
        if group[u] >= 0 or agent[u]:
            continue
        best, best_score = -1, -1.0
        for e in range(indptr[u], indptr[u + 1]):
            v = nbr[e]
            if v == u or group[v] >= 0 or agent[v]:
                continue
            score = wts[e] / (weight[u] * weight[v])
            if score > best_score:
                best, best_score = v, score
        if best >= 0:
            group[u] = count
            group[best] = count
            count += 1
    for u in order:
        if group[u] >= 0:
            continue
        best, best_score = -1, -1.0
        if not agent[u]:
            for e in range(indptr[u], indptr[u + 1]):
                v = nbr[e]
                if v == u or group[v] < 0 or agent[v]:
                    continue
                score = wts[e] / weight[v]
                if score > best_score:
                    best, best_score = v, score
        if best >= 0:
            group[u] = group[best]
        else:
            group[u] = count
            count += 1
    return group, count


def coarsen(level: Level) -> Level:
    """The next coarser level of ``level`` (which gets its ``parent`` map)."""
    n = level.size
    degree = np.diff(level.indptr)
    order = np.lexsort((np.arange(n), degree)).astype(np.int64)
    group, count = _match(level.indptr, level.nbr, level.wts, level.weight, level.agent, order)
    level.parent = group
    rows = np.repeat(np.arange(n), degree)
    a, b = group[rows], group[level.nbr]
    keep = a != b
    adj = sparse.csr_matrix((level.wts[keep].astype(np.float64), (a[keep], b[keep])),
                            shape=(count, count))
    adj.sum_duplicates()
    weight = np.bincount(group, weights=level.weight, minlength=count).astype(np.float64)
    agent = np.zeros(count, bool)
    agent[group[level.agent]] = True
    return Level(adj.indptr.astype(np.int64), adj.indices.astype(np.int32),
                 adj.data.astype(np.float32), weight, agent)


def hierarchy(first: Level) -> list[Level]:
    """Levels from ``first`` (finest) to the coarsest; a single level for small graphs."""
    levels = [first]
    if first.size < MIN_NODES:
        return levels
    while levels[-1].size > COARSEST:
        coarse = coarsen(levels[-1])
        if coarse.size > (1 - MIN_SHRINK) * levels[-1].size:
            levels[-1].parent = None
            break
        levels.append(coarse)
    return levels


LEVEL_STEPS = 30
"""At least this many steps on a coarse level (unless calm) before it hands its layout down,
plus :data:`LEVEL_WORK` / its size: small levels are cheap and get up to
:data:`LEVEL_STEPS_MAX` steps to settle the global shape."""
LEVEL_WORK = 3000
LEVEL_STEPS_MAX = 300

LEVEL_CALM = 1e-4
"""A coarse level is done once a node moves less than this (mean square, layout units²)..."""

LEVEL_CALM_STEPS = 5
"""... for this many steps in a row."""

LEAN = 0.3
"""... moved this share of the way towards the mean of its neighbours' groups."""

SPREAD = 0.1
"""Members of a coarse node start around it, within about this share of a coarse edge."""


def rescaled(pos: F32, level: Level, params: PhysicsParams) -> F32:
    """A level's layout brought to its equilibrium size, about its centre (the virial)."""
    centre = pos.mean(axis=0)
    factor = virial_scale(pos, level.indptr, level.nbr, level.wts, level.weight, params)
    out: F32 = ((pos - centre) * np.float32(factor) + centre).astype(np.float32)
    return out


class HandDown:
    """Places the rows of ``finer`` from a layout of ``coarse``.

    Each member starts at its group, moved :data:`LEAN` of the way towards the mean of its
    neighbours' groups (so a group's members come out in the order the graph puts them in: a
    path stays a path, not a zigzag), plus its fixed ``offsets`` scaled to :data:`SPREAD` of a
    coarse edge. What depends only on the two levels is built once: a refinement hands down
    every published frame while it lays out a coarse level.
    """

    def __init__(self, coarse: Level, finer: Level) -> None:
        assert finer.parent is not None
        self.parent = finer.parent
        self.coarse_nbr = coarse.nbr
        self.rows = np.repeat(np.arange(coarse.size), np.diff(coarse.indptr))
        self.adj = sparse.csr_matrix((finer.wts.astype(np.float64), finer.nbr, finer.indptr),
                                     shape=(finer.size, finer.size))
        total = np.asarray(self.adj.sum(axis=1)).ravel()
        self.has = total > 0
        self.total = total[self.has, None]

    def __call__(self, pos: F32, offsets: F64) -> F32:
        """The rows of the finer level placed from the coarse layout ``pos``."""
        edge = (float(np.median(np.linalg.norm(pos[self.rows] - pos[self.coarse_nbr], axis=1)))
                if self.rows.shape[0] else 0.0) or 1.0
        home = pos[self.parent].astype(np.float64)
        lean = self.adj @ home
        lean[self.has] = lean[self.has] / self.total - home[self.has]
        lean[~self.has] = 0.0
        out: F32 = (home + LEAN * lean + SPREAD * edge * offsets).astype(np.float32)
        return out


class Refinement:
    """The coarse levels of a multilevel start, laid out one after another, coarsest first.

    Rows of the finest level (index 0) are the graph's live ids in ``ids``; the graph's own
    arrays hold level 0, this object holds the level being laid out (``pos``, ``vel`` and the
    step buffers) until it reaches level 1 and hands its layout to the graph.
    """

    def __init__(self, levels: list[Level], ids: I64, params: PhysicsParams,
                 rng: np.random.Generator) -> None:
        self.levels = levels
        self.ids = ids
        self.index = len(levels) - 1
        k = levels[-1].size
        unit = params.rest_length
        self.pos = (rng.normal(0.0, 1.0, (k, 3)) * unit * max(k, 1) ** (1 / 3)).astype(np.float32)
        # where members sit around their group, drawn once: a hand-down, and the picture of
        # the finest level while a coarse one is laid out, are the same function of the layout
        self.offsets = [rng.normal(0.0, 1.0, (lv.size, 3)) for lv in levels[:-1]]
        # level i's layout handed to level i − 1 is self.downs[i - 1]
        self.downs = [HandDown(levels[i + 1], levels[i]) for i in range(len(levels) - 1)]
        self.pos = rescaled(self.pos, levels[-1], params)
        self._reset(params)

    def _reset(self, params: PhysicsParams) -> None:
        level = self.level
        k = level.size
        self.vel = np.zeros((k, 3), np.float32)
        self.force, self.last, self.heat = scratch(k)
        self.stride = stride(self.pos, level.indptr, level.nbr, params.rest_length)
        self.component = components(level.indptr, level.nbr, k)
        self.pinned = np.zeros(k, bool)
        self.live = np.arange(k, dtype=np.int64)
        self.speed = Speed()
        self.steps = 0
        self.calm = 0

    @property
    def level(self) -> Level:
        """The level being laid out."""
        return self.levels[self.index]

    def record(self, moved2: float) -> bool:
        """Count a step of the current level; True once the level is done."""
        self.steps += 1
        self.calm = self.calm + 1 if moved2 < LEVEL_CALM else 0
        limit = min(LEVEL_STEPS + LEVEL_WORK // self.level.size, LEVEL_STEPS_MAX)
        return self.calm >= LEVEL_CALM_STEPS or self.steps >= limit

    def _down(self, pos: F32, index: int, params: PhysicsParams) -> F32:
        """Level ``index``'s layout handed to level ``index − 1``, at that level's size."""
        placed = self.downs[index - 1](pos, self.offsets[index - 1])
        return rescaled(placed, self.levels[index - 1], params)

    def descend(self, params: PhysicsParams) -> F32 | None:
        """Hand the current layout to the next finer level. Returns the positions of level 0's
        rows when that level is the graph itself (the refinement is then over), else None."""
        self.pos = self._down(self.pos, self.index, params)
        self.index -= 1
        if self.index == 0:
            out: F32 = self.pos
            return out
        self._reset(params)
        return None

    def finest_positions(self, params: PhysicsParams) -> F32:
        """Where each row of level 0 is shown now: the current layout handed down through the
        finer levels without steps (what :meth:`finish` would give)."""
        pos: F32 = self.pos
        for index in range(self.index, 0, -1):
            pos = self._down(pos, index, params)
        return pos

    def finish(self, params: PhysicsParams) -> F32:
        """Hand the layout down through every remaining level at once (no steps between)."""
        while True:
            out = self.descend(params)
            if out is not None:
                return out
