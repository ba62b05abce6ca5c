"""POSITIONS_Q, kind 0x03: the compact position stream (PROTOCOL.md §3.4, docs/protocol.md).

Positions are integers on a grid that the keyframe states. A *keyframe* holds every live node
(ids as runs, so a dense id range costs 8 bytes); a *delta* names the keyframe it applies to and
holds, for the nodes whose grid position differs from that keyframe, the difference in whole grid
steps. Because every delta is relative to its keyframe, a client holding the keyframe can apply
any delta that names it, in any order, after any skip, and lands exactly on the quantised true
positions: nothing accumulates, so nothing drifts.

A *rebase* is a keyframe sent as a delta from the previous keyframe (flags KEYFRAME | REBASE).
For a client that follows the stream it costs what a delta costs, so the encoder rebases often
while the layout moves and rarely once it settles. A rebased keyframe also knows the motion that
led to it, so later frames code each node's residual against the keyframe's linear prediction:
on a moving layout that halves the bits again, and the prediction still depends only on the
keyframe, so any delta still applies after any skip. A rebase may refine or coarsen the grid by
powers of two, so the step stays within a factor 2 of 1/65,535 of the extent while the layout
grows or shrinks. A client that holds no keyframe of
the lineage is sent the *full* keyframe, encoded at most once per keyframe and shared.

This module is sans-I/O: :class:`QStreamEncoder` turns snapshots into frames, :class:`QDecoder`
turns frames back into positions; neither knows about sockets.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from . import _kernels
from .compression import MAX_INFLATED, gunzip_bounded, maybe_gzip
from .errors import ErrorCode, ProtocolError, malformed
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

# Flag bits kind 0x03 defines beyond §2.1 (documented in docs/protocol.md).
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

ID_ALL, ID_BITMAP, ID_GAPS = 0, 1, 2
VALUES_VARINT_COLUMNS = 0
VALUES_PREDICTED = 1
PREDICTION_HORIZON = 16
"""Predictions extrapolate the keyframe's motion at most this many snapshots ahead."""
_MOTION_HEAD = struct.Struct("<II")  # span, byte length of the motion varints

_Q_LIMIT = 1 << 30  # grid coordinates stay within ±2^30 so a client's int32 never overflows
_MAX_SHIFT = 30
_NO_ROWS = np.empty((0, 3), np.int64)  # "no motion" / "not a rebase" for the delta kernel
_NO_SHIFT = np.zeros(3, np.int64)

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U32 = npt.NDArray[np.uint32]


class KeyframeMissingError(ProtocolError):
    """A delta or rebase names a keyframe the decoder does not hold: ask for a keyframe."""

    def __init__(self, needed: int, held: int | None) -> None:
        super().__init__(
            ErrorCode.MALFORMED_FRAME,
            f"frame applies to keyframe {needed}, but the keyframe held is {held}",
        )
        self.needed = needed
        self.held = held


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
    the prediction is ``base + floor(motion × min(steps, 16) / span)``, in integers, so every
    decoder computes the same value.
    """
    if motion is None or span <= 0 or steps <= 0:
        return base
    h = min(steps, PREDICTION_HORIZON)
    return base + np.floor_divide(motion * h, span)


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


def _encode_velocity(vel: F32) -> bytes:
    v = np.asarray(vel, dtype=np.float64)
    peak = np.abs(v).max(axis=0) if v.shape[0] else np.zeros(3)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    scale = (peak / 32767.0).astype(np.float32)
    safe = np.where(scale > 0, scale.astype(np.float64), 1.0)
    qv = np.clip(np.rint(np.nan_to_num(v) / safe), -32767, 32767).astype("<i2")
    return _VSCALE.pack(*scale.tolist()) + np.ascontiguousarray(qv.T).tobytes()


def _decode_velocity(data: memoryview, n: int) -> F32:
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
        parts.append(_encode_velocity(vel))
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
) -> bytes:
    """A delta naming ``key_seq`` (or, with ``rebase``, a keyframe based on it). With
    ``VALUES_PREDICTED`` the moves are residuals against the keyframe's prediction."""
    sh = np.zeros(3, np.int64) if shift is None else shift
    if not rebase and sh.any():
        raise ValueError("only a rebase may change the grid")
    id_coding, id_bytes = _encode_moved(idx, node_count)
    moves = np.ascontiguousarray(dq, dtype=np.int64).reshape(-1, 3)
    if moves.size and int(np.abs(moves).max()) >= 2**31:
        raise ValueError("a move does not fit in int32")
    values = _kernels.varint_columns(moves).tobytes()
    parts = [
        _DELTA_FIXED.pack(key_seq, node_count, idx.shape[0], id_coding, value_coding,
                          *sh.tolist(), len(id_bytes), len(values)),
        id_bytes,
        values,
    ]
    flags = (Flags.KEYFRAME | FLAG_REBASE if rebase else 0) | (Flags.SETTLED if settled else 0)
    if vel is not None:
        parts.append(_encode_velocity(vel))
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
        if max(abs(lo).max(), abs(hi).max()) >= _Q_LIMIT:
            raise malformed("keyframe grid coordinates exceed ±2^30")
    if motion_len:
        raw = p[need + _MOTION_HEAD.size : need + motion_len]
        motion = unzigzag(decode_varints(raw, 3 * n, "keyframe motion")).reshape(3, n).T.copy()
    vel = _decode_velocity(p[need + motion_len :], n) if has_vel else None
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
    if value_coding not in (VALUES_VARINT_COLUMNS, VALUES_PREDICTED):
        raise malformed(f"unknown value coding {value_coding}")
    if moved > n:
        raise malformed(f"{moved} moved nodes out of {n}")
    if 3 * moved > val_len:
        raise malformed(f"{val_len} bytes of moves cannot hold {moved} nodes")
    start = _DELTA_FIXED.size
    vel_len = _VSCALE.size + 6 * moved if has_vel else 0
    if len(p) != start + id_len + val_len + vel_len:
        raise malformed(f"delta payload of {len(p)} bytes does not match its section lengths")
    idx = _decode_moved(id_coding, p[start : start + id_len], moved, n)
    values = decode_varints(p[start + id_len : start + id_len + val_len], 3 * moved, "moves")
    dq = unzigzag(values).reshape(3, moved).T.copy()
    vel = _decode_velocity(p[start + id_len + val_len :], moved) if has_vel else None
    return QDelta(header, key_seq, n, idx, dq, shift, vel, value_coding)


