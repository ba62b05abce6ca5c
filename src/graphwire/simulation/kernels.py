"""Compiled physics kernels: Barnes–Hut repulsion on a Morton-ordered octree, springs, moves.

Why Barnes–Hut. The repulsion reaches every node (ForceAtlas2's ``w_i w_j / d``, no cut-off by
default: a cut-off is what let the old layouts mix communities), so an exact sum is n² pairs:
50 million a step at 10,000 nodes. Barnes–Hut replaces every distant group of nodes by its
weighted centre and evaluates a few hundred interactions per node. Points are sorted by Morton
code first, so the octree is built in one pass over sorted codes and the nodes of a cell are
contiguous in memory (the traversal reads cache lines, not scattered rows). Pairs closer than
one layout unit are always evaluated exactly: they also feel the collision push.

All kernels are ``nogil`` (the simulation thread runs beside the event loop), ``cache=True``
and deterministic: each node's force is summed by one thread in a fixed order, and the
temperature noise is a counter-based hash of (seed, step, node), not a stateful generator.
"""

from __future__ import annotations

import os

# Threads of numba's OpenMP layer spin between parallel regions by default; beside an event loop
# on a two-core machine that burns a third of a core for nothing (0.19 against 0.13 cores at five
# steps a second on 10,000 nodes). Sleeping waiters cost a little latency per region instead.
# libgomp reads this when numba first loads it, so it must be set before any kernel runs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
from numba import njit, prange

MORTON_BITS = 21  # per axis: 63-bit codes
LEAF_SIZE = 16


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _spread(v: int) -> int:
    """Interleave the low 21 bits of v with two zero bits between each."""
    v &= 0x1FFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _compact(v: int) -> int:
    """Inverse of _spread: every third bit of v, packed."""
    v &= 0x1249249249249249
    v = (v ^ (v >> 2)) & 0x10C30C30C30C30C3
    v = (v ^ (v >> 4)) & 0x100F00F00F00F00F
    v = (v ^ (v >> 8)) & 0x1F0000FF0000FF
    v = (v ^ (v >> 16)) & 0x1F00000000FFFF
    v = (v ^ (v >> 32)) & 0x1FFFFF
    return v


@njit(cache=True, nogil=True, error_model="numpy")
def morton_codes(pos, live, lo, scale):  # type: ignore[no-untyped-def]
    """63-bit Morton code of each live node inside the cube [lo, lo + 2^21 / scale)."""
    m = live.shape[0]
    codes = np.empty(m, np.int64)
    top = (1 << MORTON_BITS) - 1
    for k in range(m):
        i = live[k]
        c = 0
        for a in range(3):
            q = int((pos[i, a] - lo[a]) * scale)
            q = 0 if q < 0 else (top if q > top else q)
            c |= _spread(q) << a
        codes[k] = c
    return codes


