"""The kind 0x03 stream encoder: snapshots in, frames out, and when to rebase (its policy).

One :class:`QStreamEncoder` is one keyframe *lineage*: it holds the keyframe every client of
the lineage holds, and for each snapshot it encodes one frame that applies to that keyframe (a
delta) or replaces it (a rebase, which a client that follows the lineage applies at the cost of
a delta). A client that holds no keyframe of the lineage is sent the *full* keyframe, encoded at
most once per keyframe and shared. The bytes are :mod:`.quantized`'s; this module decides only
what to encode and when. Sans-I/O: it knows nothing of sockets or clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import _kernels
from .quantized import (
    F32,
    F64,
    I64,
    Q_LIMIT,
    U32,
    VALUES_FITTED,
    VALUES_PREDICTED,
    VALUES_VARINT_COLUMNS,
    Grid,
    apply_shift,
    encode_delta,
    encode_keyframe,
    fit_factor,
    fresh_grid,
    horizon,
    ideal_steps,
    predict,
    predict_fitted,
    roundtrip_velocity,
    shift_for,
)


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
    prediction; ``fit``: also try that prediction times a factor per axis fitted to the frame
    (value coding 2) and keep the cheaper. ``max_age``: snapshots a keyframe may live at most;
    ``min_age``: at least (unless forced).
    """

    rebase_ratio: float = 0.5
    min_age: int = 1
    max_age: int = 300
    predict: bool = True
    fit: bool = True


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


class _Prediction(NamedTuple):
    """Where a frame's residuals are measured from, and how a client computes it."""

    pred: I64
    coding: int
    factor: F64 | None = None


