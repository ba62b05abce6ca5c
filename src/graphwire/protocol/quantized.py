"""POSITIONS_Q, kind 0x03: the compact position format (docs/protocol.md §4).

Positions are integers on a grid that the keyframe states. A *keyframe* holds every live node
(ids as runs, so a dense id range costs 8 bytes); a *delta* names the keyframe it applies to and
holds, for the nodes whose grid position differs from that keyframe (or from the keyframe's
linear prediction), the difference in whole grid steps. Because every delta is relative to its
keyframe, a client holding the keyframe can apply any delta that names it, in any order, after
any skip, and lands exactly on the quantised true positions: nothing accumulates, so nothing
drifts.

A *rebase* is a keyframe sent as a delta from the previous keyframe (flags KEYFRAME | REBASE);
it may refine or coarsen the grid by powers of two. A rebased keyframe knows the motion that led
to it, so later frames may code each node's residual against the keyframe's linear prediction
(:func:`predict`); the prediction depends only on the keyframe, so any delta still applies after
any skip.

This module is the format only: the grid, the frame layouts and their pure encode/decode
functions. When to rebase is the encoder's policy (:mod:`.q_encoder`); the state a client keeps
is the decoder's (:mod:`.q_decoder`). Nothing here knows about sockets or streams.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import _kernels
from .compression import MAX_INFLATED, gunzip_bounded, maybe_gzip
from .errors import malformed
from .header import (
    HEADER_SIZE,
    Flags,
    FrameHeader,
    Kind,
    check_flag_bits,
    pack_header,
    unpack_header,
)
from .varint import decode_varints, unzigzag

# Flag bits kind 0x03 defines beyond §2.2 (documented in docs/protocol.md).
FLAG_VELOCITY = 0x08
"""The frame carries velocities (only for subscriptions that asked for them)."""
FLAG_REBASE = 0x10
"""With KEYFRAME: the keyframe is given as a delta from the keyframe named by ``keySeq``."""
FLAG_MOTION = 0x20
"""A full keyframe carries the motion that produced it (for predicted deltas)."""
_ALLOWED = (Flags.COMPRESSED | Flags.KEYFRAME | Flags.SETTLED | FLAG_VELOCITY | FLAG_REBASE
            | FLAG_MOTION)

GRID_LEVELS = 65535
"""A fresh grid divides the keyframe's extent on each axis into this many steps (16 bits)."""

_KEY_FIXED = struct.Struct("<3d3d3iB3xII")  # origin, step, base, width, pad, nodeCount, runCount
_DELTA_FIXED = struct.Struct("<IIIBB3bxII")  # keySeq, nodeCount, moved, idCoding, valueCoding,
#                                              shift[3], pad, idBytes, valueBytes
_VSCALE = struct.Struct("<3f")
_FACTOR = struct.Struct("<3f")  # the fitted prediction's factor per axis (value coding 2)

ID_ALL, ID_BITMAP, ID_GAPS = 0, 1, 2
VALUES_VARINT_COLUMNS = 0
VALUES_PREDICTED = 1
VALUES_FITTED = 2
"""Moves are residuals against ``base + floor(motion × factor)``, a factor per axis carried in
the frame (the encoder fits it to the frame's own motion)."""
FACTOR_LIMIT = 1024.0
"""A fitted factor lies within ±1024 (as the horizon of :data:`VALUES_PREDICTED`)."""
PREDICTION_HORIZON = 16
"""A stream in step with the snapshots extrapolates the keyframe's motion at most this many
snapshots ahead (a paced lane: its whole interval, see :func:`horizon`)."""
PREDICTION_SPAN_CAP = 1024
"""A paced lane's interval counts for its horizon up to this many snapshots (|motion × h| < 2^41:
exact in a JavaScript number)."""
_MOTION_HEAD = struct.Struct("<II")  # span, byte length of the motion varints

Q_LIMIT = 1 << 30
"""Grid coordinates stay within ±2^30 so a client's int32 never overflows."""
_MAX_SHIFT = 30

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U32 = npt.NDArray[np.uint32]


# ---------------------------------------------------------------------------------------------
# the grid