# ---------------------------------------------------------------------------------------------
# the stream encoder (server side)


@dataclass(frozen=True, slots=True)
class QPolicy:
    """When the encoder makes a new keyframe.

    ``rebase_ratio``: rebase when the delta against the keyframe (its residuals against the
    keyframe's prediction) would cost more than this many times the raw motion since the
    previous snapshot. A rebase costs a client that follows the stream what a delta costs, and
    gives the next frame a fresh prediction, so the default (0.5) rebases on nearly every frame
    while the layout moves: 1.05 bytes a node per snapshot on the standard trace, against 1.95
    at 1.0 and 5.3 with one keyframe (docs/benchmarks.md). A client that skipped a frame gets
    the full keyframe instead (~8.5 bytes a node with its motion). While nothing moves the
    keyframe is kept. ``predict``: code moves as residuals against the keyframe's linear
    prediction. ``max_age``: snapshots a keyframe may live at most; ``min_age``: at least
    (unless forced).
    """

    rebase_ratio: float = 0.5
    min_age: int = 1
    max_age: int = 300
    predict: bool = True


@dataclass(slots=True, eq=False)
class QOutput:
    """The frames for one snapshot of one stream.

    ``frame`` applies to a client holding keyframe ``base_seq`` (None: ``frame`` is a full
    keyframe, anyone can apply it); afterwards that client holds keyframe ``key_seq``. A client
    holding anything else is sent ``full_keyframe()``, the full keyframe ``key_seq`` (encoded
    once, on first use), followed by ``frame`` unless ``frame`` is itself that keyframe.
    """

    seq: int
    frame: bytes
    base_seq: int | None
    key_seq: int
    keyframe: bool
    moved: int
    full_keyframe: Callable[[], bytes]


@dataclass(slots=True, eq=False)
class _Lineage:
    key_seq: int
    grid: Grid
    ids: U32
    base: I64  # grid coordinates of the keyframe, what every client of the lineage holds
    vel: F32 | None
    settled: bool
    epoch: int
    age: int = 0
    prev_q: I64 | None = None
    full: bytes | None = None
    motion: I64 | None = None  # how the keyframe's nodes moved over the `span` before it
    span: int = 0


