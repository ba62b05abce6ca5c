"""Compiled single-pass loops for the compact stream (kind 0x03).

numpy would take a dozen passes over the coordinates for one delta (quantise, subtract, compare,
zigzag, measure, write); these loops take one or two. They are ``nogil`` so a server can encode
beside its event loop, and ``cache=True`` so a process after the first loads them in
milliseconds. Decoding kernels return a status instead of raising: the caller turns a non-zero
status into a ProtocolError.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _zz(v: int) -> int:
    return (v << 1) ^ (v >> 63)


@njit(cache=True, nogil=True, inline="always")
def _vlen(z: int) -> int:
    if z < 0x80:
        return 1
    if z < 0x4000:
        return 2
    if z < 0x200000:
        return 3
    if z < 0x10000000:
        return 4
    return 5


@njit(cache=True, nogil=True, inline="always")
def _put(out, o, z):  # type: ignore[no-untyped-def]
    """Write z (>= 0) as a varint at out[o]; returns the offset after it."""
    while z >= 0x80:
        out[o] = (z & 0x7F) | 0x80
        o += 1
        z >>= 7
    out[o] = z
    return o + 1


@njit(cache=True, nogil=True)
def quantise(pos, origin, step, out):  # type: ignore[no-untyped-def]
    """out[i, a] = rint((pos[i, a] - origin[a]) / step[a]); returns the largest |out|."""
    n = pos.shape[0]
    peak = np.int64(0)
    for i in range(n):
        for a in range(3):
            v = np.int64(np.rint((np.float64(pos[i, a]) - origin[a]) / step[a]))
            out[i, a] = v
            peak = max(peak, abs(v))
    return peak


@njit(cache=True, nogil=True)
def moved_and_costs(q, base, prev):  # type: ignore[no-untyped-def]
    """Indices of rows where q differs from base, and the approximate bytes of a delta
    against ``base`` and against ``prev`` (varints plus one byte of id per moved node)."""
    n = q.shape[0]
    idx = np.empty(n, np.int64)
    moved = 0
    cost_key = 0
    cost_prev = 0
    for i in range(n):
        ck = 0
        cp = 0
        diff_key = False
        diff_prev = False
        for a in range(3):
            dk = q[i, a] - base[i, a]
            dp = q[i, a] - prev[i, a]
            if dk != 0:
                diff_key = True
            if dp != 0:
                diff_prev = True
            ck += _vlen(_zz(dk))
            cp += _vlen(_zz(dp))
        if diff_key:
            idx[moved] = i
            moved += 1
            cost_key += ck + 1
        if diff_prev:
            cost_prev += cp + 1
    return idx[:moved].copy(), cost_key, cost_prev


@njit(cache=True, nogil=True)
def moved_rows(q, base):  # type: ignore[no-untyped-def]
    """Indices of rows where q differs from base."""
    n = q.shape[0]
    idx = np.empty(n, np.int64)
    moved = 0
    for i in range(n):
        if q[i, 0] != base[i, 0] or q[i, 1] != base[i, 1] or q[i, 2] != base[i, 2]:
            idx[moved] = i
            moved += 1
    return idx[:moved].copy()


@njit(cache=True, nogil=True)
def varint_columns(d):  # type: ignore[no-untyped-def]
    """Zigzag varints of the (m, 3) moves d: all x, then all y, then all z."""
    m = d.shape[0]
    out = np.empty(15 * m, np.uint8)
    o = 0
    for a in range(3):
        for k in range(m):
            o = _put(out, o, _zz(d[k, a]))
    return out[:o].copy()


@njit(cache=True, nogil=True)
def gap_varints(idx):  # type: ignore[no-untyped-def]
    """Varints of the gaps between ascending indices (first gap counted from -1)."""
    m = idx.shape[0]
    out = np.empty(5 * m, np.uint8)
    o = 0
    prev = -1
    for k in range(m):
        o = _put(out, o, idx[k] - prev - 1)
        prev = idx[k]
    return out[:o].copy()


@njit(cache=True, nogil=True)
def gap_bytes(idx):  # type: ignore[no-untyped-def]
    """Bytes :func:`gap_varints` would write."""
    total = 0
    prev = -1
    for k in range(idx.shape[0]):
        total += _vlen(idx[k] - prev - 1)
        prev = idx[k]
    return total


@njit(cache=True, nogil=True)
def read_varints(raw, count, out):  # type: ignore[no-untyped-def]
    """Read exactly ``count`` u32 varints filling ``raw``; status 0 ok, 1 short, 2 long,
    3 a varint over 5 bytes or 32 bits, 4 bytes left over."""
    o = 0
    n = raw.shape[0]
    for k in range(count):
        value = 0
        shift = 0
        while True:
            if o >= n:
                return 1
            b = raw[o]
            o += 1
            if shift == 28 and b > 0x0F:
                return 3
            value |= (int(b) & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift > 28:
                return 3
        out[k] = value
    if o != n:
        return 4
    return 0


@njit(cache=True, nogil=True)
def write_varints(values):  # type: ignore[no-untyped-def]
    """Varints of non-negative integers below 2^32."""
    out = np.empty(5 * values.shape[0], np.uint8)
    o = 0
    for k in range(values.shape[0]):
        o = _put(out, o, values[k])
    return out[:o].copy()


@njit(cache=True, nogil=True)
def bounds(a):  # type: ignore[no-untyped-def]
    """Per-column minimum and maximum of an (n, 3) array with n > 0, as float64."""
    lo = np.empty(3, np.float64)
    hi = np.empty(3, np.float64)
    for c in range(3):
        lo[c] = a[0, c]
        hi[c] = a[0, c]
    for i in range(1, a.shape[0]):
        for c in range(3):
            v = a[i, c]
            lo[c] = min(lo[c], v)
            hi[c] = max(hi[c], v)
    return lo, hi


@njit(cache=True, nogil=True)
def byte_planes(q, base, width, out):  # type: ignore[no-untyped-def]
    """Write (q - base) as ``width`` byte planes per axis (x planes, then y, then z)."""
    n = q.shape[0]
    o = 0
    for a in range(3):
        for b in range(width):
            sh = 8 * b
            for i in range(n):
                out[o + i] = ((q[i, a] - base[a]) >> sh) & 0xFF
            o += n


@njit(cache=True, nogil=True)
def read_byte_planes(raw, n, width, base, q):  # type: ignore[no-untyped-def]
    """Inverse of :func:`byte_planes`."""
    o = 0
    for a in range(3):
        for i in range(n):
            q[i, a] = 0
        for b in range(width):
            sh = 8 * b
            for i in range(n):
                q[i, a] |= np.int64(raw[o + i]) << sh
            o += n
        for i in range(n):
            q[i, a] += base[a]


@njit(cache=True, nogil=True)
def apply_q_delta(base, motion, h, span, factor, shift, idx, dq, q, motion_out):  # type: ignore[no-untyped-def]
    """One pass of a kind 0x03 delta or rebase over the held keyframe (docs/protocol.md §4.4).

    ``q = shift(pred)`` with ``pred = base + floor(motion × h / span)``, or with a ``factor``
    per axis (shape (3,), value coding 2) ``pred = base + floor(motion × factor)`` in float64
    (``motion`` of shape (0, 3): ``pred = base``), then ``q[idx] += dq``; for a rebase
    (``motion_out`` of shape (n, 3)) also ``motion_out = q − shift(base)``. Returns the largest
    ``|q|`` or ``|shift(pred)|``.
    """
    n = base.shape[0]
    predicted = motion.shape[0] == n and n > 0
    fitted = factor.shape[0] == 3
    peak = 0
    for i in range(n):
        for a in range(3):
            p = base[i, a]
            if predicted:
                if fitted:
                    p += np.int64(np.floor(np.float64(motion[i, a]) * factor[a]))
                else:
                    p += (motion[i, a] * h) // span
            s = shift[a]
            if s > 0:
                p <<= s
            elif s < 0:
                p >>= -s
            q[i, a] = p
            peak = max(peak, abs(p))  # the prediction too stays within ±2^30 (§4.4)
    for k in range(idx.shape[0]):
        i = idx[k]
        for a in range(3):
            q[i, a] += dq[k, a]
    rebase = motion_out.shape[0] == n
    for i in range(n):
        for a in range(3):
            v = q[i, a]
            peak = max(peak, abs(v))
            if rebase:
                b = base[i, a]
                s = shift[a]
                if s > 0:
                    b <<= s
                elif s < 0:
                    b >>= -s
                motion_out[i, a] = v - b
    return peak


@njit(cache=True, nogil=True)
def fit_factor(q, base, motion):  # type: ignore[no-untyped-def]
    """Per axis, the least-squares factor ``f`` of ``q − base ≈ motion × f``:
    ``Σ m·d / Σ m²`` (0 where no node moved)."""
    num = np.zeros(3)
    den = np.zeros(3)
    for i in range(q.shape[0]):
        for a in range(3):
            m = np.float64(motion[i, a])
            num[a] += m * np.float64(q[i, a] - base[i, a])
            den[a] += m * m
    out = np.zeros(3)
    for a in range(3):
        if den[a] > 0:
            out[a] = num[a] / den[a]
    return out


@njit(cache=True, nogil=True)
def predict_fitted(base, motion, factor):  # type: ignore[no-untyped-def]
    """``base + floor(motion × factor)`` per node and axis, the product in float64 (value
    coding 2; the arithmetic of :func:`apply_q_delta`)."""
    out = np.empty_like(base)
    for i in range(base.shape[0]):
        for a in range(3):
            out[i, a] = base[i, a] + np.int64(np.floor(np.float64(motion[i, a]) * factor[a]))
    return out


@njit(cache=True, nogil=True)
def prediction_fits(q, pred, limit):  # type: ignore[no-untyped-def]
    """Whether every ``|pred|`` is below ``limit`` and every ``|q − pred|`` fits an int32."""
    for i in range(q.shape[0]):
        for a in range(3):
            p = pred[i, a]
            if abs(p) >= limit or abs(q[i, a] - p) >= 2147483648:
                return False
    return True