@njit(cache=True, nogil=True, error_model="numpy")
def build_octree(codes, xs, ys, zs, ws, lo, cube, capacity):  # type: ignore[no-untyped-def]
    """Linear octree over points sorted by Morton code.

    Returns (count, start, end, first_child, n_child, com (count, 3), mass, box (count, 4):
    min corner and edge length, parent); count is -1 if ``capacity`` nodes were not enough.
    Children of a node are stored contiguously; nodes are in breadth-first order, so a reverse
    pass sees children before parents.
    """
    start = np.empty(capacity, np.int64)
    end = np.empty(capacity, np.int64)
    level = np.empty(capacity, np.int64)
    parent = np.full(capacity, -1, np.int64)
    first = np.full(capacity, -1, np.int64)
    nchild = np.zeros(capacity, np.int64)
    n = codes.shape[0]
    start[0], end[0], level[0] = 0, n, 0
    count = 1
    head = 0
    while head < count:
        s, e, lv = start[head], end[head], level[head]
        if e - s > LEAF_SIZE and lv < MORTON_BITS:
            shift = 3 * (MORTON_BITS - 1 - lv)
            first[head] = count
            left = s
            for digit in range(8):
                # codes in [s, e) share the prefix above `shift`: the digit is monotonic
                a, b = left, e
                while a < b:
                    mid = (a + b) >> 1
                    if (codes[mid] >> shift) & 7 <= digit:
                        a = mid + 1
                    else:
                        b = mid
                right = a
                if right > left:
                    if count >= capacity:
                        return (-1, start, end, first, nchild, np.empty((0, 3)), np.empty(0),
                                np.empty((0, 4)), parent)
                    start[count], end[count], level[count] = left, right, lv + 1
                    parent[count] = head
                    count += 1
                    nchild[head] += 1
                left = right
        head += 1
    com = np.zeros((count, 3), np.float64)
    mass = np.zeros(count, np.float64)
    for node in range(count - 1, -1, -1):
        if first[node] < 0:
            for j in range(start[node], end[node]):
                com[node, 0] += ws[j] * xs[j]
                com[node, 1] += ws[j] * ys[j]
                com[node, 2] += ws[j] * zs[j]
                mass[node] += ws[j]
        else:
            for c in range(first[node], first[node] + nchild[node]):
                com[node, 0] += com[c, 0]
                com[node, 1] += com[c, 1]
                com[node, 2] += com[c, 2]
                mass[node] += mass[c]
    box = np.empty((count, 4), np.float64)
    for node in range(count):
        if mass[node] > 0:
            com[node, 0] /= mass[node]
            com[node, 1] /= mass[node]
            com[node, 2] /= mass[node]
        lv = level[node]
        size = cube / (1 << lv)
        code = codes[start[node]]
        box[node, 0] = lo[0] + (_compact(code) >> (MORTON_BITS - lv)) * size
        box[node, 1] = lo[1] + (_compact(code >> 1) >> (MORTON_BITS - lv)) * size
        box[node, 2] = lo[2] + (_compact(code >> 2) >> (MORTON_BITS - lv)) * size
        box[node, 3] = size
    return count, start, end, first, nchild, com, mass, box, parent


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _hash_unit(seed: int, step: int, i: int, axis: int) -> float:
    """A deterministic value in [-1, 1) from (seed, step, i, axis): splitmix64."""
    z = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + i * 0x94D049BB133111EB
         + axis * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z = z ^ (z >> 31)
    return (z >> 11) * (2.0 / 9007199254740992.0) - 1.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _switch(r2, on2, cut2):  # type: ignore[no-untyped-def]
    """CHARMM switching function: 1 inside r_on, 0 at the cut-off, smooth (C¹) between."""
    if r2 <= on2:
        return np.float32(1.0)
    a = cut2 - r2
    return a * a * (cut2 + 2 * r2 - 3 * on2) / ((cut2 - on2) * (cut2 - on2) * (cut2 - on2))