@dataclass(slots=True, eq=False)
class QStreamEncoder:
    """Turns snapshots into kind 0x03 frames for every client of one stream (encode once)."""

    velocity: bool = False
    policy: QPolicy = field(default_factory=QPolicy)
    _lin: _Lineage | None = None

    @property
    def key_seq(self) -> int | None:
        """The seq of the current keyframe (None before the first snapshot)."""
        return None if self._lin is None else self._lin.key_seq

    def reset(self) -> None:
        """Forget the lineage: the next snapshot is a full keyframe on a fresh grid."""
        self._lin = None

    def encode(
        self,
        seq: int,
        ids: U32,
        pos: F32,
        *,
        epoch: int,
        vel: F32 | None = None,
        settled: bool = False,
        force_keyframe: bool = False,
    ) -> QOutput:
        """Encode snapshot ``seq`` (ids ascending, one row of ``pos`` per id)."""
        ids = np.ascontiguousarray(ids, dtype=np.uint32)
        pos = np.ascontiguousarray(pos).reshape(-1, 3)
        if pos.dtype not in (np.float32, np.float64):
            pos = pos.astype(np.float64)
        vel_in = None if not self.velocity else np.asarray(
            vel if vel is not None else np.zeros(pos.shape), np.float32
        ).reshape(-1, 3)
        lin = self._lin
        if lin is None or lin.epoch != epoch or not np.array_equal(lin.ids, ids):
            return self._new_lineage(seq, ids, pos, vel_in, epoch, settled)
        q, peak = lin.grid.quantise_peak(pos)
        if peak >= _Q_LIMIT:
            return self._new_lineage(seq, ids, pos, vel_in, epoch, settled)
        lin.age += 1
        pred = predict(lin.base, lin.motion, lin.span, seq - lin.key_seq)
        prev = lin.prev_q if lin.prev_q is not None else lin.base
        idx, cost_key, cost_prev = _kernels.moved_and_costs(q, pred, prev)
        rebase = (
            force_keyframe
            or lin.age >= self.policy.max_age
            or self._worth_rebasing(q, cost_key, cost_prev)
        )
        if rebase:
            return self._rebase(seq, lin, pos, vel_in, settled, epoch)
        lin.prev_q = q
        frame = encode_delta(
            lin.key_seq, lin.ids.shape[0], idx, q[idx] - pred[idx], seq=seq, epoch=epoch,
            settled=settled, vel=None if vel_in is None else vel_in[idx],
            value_coding=VALUES_PREDICTED if pred is not lin.base else VALUES_VARINT_COLUMNS,
        )
        return QOutput(seq, frame, lin.key_seq, lin.key_seq, False, int(idx.shape[0]),
                       self._full_of(lin))

    def _worth_rebasing(self, q: I64, cost_key: int, cost_prev: int) -> bool:
        lin = self._lin
        assert lin is not None
        if lin.age < self.policy.min_age or q.shape[0] == 0:
            return False
        qlo, qhi = _kernels.bounds(q)
        ideal = ideal_steps(lin.grid.origin + qlo * lin.grid.step,
                            lin.grid.origin + qhi * lin.grid.step)
        if np.any(lin.grid.step * 4 <= ideal):
            return True  # the layout grew: a coarser grid makes every later delta smaller
        return cost_key > self.policy.rebase_ratio * cost_prev + 16

    def _rebase(self, seq: int, lin: _Lineage, pos: F32 | F64, vel: F32 | None, settled: bool,
                epoch: int) -> QOutput:
        n = lin.ids.shape[0]
        if n:
            lo, hi = _kernels.bounds(pos)
            shift = shift_for(lin.grid.step, ideal_steps(lo, hi))
        else:
            shift = np.zeros(3, np.int64)
        grid = lin.grid.shifted(shift)
        predicted = predict(lin.base, lin.motion, lin.span, seq - lin.key_seq)
        base = apply_shift(lin.base, shift)
        pred = apply_shift(predicted, shift) if predicted is not lin.base else base
        q = grid.quantise(pos)
        idx = _kernels.moved_rows(q, pred)
        sent_vel = None if vel is None else _roundtrip_velocity(vel[idx])
        frame = encode_delta(
            lin.key_seq, n, idx, q[idx] - pred[idx], seq=seq, epoch=epoch, settled=settled,
            rebase=True, shift=shift, vel=None if vel is None else vel[idx],
            value_coding=VALUES_PREDICTED if predicted is not lin.base else VALUES_VARINT_COLUMNS,
        )
        old_key = lin.key_seq
        key_vel = None
        if lin.vel is not None and sent_vel is not None:
            key_vel = lin.vel.copy()
            key_vel[idx] = sent_vel
        motion = q - base if self.policy.predict else None
        self._lin = _Lineage(seq, grid, lin.ids, q, key_vel, settled, epoch, 0, q, None,
                             motion, seq - old_key)
        return QOutput(seq, frame, old_key, seq, True, int(idx.shape[0]),
                       self._full_of(self._lin))

    def _new_lineage(self, seq: int, ids: U32, pos: F32 | F64, vel: F32 | None, epoch: int,
                     settled: bool) -> QOutput:
        grid = fresh_grid(pos)
        q = grid.quantise(pos)
        key_vel = None if vel is None else _roundtrip_velocity(vel)
        lin = _Lineage(seq, grid, ids, q, key_vel, settled, epoch, 0, q, None)
        self._lin = lin
        frame = self._full_of(lin)()
        return QOutput(seq, frame, None, seq, True, ids.shape[0], self._full_of(lin))

    @staticmethod
    def _full_of(lin: _Lineage) -> Callable[[], bytes]:
        def full() -> bytes:
            if lin.full is None:
                lin.full = encode_keyframe(lin.grid, lin.ids, lin.base, seq=lin.key_seq,
                                           epoch=lin.epoch, settled=lin.settled, vel=lin.vel,
                                           motion=lin.motion, span=lin.span)
            return lin.full

        return full


