"""The kind 0x03 stream decoder: the state a client keeps (the keyframe held, the positions).

A client applies every frame it is sent in order; a delta or rebase that names a keyframe it
does not hold raises :class:`KeyframeMissingError` (the client asks for a keyframe). The bytes
are :mod:`.quantized`'s. Sans-I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _kernels
from .errors import ErrorCode, ProtocolError, malformed
from .quantized import (
    F32,
    F64,
    I64,
    Q_LIMIT,
    U32,
    VALUES_FITTED,
    VALUES_PREDICTED,
    Grid,
    QDelta,
    QKeyframe,
    decode_q,
    horizon,
)

_NO_ROWS = np.empty((0, 3), np.int64)  # "no motion" / "not a rebase" for the delta kernel
_NO_SHIFT = np.zeros(3, np.int64)
_NO_FACTOR = np.empty(0, np.float64)  # "the integer horizon rule" for the delta kernel


class KeyframeMissingError(ProtocolError):
    """A delta or rebase names a keyframe the decoder does not hold: ask for a keyframe."""

    def __init__(self, needed: int, held: int | None) -> None:
        super().__init__(
            ErrorCode.MALFORMED_FRAME,
            f"frame applies to keyframe {needed}, but the keyframe held is {held}",
        )
        self.needed = needed
        self.held = held


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
        fitted = d.value_coding == VALUES_FITTED and d.factor is not None
        predicted = self.motion is not None and (fitted or (
            d.value_coding == VALUES_PREDICTED and self.span > 0 and steps > 0))
        motion = self.motion if predicted and self.motion is not None else _NO_ROWS
        shift = d.shift if d.rebase else _NO_SHIFT
        q = np.empty((n, 3), np.int64)
        new_motion = np.empty((n, 3), np.int64) if d.rebase else _NO_ROWS
        factor = d.factor if fitted and d.factor is not None else _NO_FACTOR
        peak = _kernels.apply_q_delta(self.base, motion, horizon(steps, self.span),
                                      max(self.span, 1), factor, shift, d.idx, d.dq, q,
                                      new_motion)
        if peak >= Q_LIMIT:
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