_LIST = 2048  # interaction-list entries a group collects before it evaluates them
GROUP_SIZE = 16  # points that share one tree walk and one interaction list


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _apply(gx, gy, gz, fx, fy, fz, cx, cy, cz, n, px, py, pz,  # type: ignore[no-untyped-def]
           pw, m, eps, on2, cut2, reach):
    """Add the field of ``m`` sources (points, or the centres of far cells) at the ``n``
    points of a group to ``f``, and the collision push of those within ``reach`` to ``c``.

    The sources are gathered into contiguous arrays and the collision term is a select, not a
    branch, so the loop over them runs as vector instructions. A far cell lies beyond
    ``reach`` of every point of the group, so its push is zero.
    """
    for k in range(n):
        x, y, z = gx[k], gy[k], gz[k]
        ax = np.float32(0.0)
        ay = np.float32(0.0)
        az = np.float32(0.0)
        bx = np.float32(0.0)
        by = np.float32(0.0)
        bz = np.float32(0.0)
        for t in range(m):
            dx = x - px[t]
            dy = y - py[t]
            dz = z - pz[t]
            r2 = dx * dx + dy * dy + dz * dz
            s = pw[t] / (r2 + eps)
            if cut2 > 0:
                s = s * _switch(r2, on2, cut2) if r2 < cut2 else np.float32(0.0)
            ax += dx * s
            ay += dy * s
            az += dz * s
            d = np.sqrt(r2)
            c = (reach - d) / d if r2 < reach * reach and r2 > 0 else np.float32(0.0)
            bx += dx * c
            by += dy * c
            bz += dz * c
        fx[k] += ax
        fy[k] += ay
        fz[k] += az
        cx[k] += bx
        cy[k] += by
        cz[k] += bz


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def repulsion(xs, ys, zs, ws, groups, start, end, first, nchild,  # type: ignore[no-untyped-def]
              com, mass, box, cutoff, eps, theta, reach, out, crowd):
    """Barnes–Hut field of ``Σ_j w_j (p − p_j) / (|p − p_j|² + eps)`` at every point.

    That is a force of ``w_j / d`` from each other point, the repulsion law of ForceAtlas2 (the
    caller multiplies by the point's own weight and the strength). One tree walk per group
    (Barnes 1990, grouped traversal): a group is a cell of at most ``GROUP_SIZE`` points that
    share one interaction list; cells far enough from the group's bounding box (edge /
    distance < theta) act through their weighted centre, nearer leaves contribute their points
    one by one. With ``cutoff`` > 0 the force is switched off smoothly between half the cut-off
    and the cut-off, and cells wholly beyond it are skipped. A point's own term is zero (its
    offset from itself is zero). Writes the field at each point, in Morton order, to ``out``.

    Every pair closer than ``reach`` is evaluated exactly (cells within reach of the group are
    always opened) and also adds ``(reach − d) · unit vector`` to ``crowd``: the overlap that
    the collision force pushes apart.
    """
    cut2 = np.float32(cutoff * cutoff) if cutoff > 0 else np.float32(0.0)
    on2 = np.float32(0.25 * cutoff * cutoff)  # the switch starts at half the cut-off
    theta2 = theta * theta
    e32 = np.float32(eps)
    r32 = np.float32(reach)
    reach2 = reach * reach
    for gi in prange(groups.shape[0]):
        group = groups[gi]
        s, e = start[group], end[group]
        n = e - s
        gx = xs[s:e]
        gy = ys[s:e]
        gz = zs[s:e]
        lox, hix = gx.min(), gx.max()
        loy, hiy = gy.min(), gy.max()
        loz, hiz = gz.min(), gz.max()
        fx = np.zeros(n, np.float32)
        fy = np.zeros(n, np.float32)
        fz = np.zeros(n, np.float32)
        qx = np.zeros(n, np.float32)
        qy = np.zeros(n, np.float32)
        qz = np.zeros(n, np.float32)
        nx = np.empty(_LIST, np.float32)
        ny = np.empty(_LIST, np.float32)
        nz = np.empty(_LIST, np.float32)
        nw = np.empty(_LIST, np.float32)
        nn = 0
        stack = np.empty(8 * (MORTON_BITS + 2), np.int64)
        sp = 1
        stack[0] = 0
        while sp > 0:
            sp -= 1
            node = stack[sp]
            bx, by, bz, size = box[node, 0], box[node, 1], box[node, 2], box[node, 3]
            dx = max(bx - hix, 0.0, lox - (bx + size))
            dy = max(by - hiy, 0.0, loy - (by + size))
            dz = max(bz - hiz, 0.0, loz - (bz + size))
            gap2 = dx * dx + dy * dy + dz * dz
            if cut2 > 0 and gap2 >= cut2:
                continue  # every point of this cell is beyond the cut-off of every point
            px, py, pz = com[node, 0], com[node, 1], com[node, 2]
            dx = max(lox - px, 0.0, px - hix)
            dy = max(loy - py, 0.0, py - hiy)
            dz = max(loz - pz, 0.0, pz - hiz)
            if gap2 >= reach2 and size * size < theta2 * (dx * dx + dy * dy + dz * dz):
                if nn == _LIST:
                    _apply(gx, gy, gz, fx, fy, fz, qx, qy, qz, n, nx, ny, nz, nw, nn, e32, on2,
                           cut2, r32)
                    nn = 0
                nx[nn] = px
                ny[nn] = py
                nz[nn] = pz
                nw[nn] = mass[node]
                nn += 1
            elif first[node] < 0:
                for j in range(start[node], end[node]):
                    if nn == _LIST:
                        _apply(gx, gy, gz, fx, fy, fz, qx, qy, qz, n, nx, ny, nz, nw, nn, e32,
                               on2, cut2, r32)
                        nn = 0
                    nx[nn] = xs[j]
                    ny[nn] = ys[j]
                    nz[nn] = zs[j]
                    nw[nn] = ws[j]
                    nn += 1
            else:
                for c in range(first[node], first[node] + nchild[node]):
                    stack[sp] = c
                    sp += 1
        _apply(gx, gy, gz, fx, fy, fz, qx, qy, qz, n, nx, ny, nz, nw, nn, e32, on2, cut2, r32)
        for k in range(n):
            out[s + k, 0] = fx[k]
            out[s + k, 1] = fy[k]
            out[s + k, 2] = fz[k]
            crowd[s + k, 0] = qx[k]
            crowd[s + k, 1] = qy[k]
            crowd[s + k, 2] = qz[k]