_FACTOR_BYTES = 12  # what value coding 2 adds to a frame


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
        may_rebase: bool = True,
    ) -> QOutput:
        """Encode snapshot ``seq`` (ids ascending, one row of ``pos`` per id).

        ``force_keyframe``: make this snapshot the keyframe (a rebase). ``may_rebase=False``:
        keep the keyframe whatever the policy says (a frame between the ticks of a paced
        lineage, whose clients must still hold the keyframe at the next tick); a lineage that
        cannot go on (other ids, another epoch, a layout past ±2^30 on its grid) still restarts.
        """
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
        if peak >= Q_LIMIT:
            return self._new_lineage(seq, ids, pos, vel_in, epoch, settled)
        lin.age += 1
        prev = lin.prev_q if lin.prev_q is not None else lin.base
        guess, idx, cost, cost_key, cost_prev = self._predict(lin, q, prev, seq - lin.key_seq,
                                                              self.policy.fit)
        rebase = force_keyframe or (may_rebase and (
            lin.age >= self.policy.max_age or self._worth_rebasing(q, cost_key, cost_prev)
        ))
        if rebase:
            return self._rebase(seq, lin, pos, vel_in, settled, epoch, q, guess, (idx, cost))
        lin.prev_q = q
        pred = guess.pred
        frame = encode_delta(
            lin.key_seq, lin.ids.shape[0], idx, q[idx] - pred[idx], seq=seq, epoch=epoch,
            settled=settled, vel=None if vel_in is None else vel_in[idx],
            value_coding=guess.coding, factor=guess.factor,
        )
        return QOutput(seq, frame, lin.key_seq, lin.key_seq, False, int(idx.shape[0]),
                       self._full_of(lin))

    @staticmethod
    def _predict(lin: _Lineage, q: I64, prev: I64, steps: int, fit: bool
                 ) -> tuple[_Prediction, I64, int, int, int]:
        """The cheaper prediction of ``q`` from the keyframe: its motion carried ``horizon``
        snapshots on (value coding 1), or times a factor per axis fitted to this frame (value
        coding 2: where the layout sped up or slowed down since the keyframe, and over a
        paced lane's long interval, it leaves smaller residuals). Also the moved rows and
        their cost, as :func:`_kernels.moved_and_costs` gives them, the cost against the
        keyframe's own prediction (value coding 1), and the cost against ``prev``.

        The fit is tried where the prediction reaches past the next snapshot (a paced lane,
        or a keyframe kept for several): one snapshot ahead, the keyframe's whole moves carried
        on leave exact zeros wherever motion goes on, which a factor would blur, and on the
        60 Hz demo stream a client that takes every frame was sent 1–3 % more with it. The
        policy decides on the keyframe's own prediction (value coding 1): it says how stale
        the keyframe is (docs/benchmarks.md)."""
        pred = predict(lin.base, lin.motion, lin.span, steps)
        if pred is not lin.base and not _kernels.prediction_fits(q, pred, Q_LIMIT):
            pred = lin.base  # a prediction past ±2^30 (§4.4): the plain moves
        idx, cost_key, cost_prev = _kernels.moved_and_costs(q, pred, prev)
        guess, cost = _Prediction(pred, VALUES_PREDICTED if pred is not lin.base
                                  else VALUES_VARINT_COLUMNS), cost_key
        if fit and lin.motion is not None and q.shape[0] and horizon(steps, lin.span) > 1:
            factor = fit_factor(q, lin.base, lin.motion)
            fitted = predict_fitted(lin.base, lin.motion, factor)
            idx_f, cost_f, _ = _kernels.moved_and_costs(q, fitted, fitted)
            if cost_f + _FACTOR_BYTES < cost and _kernels.prediction_fits(q, fitted, Q_LIMIT):
                guess, idx, cost = _Prediction(fitted, VALUES_FITTED, factor), idx_f, cost_f
        return guess, idx, cost, cost_key, cost_prev

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
                epoch: int, q_key: I64, guess: _Prediction, moved_key: tuple[I64, int]
                ) -> QOutput:
        """Rebase at ``seq``. ``q_key``, ``guess`` (the prediction) and ``moved_key`` (the
        moved rows and their cost against the prediction) are what :meth:`encode` found on
        the keyframe's grid: kept when the rebase keeps that grid, the usual case."""
        predicted = guess.pred
        n = lin.ids.shape[0]
        if n:
            lo, hi = _kernels.bounds(pos)
            shift = shift_for(lin.grid.step, ideal_steps(lo, hi))
        else:
            shift = np.zeros(3, np.int64)
        fitted = self._fit_grid(lin, pos, predicted, shift, q_key)
        if fitted is None and predicted is not lin.base:
            # the prediction does not fit the rebased grid: the plain moves may
            guess, predicted = _Prediction(lin.base, VALUES_VARINT_COLUMNS), lin.base
            moved_key = (_kernels.moved_rows(q_key, lin.base), 0)
            fitted = self._fit_grid(lin, pos, predicted, shift, q_key)
        if fitted is None:
            # even the keyframe's own grid cannot hold the layout in ±2^30: start afresh
            return self._new_lineage(seq, lin.ids, pos, vel, epoch, settled)
        grid, shift, base, pred, q = fitted
        same_grid = q is q_key
        if pred is not base:
            # the keyframe's prediction helps only motion that goes on as it went; where the
            # layout turned (or over a long pace) the plain moves may be the cheaper coding
            idx, cost_pred = moved_key if same_grid else \
                _kernels.moved_and_costs(q, pred, pred)[:2]
            idx_plain, cost_plain, _ = _kernels.moved_and_costs(q, base, base)
            if cost_plain < cost_pred:
                pred, guess, idx = base, _Prediction(lin.base, VALUES_VARINT_COLUMNS), idx_plain
        else:
            idx = moved_key[0] if same_grid else _kernels.moved_rows(q, pred)
        sent_vel = None if vel is None else roundtrip_velocity(vel[idx])
        frame = encode_delta(
            lin.key_seq, n, idx, q[idx] - pred[idx], seq=seq, epoch=epoch, settled=settled,
            rebase=True, shift=shift, vel=None if vel is None else vel[idx],
            value_coding=guess.coding, factor=guess.factor,
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

    @staticmethod
    def _fit_grid(lin: _Lineage, pos: F32 | F64, predicted: I64, shift: I64, q_key: I64
                  ) -> tuple[Grid, I64, I64, I64, I64] | None:
        """The rebased grid and the keyframe, prediction and positions on it, every coordinate
        within ±2^30 and every move within int32 (what a client's int32 arrays hold).
        ``q_key``: the positions on the keyframe's grid (within ±2^30), taken as they are
        when the grid stays.

        A refining shift multiplies the coordinates: when the layout shrank far from the grid's
        origin that can overflow, so the refinement is dropped, and with it failing too, None.
        """
        for candidate in (shift, np.minimum(shift, 0)):
            if not candidate.any():  # the keyframe's grid: nothing to shift or quantise again
                grid, base, pred, q, peak = lin.grid, lin.base, predicted, q_key, 0
            else:
                grid = lin.grid.shifted(candidate)
                base = apply_shift(lin.base, candidate)
                pred = apply_shift(predicted, candidate) if predicted is not lin.base else base
                q, peak = grid.quantise_peak(pos)
            if peak < Q_LIMIT and _within(base) and _within(pred) and (
                    q.shape[0] == 0 or int(np.abs(q - pred).max()) < 2**31):
                return grid, candidate, base, pred, q
            if not candidate.any() or not (candidate > 0).any():
                break
        return None

    def _new_lineage(self, seq: int, ids: U32, pos: F32 | F64, vel: F32 | None, epoch: int,
                     settled: bool) -> QOutput:
        grid = fresh_grid(pos)
        q = grid.quantise(pos)
        key_vel = None if vel is None else roundtrip_velocity(vel)
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


def _within(q: I64) -> bool:
    """Every grid coordinate is inside ±2^30."""
    return q.shape[0] == 0 or int(np.abs(q).max()) < Q_LIMIT