@dataclass(frozen=True, slots=True, eq=False)
class Grid:
    """Quantisation grid: coordinate = origin + q × step, per axis, in float64."""

    origin: F64
    step: F64

    def quantise(self, pos: npt.ArrayLike) -> I64:
        """Nearest grid coordinates of (n, 3) positions."""
        q, _ = self.quantise_peak(pos)
        return q

    def quantise_peak(self, pos: npt.ArrayLike) -> tuple[I64, int]:
        """Nearest grid coordinates and the largest magnitude among them."""
        p = np.asarray(pos)
        if p.dtype not in (np.float32, np.float64):
            p = p.astype(np.float64)
        p = np.ascontiguousarray(p).reshape(-1, 3)
        q = np.empty(p.shape, np.int64)
        peak = int(_kernels.quantise(p, self.origin, self.step, q))
        return q, peak

    def position(self, q: npt.NDArray[np.integer]) -> F64:
        """Coordinates of grid points (float64; at most half a step from the quantised input)."""
        return self.origin + q.astype(np.float64) * self.step

    def shifted(self, shift: npt.NDArray[np.integer]) -> Grid:
        """The grid refined by 2^shift per axis (negative shift coarsens); origin kept."""
        return Grid(self.origin, np.ldexp(self.step, -shift.astype(np.int64)))


def ideal_steps(lo: F64, hi: F64) -> F64:
    """1/65,535 of the extent per axis, floored at float32 resolution of the coordinates.

    Below that floor a finer grid would only describe float32 rounding noise.
    """
    extent = hi - lo
    magnitude = np.maximum(np.maximum(np.abs(lo), np.abs(hi)), 1.0)
    floor = magnitude * 2.0**-24
    return np.maximum(extent / GRID_LEVELS, floor)


def fresh_grid(pos: F32 | F64) -> Grid:
    """A grid for a new keyframe: origin at the minimum corner, 16 bits across the extent."""
    if pos.shape[0] == 0:
        return Grid(np.zeros(3), np.ones(3))
    lo, hi = _kernels.bounds(pos)
    return Grid(lo, ideal_steps(lo, hi))


def shift_for(step: F64, ideal: F64) -> npt.NDArray[np.int64]:
    """Per-axis power-of-two shift s so that step·2^-s lies in (ideal/2, ideal]."""
    out = np.zeros(3, np.int64)
    for axis in range(3):
        s = math.ceil(math.log2(step[axis] / ideal[axis]))
        while math.ldexp(step[axis], -s) > ideal[axis]:
            s += 1
        while math.ldexp(step[axis], -(s - 1)) <= ideal[axis]:
            s -= 1
        out[axis] = max(-_MAX_SHIFT, min(_MAX_SHIFT, s))
    return out


def apply_shift(q: I64, shift: npt.NDArray[np.integer]) -> I64:
    """Move grid coordinates to a grid refined (shift > 0) or coarsened (floor, shift < 0)."""
    out = q.copy()
    for axis in range(3):
        s = int(shift[axis])
        if s > 0:
            out[:, axis] <<= s
        elif s < 0:
            out[:, axis] >>= -s
    return out


def predict(base: I64, motion: I64 | None, span: int, steps: int) -> I64:
    """Where a keyframe expects its nodes ``steps`` snapshots later (grid coordinates).

    ``motion`` is how far each node moved over the ``span`` snapshots before the keyframe;
    the prediction is ``base + floor(motion × horizon(steps, span) / span)``, in integers, so
    every decoder computes the same value.
    """
    if motion is None or span <= 0 or steps <= 0:
        return base
    return base + np.floor_divide(motion * horizon(steps, span), span)


def predict_fitted(base: I64, motion: I64 | None, factor: F64) -> I64:
    """The prediction of a frame with value coding 2: ``base + floor(motion × factor)`` per node
    and axis, the product in float64 (``factor`` is the frame's float32 per axis, made float64
    exactly), so a JavaScript decoder computes the same integers."""
    if motion is None:
        return base
    out: I64 = _kernels.predict_fitted(base, motion, np.asarray(factor, np.float64))
    return out