def _roundtrip_velocity(vel: F32) -> F32:
    """The velocities a client decodes from what the encoder sends."""
    return _decode_velocity(memoryview(_encode_velocity(vel)), vel.shape[0])


# ---------------------------------------------------------------------------------------------
# the stream decoder (client side)


@dataclass(slots=True, eq=False)
class QDecoder:
    """Client state of a kind 0x03 stream: the keyframe held and the positions shown."""

    key_seq: int | None = None
    seq: int | None = None
    settled: bool = False
    grid: Grid | None = None
    ids: U32 = field(default_factory=lambda: np.empty(0, np.uint32))
    base: I64 = field(default_factory=lambda: np.empty((0, 3), np.int64))
    q: I64 = field(default_factory=lambda: np.empty((0, 3), np.int64))
    key_vel: F32 | None = None
    vel: F32 | None = None
    motion: I64 | None = None
    span: int = 0

    def apply(self, data: bytes | memoryview) -> QKeyframe | QDelta:
        """Apply one frame; raise :class:`KeyframeMissingError` if it needs a keyframe not held."""
        frame = decode_q(data)
        if isinstance(frame, QKeyframe):
            self.grid, self.ids = frame.grid, frame.ids
            self.base, self.q = frame.q, frame.q.copy()
            self.key_vel = frame.vel
            self.vel = None if frame.vel is None else frame.vel.copy()
            self.key_seq = frame.header.seq
            self.motion, self.span = frame.motion, frame.span
        else:
            self._apply_delta(frame)
        self.seq = frame.header.seq
        self.settled = frame.header.settled
        return frame

    def _apply_delta(self, d: QDelta) -> None:
        if self.key_seq != d.key_seq or self.grid is None:
            raise KeyframeMissingError(d.key_seq, self.key_seq)
        if d.node_count != self.ids.shape[0]:
            raise malformed(f"delta for {d.node_count} nodes, keyframe holds {self.ids.shape[0]}")
        # One compiled pass: prediction, grid shift, the moves, the bounds and (for a rebase)
        # the new motion; the same arithmetic as predict() and apply_shift().
        n = self.ids.shape[0]
        steps = d.header.seq - d.key_seq
        predicted = (d.value_coding == VALUES_PREDICTED and self.motion is not None
                     and self.span > 0 and steps > 0)
        motion = self.motion if predicted and self.motion is not None else _NO_ROWS
        shift = d.shift if d.rebase else _NO_SHIFT
        q = np.empty((n, 3), np.int64)
        new_motion = np.empty((n, 3), np.int64) if d.rebase else _NO_ROWS
        peak = _kernels.apply_q_delta(self.base, motion, min(steps, PREDICTION_HORIZON),
                                      max(self.span, 1), shift, d.idx, d.dq, q, new_motion)
        if peak >= _Q_LIMIT:
            raise malformed("grid coordinates exceed ±2^30")
        vel = None
        if d.vel is not None:
            key_vel = self.key_vel if self.key_vel is not None else np.zeros(q.shape, np.float32)
            vel = key_vel.copy()
            vel[d.idx] = d.vel
        self.q, self.vel = q, vel
        if d.rebase:
            self.motion, self.span = new_motion, d.header.seq - d.key_seq
            self.grid = self.grid.shifted(d.shift)
            self.base = q  # never written in place: the next frame builds a new q
            self.key_vel = None if vel is None else vel.copy()
            self.key_seq = d.header.seq

    def positions(self) -> F64:
        """Decoded coordinates (n, 3), float64, in keyframe id order."""
        if self.grid is None:
            return np.empty((0, 3))
        return self.grid.position(self.q)