# Rows of the ``params`` table of ``forces``: one per node type (knowledge 0, agent 1).
(P_REPEL, P_SPRING, P_LINLOG, P_GRAVITY, P_CENTER, P_BOUNDS, P_MARGIN, P_WALL, P_NOISE,
 P_COLLIDE, P_MAX_FORCE, P_SHAPE) = range(12)


@njit(cache=True, nogil=True, error_model="numpy", parallel=True, fastmath=True)
def forces(pos, live, order, rep, crowd, weight, agent, indptr, nbr,  # type: ignore[no-untyped-def]
           wts, component, hub, params, unit, seed, step, heat, out):
    """Total force on every live node, in layout units (positions / ``unit``), by node id.

    ``rep`` is the repulsion field in Morton order (``order`` maps it to ``live``); a node's
    repulsion is its weight × the field × the repulsion strength. Springs pull with
    ``spring · w`` (LinLog: a constant pull past one unit, linear inside) or ``spring · w · d``
    along each edge, using the agent row when either end is an agent. Gravity pulls
    ``gravity · weight`` towards the origin whatever the distance, the centre spring
    ``center · weight · d``, both measured at the centre of the node's connected
    ``component`` (``hub``, layout units); the shape pull ``shape · weight · hub[c, 3]``
    towards that centre, constant past one unit; a soft wall pushes back past
    ``margin · bounds``; noise ``noise · heat`` shakes nodes (off by default); the collision
    force ``collide · crowd`` pushes apart nodes closer than one layout unit.
    """
    for p in prange(order.shape[0]):
        i = live[order[p]]
        row = 1 if agent[i] else 0
        wi = weight[i]
        kr = params[row, P_REPEL] * wi
        fx = kr * rep[p, 0]
        fy = kr * rep[p, 1]
        fz = kr * rep[p, 2]
        kc = params[row, P_COLLIDE]
        fx += kc * crowd[p, 0]
        fy += kc * crowd[p, 1]
        fz += kc * crowd[p, 2]
        px, py, pz = pos[i, 0] / unit, pos[i, 1] / unit, pos[i, 2] / unit
        for e in range(indptr[i], indptr[i + 1]):
            j = nbr[e]
            srow = 1 if agent[i] or agent[j] else 0
            ex = pos[j, 0] / unit - px
            ey = pos[j, 1] / unit - py
            ez = pos[j, 2] / unit - pz
            d = np.sqrt(ex * ex + ey * ey + ez * ez)
            if d > 1e-9:
                s = params[srow, P_SPRING] * wts[e]
                if params[srow, P_LINLOG] != 0.0 and d > 1.0:
                    s /= d  # LinLog: a constant pull past one layout unit
                fx += ex * s
                fy += ey * s
                fz += ez * s
        # gravity and the centre spring pull a node's component (its centre ``hub``) as a
        # whole: they move components into view without bending any of them
        c = component[i]
        cx, cy, cz = hub[c, 0], hub[c, 1], hub[c, 2]
        r = np.sqrt(cx * cx + cy * cy + cz * cz)
        # (constant past one unit from the origin, linear inside: no flip as it crosses)
        g = params[row, P_CENTER] * wi + params[row, P_GRAVITY] * wi / max(r, 1.0)
        fx -= g * cx
        fy -= g * cy
        fz -= g * cz
        # the shape pull: towards the component's centre, constant past one unit (``hub[c, 3]``
        # is its scale: the component's size factor over its radius)
        sh = params[row, P_SHAPE] * wi * hub[c, 3]
        if sh != 0.0:
            dx, dy, dz = px - cx, py - cy, pz - cz
            sh /= max(np.sqrt(dx * dx + dy * dy + dz * dz), 1.0)
            fx -= sh * dx
            fy -= sh * dy
            fz -= sh * dz
        wall = params[row, P_MARGIN] * params[row, P_BOUNDS] / unit
        wall_k = params[row, P_WALL] * wi
        if px > wall:
            fx -= wall_k * (px - wall)
        elif px < -wall:
            fx -= wall_k * (px + wall)
        if py > wall:
            fy -= wall_k * (py - wall)
        elif py < -wall:
            fy -= wall_k * (py + wall)
        if pz > wall:
            fz -= wall_k * (pz - wall)
        elif pz < -wall:
            fz -= wall_k * (pz + wall)
        noise = params[row, P_NOISE]
        if noise != 0.0 and heat[i] > 0.0:
            amp = noise * heat[i] * wi
            fx += amp * _hash_unit(seed, step, i, 0)
            fy += amp * _hash_unit(seed, step, i, 1)
            fz += amp * _hash_unit(seed, step, i, 2)
        cap = params[row, P_MAX_FORCE] * wi
        mag = np.sqrt(fx * fx + fy * fy + fz * fz)
        if mag > cap:
            fx *= cap / mag
            fy *= cap / mag
            fz *= cap / mag
        out[i, 0] = fx
        out[i, 1] = fy
        out[i, 2] = fz


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def swing_traction(force, last, weight, pinned, live):  # type: ignore[no-untyped-def]
    """Per node, ``weight · |F − F_last|`` (swing) into ``last[:, 3]``; returns the sums of
    swing and of ``weight · |F + F_last| / 2`` (traction) over the free live nodes."""
    m = live.shape[0]
    sw = np.zeros(m, np.float64)
    tr = np.zeros(m, np.float64)
    for k in prange(m):
        i = live[k]
        ax = force[i, 0] - last[i, 0]
        ay = force[i, 1] - last[i, 1]
        az = force[i, 2] - last[i, 2]
        bx = force[i, 0] + last[i, 0]
        by = force[i, 1] + last[i, 1]
        bz = force[i, 2] + last[i, 2]
        s = weight[i] * np.sqrt(ax * ax + ay * ay + az * az)
        last[i, 3] = s
        if not pinned[i]:
            sw[k] = s
            tr[k] = 0.5 * weight[i] * np.sqrt(bx * bx + by * by + bz * bz)
    return sw.sum(), tr.sum()


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def move(pos, vel, force, last, pinned, agent, live, speed, heat, stride,  # type: ignore[no-untyped-def]
         unit, dt, motion):
    """Move every free node by its own speed (ForceAtlas2's swing rule) and remember its force.

    A node moves ``F · speed · heat / (1 + sqrt(speed · swing))`` layout units (a node whose
    force flips back and forth slows down, one pushed steadily keeps the global speed; a node
    cools as its ``heat`` decays, so the layout comes to rest) times ``stride`` (the layout's
    edge length: LinLog's forces do not grow with the scale, its moves do), averaged with its
    previous move by ``momentum`` (an exponential average that smooths a node's path), at most
    ``max_step`` position units; positions stay inside ±bounds. ``motion`` has a row per node
    type: momentum, max_step, bounds. The velocity is the move over ``dt``. Returns the mean
    squared move in layout units and the largest move in position units.
    """
    m = live.shape[0]
    moved2 = np.zeros(m, np.float64)
    moved = np.zeros(m, np.float64)
    for k in prange(m):
        i = live[k]
        last[i, 0] = force[i, 0]
        last[i, 1] = force[i, 1]
        last[i, 2] = force[i, 2]
        if pinned[i]:
            vel[i, 0] = 0.0
            vel[i, 1] = 0.0
            vel[i, 2] = 0.0
            continue
        row = 1 if agent[i] else 0
        momentum, max_step, bounds = motion[row, 0], motion[row, 1], motion[row, 2]
        f = stride * speed * heat[i] / (1.0 + np.sqrt(speed * last[i, 3])) * unit
        keep = 1.0 - momentum
        dx = keep * force[i, 0] * f + momentum * vel[i, 0] * dt
        dy = keep * force[i, 1] * f + momentum * vel[i, 1] * dt
        dz = keep * force[i, 2] * f + momentum * vel[i, 2] * dt
        d = np.sqrt(dx * dx + dy * dy + dz * dz)
        if d > max_step:
            s = max_step / d
            dx *= s
            dy *= s
            dz *= s
            d = max_step
        step = (dx, dy, dz)
        for a in range(3):
            p = pos[i, a] + step[a]
            if p > bounds:
                p = bounds
            elif p < -bounds:
                p = -bounds
            vel[i, a] = (p - pos[i, a]) / dt
            pos[i, a] = p
        moved2[k] = (d / unit) * (d / unit)
        moved[k] = d
    return (moved2.sum() / m if m else 0.0), (moved.max() if m else 0.0)