def fit_factor(q: I64, base: I64, motion: I64) -> F64:
    """The factor per axis (float32 values, within ±:data:`FACTOR_LIMIT`) that best predicts
    ``q`` from ``base + motion × factor``, in least squares; 0 on an axis without motion."""
    f: F64 = np.clip(_kernels.fit_factor(q, base, motion), -FACTOR_LIMIT, FACTOR_LIMIT)
    return f.astype(np.float32).astype(np.float64)


def horizon(steps: int, span: int) -> int:
    """How many snapshots ahead a keyframe's prediction reaches:
    ``min(steps, max(16, min(span, 1024)))``. A stream in step with the snapshots extrapolates
    at most 16 of them; a paced one (a keyframe every ``span`` snapshots) its whole interval,
    so its next frame is predicted as far as it goes. ``|motion × h| < 2^41``: exact in a
    JavaScript number."""
    return min(steps, max(PREDICTION_HORIZON, min(span, PREDICTION_SPAN_CAP)))


# ---------------------------------------------------------------------------------------------
# id runs and moved-node sets


def id_runs(ids: U32) -> npt.NDArray[np.uint32]:
    """(k, 2) runs (first id, length) of an ascending id array: a dense range is one run."""
    if ids.shape[0] == 0:
        return np.empty((0, 2), np.uint32)
    breaks = np.flatnonzero(np.diff(ids.astype(np.int64)) != 1) + 1
    starts = np.concatenate(([0], breaks))
    lengths = np.diff(np.concatenate((starts, [ids.shape[0]])))
    return np.stack([ids[starts], lengths.astype(np.uint32)], axis=1).astype(np.uint32)


def ids_from_runs(runs: npt.NDArray[np.uint32]) -> U32:
    """Inverse of :func:`id_runs`."""
    if runs.shape[0] == 0:
        return np.empty(0, np.uint32)
    first = runs[:, 0].astype(np.int64)
    lengths = runs[:, 1].astype(np.int64)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return (np.repeat(first, lengths) + offsets).astype(np.uint32)


def _encode_moved(idx: npt.NDArray[np.int64], n: int) -> tuple[int, bytes]:
    """The cheapest of: all nodes, a bitmap over keyframe order, or varint gaps."""
    if idx.shape[0] == n:
        return ID_ALL, b""
    bitmap_bytes = (n + 7) // 8
    if bitmap_bytes <= int(_kernels.gap_bytes(idx)):
        mask = np.zeros(n, bool)
        mask[idx] = True
        return ID_BITMAP, np.packbits(mask, bitorder="little").tobytes()
    gaps: npt.NDArray[np.uint8] = _kernels.gap_varints(idx)
    return ID_GAPS, gaps.tobytes()


def _decode_moved(coding: int, data: memoryview, moved: int, n: int) -> npt.NDArray[np.int64]:
    if coding == ID_ALL:
        if moved != n or len(data):
            raise malformed("id coding 'all' needs moved == nodeCount and no id bytes")
        return np.arange(n, dtype=np.int64)
    if coding == ID_BITMAP:
        if len(data) != (n + 7) // 8:
            raise malformed(f"moved-node bitmap of {len(data)} bytes for {n} nodes")
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        if bits[n:].any():
            raise malformed("moved-node bitmap has bits set past the last node")
        idx = np.flatnonzero(bits[:n]).astype(np.int64)
        if idx.shape[0] != moved:
            raise malformed(f"moved-node bitmap marks {idx.shape[0]} nodes, header says {moved}")
        return idx
    if coding == ID_GAPS:
        gaps = decode_varints(data, moved, "moved-node gaps")
        idx = np.cumsum(gaps + 1) - 1
        if moved and int(idx[-1]) >= n:
            raise malformed(f"moved-node index {int(idx[-1])} is outside the {n} keyframe nodes")
        return idx
    raise malformed(f"unknown id coding {coding}")


# ---------------------------------------------------------------------------------------------
# velocity block: per-frame, per-axis scale, int16 per component, absolute (never accumulated)


def encode_velocity(vel: F32) -> bytes:
    v = np.asarray(vel, dtype=np.float64)
    peak = np.abs(v).max(axis=0) if v.shape[0] else np.zeros(3)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    scale = (peak / 32767.0).astype(np.float32)
    safe = np.where(scale > 0, scale.astype(np.float64), 1.0)
    qv = np.clip(np.rint(np.nan_to_num(v) / safe), -32767, 32767).astype("<i2")
    return _VSCALE.pack(*scale.tolist()) + np.ascontiguousarray(qv.T).tobytes()


def decode_velocity(data: memoryview, n: int) -> F32:
    if len(data) != _VSCALE.size + 6 * n:
        raise malformed(f"velocity block of {len(data)} bytes for {n} nodes")
    scale = np.array(_VSCALE.unpack_from(data, 0), np.float32)
    if not np.all(np.isfinite(scale)) or np.any(scale < 0):
        raise malformed("velocity scale must be finite and not negative")
    planes = np.frombuffer(data, "<i2", 3 * n, _VSCALE.size).reshape(3, n)
    return (planes.T.astype(np.float32) * scale).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# frames as values


@dataclass(frozen=True, slots=True, eq=False)
class QKeyframe:
    """A decoded full keyframe: every live node's id and grid coordinates."""

    header: FrameHeader
    grid: Grid
    ids: U32
    q: I64
    vel: F32 | None
    motion: I64 | None = None
    span: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class QDelta:
    """A decoded delta (or rebase, when ``header.keyframe``): moves relative to ``key_seq``."""

    header: FrameHeader
    key_seq: int
    node_count: int
    idx: npt.NDArray[np.int64]
    dq: I64
    shift: npt.NDArray[np.int64]
    vel: F32 | None
    value_coding: int = VALUES_VARINT_COLUMNS
    factor: F64 | None = None  # value coding 2: the prediction's factor per axis

    @property
    def rebase(self) -> bool:
        """Whether this frame makes itself the new keyframe."""
        return self.header.keyframe


def _finish(kind_flags: int, epoch: int, seq: int, payload: bytes) -> bytes:
    body, packed = maybe_gzip(payload)
    flags = kind_flags | (Flags.COMPRESSED if packed else 0)
    return pack_header(Kind.POSITIONS_Q, flags, epoch, seq) + body


def encode_keyframe(
    grid: Grid,
    ids: U32,
    q: I64,
    *,
    seq: int,
    epoch: int,
    settled: bool = False,
    vel: F32 | None = None,
    motion: I64 | None = None,
    span: int = 0,
) -> bytes:
    """A full keyframe: ids as runs, coordinates as byte planes relative to a per-axis base,
    and the motion that produced it when there is any (``FLAG_MOTION``)."""
    n = ids.shape[0]
    if n:
        lo, hi = _kernels.bounds(q)
        base, extent = lo.astype(np.int64), int((hi - lo).max())
    else:
        base, extent = np.zeros(3, np.int64), 0
    width = max(2, (extent.bit_length() + 7) // 8)
    if width > 4:
        raise ValueError("keyframe coordinates span more than 32 bits")
    runs = id_runs(ids)
    planes = np.empty(3 * width * n, np.uint8)
    _kernels.byte_planes(q, base, width, planes)
    parts = [
        _KEY_FIXED.pack(*grid.origin.tolist(), *grid.step.tolist(), *base.tolist(), width, n,
                        runs.shape[0]),
        runs.astype("<u4").tobytes(),
        planes.tobytes(),
    ]
    flags = int(Flags.KEYFRAME) | (Flags.SETTLED if settled else 0)
    if motion is not None and span > 0 and n and motion.any():
        values = _kernels.varint_columns(np.ascontiguousarray(motion, np.int64)).tobytes()
        parts.append(_MOTION_HEAD.pack(span, len(values)) + values)
        flags |= FLAG_MOTION
    if vel is not None:
        parts.append(encode_velocity(vel))
        flags |= FLAG_VELOCITY
    return _finish(flags, epoch, seq, b"".join(parts))


def encode_delta(
    key_seq: int,
    node_count: int,
    idx: npt.NDArray[np.int64],
    dq: I64,
    *,
    seq: int,
    epoch: int,
    settled: bool = False,
    rebase: bool = False,
    shift: npt.NDArray[np.int64] | None = None,
    vel: F32 | None = None,
    value_coding: int = VALUES_VARINT_COLUMNS,
    factor: F64 | None = None,
) -> bytes:
    """A delta naming ``key_seq`` (or, with ``rebase``, a keyframe based on it). With
    ``VALUES_PREDICTED`` the moves are residuals against the keyframe's prediction; with
    ``VALUES_FITTED`` against ``base + floor(motion × factor)`` (``factor`` required)."""
    sh = np.zeros(3, np.int64) if shift is None else shift
    if not rebase and sh.any():
        raise ValueError("only a rebase may change the grid")
    if (value_coding == VALUES_FITTED) != (factor is not None):
        raise ValueError("a factor goes with value coding 2, and only with it")
    id_coding, id_bytes = _encode_moved(idx, node_count)
    moves = np.ascontiguousarray(dq, dtype=np.int64).reshape(-1, 3)
    if moves.size and int(np.abs(moves).max()) >= 2**31:
        raise ValueError("a move does not fit in int32")
    values = _kernels.varint_columns(moves).tobytes()
    parts = [
        _DELTA_FIXED.pack(key_seq, node_count, idx.shape[0], id_coding, value_coding,
                          *sh.tolist(), len(id_bytes), len(values)),
        b"" if factor is None else _FACTOR.pack(*factor.tolist()),
        id_bytes,
        values,
    ]
    flags = (Flags.KEYFRAME | FLAG_REBASE if rebase else 0) | (Flags.SETTLED if settled else 0)
    if vel is not None:
        parts.append(encode_velocity(vel))
        flags |= FLAG_VELOCITY
    return _finish(int(flags), epoch, seq, b"".join(parts))


def decode_q(data: bytes | memoryview, *, max_inflated: int = MAX_INFLATED) -> QKeyframe | QDelta:
    """Parse one kind 0x03 frame without any stream state."""
    header = unpack_header(data, Kind.POSITIONS_Q)
    check_flag_bits(header.flags, _ALLOWED, Kind.POSITIONS_Q)
    if header.flags & FLAG_REBASE and not header.keyframe:
        raise malformed("the rebase flag needs the keyframe flag")
    body = memoryview(data)[HEADER_SIZE:]
    payload = memoryview(gunzip_bounded(body, max_inflated) if header.compressed else body)
    has_vel = bool(header.flags & FLAG_VELOCITY)
    if header.keyframe and not header.flags & FLAG_REBASE:
        return _decode_keyframe(header, payload, has_vel)
    return _decode_delta(header, payload, has_vel)


def _decode_keyframe(header: FrameHeader, p: memoryview, has_vel: bool) -> QKeyframe:
    if len(p) < _KEY_FIXED.size:
        raise malformed("keyframe payload is shorter than its fixed part")
    fields = _KEY_FIXED.unpack_from(p, 0)
    origin = np.array(fields[0:3], np.float64)
    step = np.array(fields[3:6], np.float64)
    base = np.array(fields[6:9], np.int64)
    width, n, nruns = fields[9], fields[10], fields[11]
    if not (np.all(np.isfinite(origin)) and np.all(np.isfinite(step)) and np.all(step > 0)):
        raise malformed("keyframe grid origin must be finite and its step positive")
    if width not in (2, 3, 4):
        raise malformed(f"keyframe coordinate width {width} is not 2, 3 or 4 bytes")
    need = _KEY_FIXED.size + 8 * nruns + 3 * width * n
    vel_len = _VSCALE.size + 6 * n if has_vel else 0
    motion, span, motion_len = None, 0, 0
    if header.flags & FLAG_MOTION:
        if len(p) < need + _MOTION_HEAD.size:
            raise malformed("keyframe motion block is missing")
        span, mlen = _MOTION_HEAD.unpack_from(p, need)
        if span == 0:
            raise malformed("keyframe motion span must be at least 1")
        motion_len = _MOTION_HEAD.size + mlen
    if len(p) != need + motion_len + vel_len:
        raise malformed(
            f"keyframe payload of {len(p)} bytes does not match {n} nodes in {nruns} runs"
        )
    runs = np.frombuffer(p, "<u4", 2 * nruns, _KEY_FIXED.size).reshape(nruns, 2)
    if nruns:
        first = runs[:, 0].astype(np.int64)
        ends = first + runs[:, 1].astype(np.int64)
        if np.any(runs[:, 1] == 0) or np.any(first[1:] <= ends[:-1] - 1) or ends[-1] > 1 << 30:
            raise malformed("keyframe id runs must be non-empty, ascending, disjoint, < 2^30")
        if int(runs[:, 1].astype(np.int64).sum()) != n:
            raise malformed(f"keyframe id runs cover {int(runs[:, 1].sum())} ids, not {n}")
    elif n:
        raise malformed(f"keyframe has {n} nodes but no id runs")
    ids = ids_from_runs(runs)
    q = np.empty((n, 3), np.int64)
    off = _KEY_FIXED.size + 8 * nruns
    _kernels.read_byte_planes(np.frombuffer(p, np.uint8, 3 * width * n, off), n, width, base, q)
    if n:
        lo, hi = _kernels.bounds(q)
        if max(abs(lo).max(), abs(hi).max()) >= Q_LIMIT:
            raise malformed("keyframe grid coordinates exceed ±2^30")
    if motion_len:
        raw = p[need + _MOTION_HEAD.size : need + motion_len]
        motion = unzigzag(decode_varints(raw, 3 * n, "keyframe motion")).reshape(3, n).T.copy()
    vel = decode_velocity(p[need + motion_len :], n) if has_vel else None
    return QKeyframe(header, Grid(origin, step), ids, q, vel, motion, span)


def _decode_delta(header: FrameHeader, p: memoryview, has_vel: bool) -> QDelta:
    if len(p) < _DELTA_FIXED.size:
        raise malformed("delta payload is shorter than its fixed part")
    key_seq, n, moved, id_coding, value_coding, sx, sy, sz, id_len, val_len = (
        _DELTA_FIXED.unpack_from(p, 0)
    )
    shift = np.array([sx, sy, sz], np.int64)
    if not header.keyframe and shift.any():
        raise malformed("a delta that is not a rebase cannot change the grid")
    if np.any(np.abs(shift) > _MAX_SHIFT):
        raise malformed(f"grid shift {shift.tolist()} is out of range")
    if value_coding not in (VALUES_VARINT_COLUMNS, VALUES_PREDICTED, VALUES_FITTED):
        raise malformed(f"unknown value coding {value_coding}")
    if moved > n:
        raise malformed(f"{moved} moved nodes out of {n}")
    if 3 * moved > val_len:
        raise malformed(f"{val_len} bytes of moves cannot hold {moved} nodes")
    start = _DELTA_FIXED.size
    factor = None
    if value_coding == VALUES_FITTED:
        if len(p) < start + _FACTOR.size:
            raise malformed("delta payload is shorter than its prediction factor")
        factor = np.array(_FACTOR.unpack_from(p, start), np.float64)
        if not np.all(np.isfinite(factor)) or np.any(np.abs(factor) > FACTOR_LIMIT):
            raise malformed(f"prediction factor {factor.tolist()} is not within ±1024")
        start += _FACTOR.size
    vel_len = _VSCALE.size + 6 * moved if has_vel else 0
    if len(p) != start + id_len + val_len + vel_len:
        raise malformed(f"delta payload of {len(p)} bytes does not match its section lengths")
    idx = _decode_moved(id_coding, p[start : start + id_len], moved, n)
    values = decode_varints(p[start + id_len : start + id_len + val_len], 3 * moved, "moves")
    dq = unzigzag(values).reshape(3, moved).T.copy()
    vel = decode_velocity(p[start + id_len + val_len :], moved) if has_vel else None
    return QDelta(header, key_seq, n, idx, dq, shift, vel, value_coding, factor)


def roundtrip_velocity(vel: F32) -> F32:
    """The velocities a client decodes from what the encoder sends."""
    return decode_velocity(memoryview(encode_velocity(vel)), vel.shape[0])
