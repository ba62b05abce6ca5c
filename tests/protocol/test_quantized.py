"""The compact stream, kind 0x03: exact after any skips, bounded error, no drift (§4)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphwire.protocol.header import Flags
from graphwire.protocol.q_decoder import KeyframeMissingError, QDecoder
from graphwire.protocol.q_encoder import QOutput, QPolicy, QStreamEncoder
from graphwire.protocol.quantized import (
    FLAG_REBASE,
    GRID_LEVELS,
    QDelta,
    QKeyframe,
    decode_q,
    id_runs,
    ids_from_runs,
)


def walk(n: int, frames: int, seed: int, scale: float = 300.0, step: float = 2.0) -> np.ndarray:
    """A settling random walk: (frames, n, 3) float32 positions."""
    rng = np.random.default_rng(seed)
    pos = rng.normal(0, scale, (n, 3))
    out = np.empty((frames, n, 3), np.float32)
    for f in range(frames):
        pos = pos + rng.normal(0, step / (1 + f / 20), (n, 3)) * (rng.random((n, 1)) < 0.7)
        out[f] = pos
    return out


def encode_all(traj: np.ndarray, enc: QStreamEncoder, ids: np.ndarray | None = None,
               vel: bool = False) -> list[QOutput]:
    n = traj.shape[1]
    ids = np.arange(n, dtype=np.uint32) if ids is None else ids
    rng = np.random.default_rng(0)
    return [
        enc.encode(s + 1, ids, traj[s], epoch=7,
                   vel=rng.normal(0, 5, (n, 3)).astype(np.float32) if vel else None)
        for s in range(traj.shape[0])
    ]


def assert_exact(dec: QDecoder, enc_grid_step: np.ndarray, true_pos: np.ndarray) -> None:
    """Decoded positions are the grid points nearest the true positions."""
    assert dec.grid is not None
    np.testing.assert_array_equal(dec.q, dec.grid.quantise(true_pos))
    err = np.abs(dec.positions() - true_pos.astype(np.float64))
    assert np.all(err <= dec.grid.step / 2 * (1 + 1e-9) + 1e-12)
    np.testing.assert_array_equal(dec.grid.step, enc_grid_step)


def test_first_frame_is_a_full_keyframe_on_a_16_bit_grid() -> None:
    traj = walk(500, 1, seed=1)
    out = QStreamEncoder().encode(1, np.arange(500, dtype=np.uint32), traj[0], epoch=1)
    assert out.base_seq is None and out.keyframe
    frame = decode_q(out.frame)
    assert isinstance(frame, QKeyframe)
    extent = traj[0].max(axis=0).astype(np.float64) - traj[0].min(axis=0)
    assert np.all(frame.grid.step <= extent / GRID_LEVELS)
    assert frame.q.min() == 0 and frame.q.max() == GRID_LEVELS
    assert frame.ids.tolist() == list(range(500))


def test_any_subset_and_order_of_deltas_lands_exactly() -> None:
    traj = walk(300, 40, seed=2)
    enc = QStreamEncoder(policy=QPolicy(min_age=10**6, max_age=10**6))  # one keyframe
    outs = encode_all(traj, enc)
    assert all(o.base_seq == 1 and not o.keyframe for o in outs[1:])
    rng = np.random.default_rng(3)
    for _trial in range(20):
        dec = QDecoder()
        dec.apply(outs[0].frame)
        picks = rng.permutation(np.arange(1, len(outs)))[: rng.integers(1, len(outs))]
        for s in picks:
            dec.apply(outs[s].frame)
            assert dec.seq == s + 1
            assert_exact(dec, dec.grid.step, traj[s])


def test_delta_holds_only_moved_nodes() -> None:
    traj = walk(200, 2, seed=4)
    traj[1] = traj[0]
    traj[1, 17] += 50.0
    traj[1, 150] -= 3.0
    enc = QStreamEncoder(policy=QPolicy(min_age=100))
    outs = encode_all(traj, enc)
    frame = decode_q(outs[1].frame)
    assert isinstance(frame, QDelta)
    assert frame.idx.tolist() == [17, 150]
    assert outs[1].moved == 2


@pytest.mark.parametrize("policy", [QPolicy(), QPolicy(rebase_ratio=1.0, min_age=0)])
def test_ten_thousand_frames_accumulate_no_error(policy: QPolicy) -> None:
    n, frames = 64, 10_000
    rng = np.random.default_rng(5)
    pos = rng.normal(0, 100, (n, 3))
    enc = QStreamEncoder(policy=policy)
    dec = QDecoder()
    ids = np.arange(n, dtype=np.uint32)
    rebases = 0
    for s in range(1, frames + 1):
        pos = pos + rng.normal(0, 0.05, (n, 3))  # a slow drift, the worst case for rounding
        true = pos.astype(np.float32)
        out = enc.encode(s, ids, true, epoch=1)
        rebases += out.keyframe
        dec.apply(out.frame)
        if s % 500 == 0 or s == frames:
            assert_exact(dec, dec.grid.step, true)
    assert dec.seq == frames
    assert rebases > 10  # the chain really went through many rebases


def test_slow_client_sent_only_the_newest_frame_stays_exact() -> None:
    traj = walk(400, 120, seed=6)
    enc = QStreamEncoder()
    outs = encode_all(traj, enc)
    rng = np.random.default_rng(7)
    dec = QDecoder()
    fulls = 0
    for s, out in enumerate(outs):
        if s and rng.random() < 0.6:
            continue  # the client was too slow for this frame
        if out.base_seq is None or dec.key_seq == out.base_seq:
            dec.apply(out.frame)
        else:
            dec.apply(out.full_keyframe())
            fulls += 1
            if not out.keyframe:
                dec.apply(out.frame)
        assert dec.key_seq == out.key_seq
        assert_exact(dec, dec.grid.step, traj[s])
    assert fulls >= 1


def test_full_keyframe_of_a_rebased_lineage_matches_the_rebased_state() -> None:
    traj = walk(300, 30, seed=8, step=20.0)
    enc = QStreamEncoder(policy=QPolicy(rebase_ratio=1.0, min_age=0))
    outs = encode_all(traj, enc)
    follower = QDecoder()
    for out in outs:
        follower.apply(out.frame)
    late = QDecoder()
    late.apply(outs[-1].full_keyframe())
    assert late.key_seq == follower.key_seq
    np.testing.assert_array_equal(late.q, follower.base)
    np.testing.assert_array_equal(late.grid.step, follower.grid.step)
    np.testing.assert_array_equal(late.grid.origin, follower.grid.origin)


def test_grid_follows_a_growing_and_shrinking_layout() -> None:
    rng = np.random.default_rng(9)
    base = rng.normal(0, 1, (200, 3))
    scales = np.concatenate([np.geomspace(10, 1000, 30), np.geomspace(1000, 5, 30)])
    traj = np.stack([base * s for s in scales]).astype(np.float32)
    enc = QStreamEncoder()
    dec = QDecoder()
    for s, out in enumerate(encode_all(traj, enc)):
        dec.apply(out.frame)
        assert_exact(dec, dec.grid.step, traj[s])
        if out.keyframe:
            extent = traj[s].max(axis=0).astype(np.float64) - traj[s].min(axis=0)
            assert np.all(dec.grid.step <= extent / GRID_LEVELS * (1 + 1e-12))
            assert np.all(dec.grid.step > extent / GRID_LEVELS / 4)


def test_delta_naming_another_keyframe_asks_for_one() -> None:
    traj = walk(50, 3, seed=10)
    outs = encode_all(traj, QStreamEncoder(policy=QPolicy(min_age=100)))
    dec = QDecoder()
    with pytest.raises(KeyframeMissingError) as info:
        dec.apply(outs[1].frame)
    assert info.value.needed == 1 and info.value.held is None


def test_sparse_ids_travel_as_runs_and_topology_change_starts_a_lineage() -> None:
    ids = np.array([0, 1, 2, 3, 10, 11, 12, 500], np.uint32)
    assert id_runs(ids).tolist() == [[0, 4], [10, 3], [500, 1]]
    np.testing.assert_array_equal(ids_from_runs(id_runs(ids)), ids)
    traj = walk(8, 3, seed=11)
    enc = QStreamEncoder()
    outs = encode_all(traj[:2], enc, ids=ids)
    dec = QDecoder()
    for o in outs:
        dec.apply(o.frame)
    assert dec.ids.tolist() == ids.tolist()
    grown = np.append(ids, 501).astype(np.uint32)
    out = enc.encode(9, grown, np.vstack([traj[2], [[1, 2, 3]]]).astype(np.float32), epoch=7)
    assert out.base_seq is None and out.keyframe  # new ids never appear in a delta
    dec.apply(out.frame)
    assert dec.ids.tolist() == grown.tolist()


def test_velocities_only_when_asked() -> None:
    traj = walk(100, 10, seed=12)
    plain = encode_all(traj, QStreamEncoder())
    assert all(not decode_q(o.frame).header.flags & 0x08 for o in plain)
    with_vel = encode_all(traj, QStreamEncoder(velocity=True), vel=True)
    dec = QDecoder()
    for o in with_vel:
        frame = dec.apply(o.frame)
        assert frame.header.flags & 0x08
        assert dec.vel is not None and dec.vel.shape == (100, 3)
        assert np.all(np.isfinite(dec.vel))


def test_settled_flag_and_rebase_flag_bits() -> None:
    traj = walk(20, 2, seed=13)
    enc = QStreamEncoder()
    ids = np.arange(20, dtype=np.uint32)
    enc.encode(1, ids, traj[0], epoch=1)
    out = enc.encode(2, ids, traj[0], epoch=1, settled=True, force_keyframe=True)
    frame = decode_q(out.frame)
    assert frame.header.flags & Flags.SETTLED and frame.header.flags & FLAG_REBASE
    assert isinstance(frame, QDelta) and frame.rebase and frame.idx.size == 0
    assert len(out.frame) < 50  # a settled keyframe for a client that follows costs a header


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 60),
    frames=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    ratio=st.sampled_from([1.0, 1.6, 100.0]),
)
def test_property_follower_is_exact(n: int, frames: int, seed: int, ratio: float) -> None:
    rng = np.random.default_rng(seed)
    traj = (rng.normal(0, rng.choice([1e-3, 1.0, 500.0]), (1, n, 3))
            + np.cumsum(rng.normal(0, 1, (frames, n, 3)), axis=0)).astype(np.float32)
    enc = QStreamEncoder(policy=QPolicy(rebase_ratio=ratio, min_age=0))
    dec = QDecoder()
    for s, out in enumerate(encode_all(traj, enc)):
        dec.apply(out.frame)
        if n:
            assert_exact(dec, dec.grid.step, traj[s])


def test_prediction_is_integer_floor_extrapolation() -> None:
    from graphwire.protocol.quantized import predict

    base = np.array([[10, 10, 10]], np.int64)
    motion = np.array([[3, -3, 0]], np.int64)
    assert predict(base, motion, 2, 1).tolist() == [[11, 8, 10]]  # floor(3/2)=1, floor(-3/2)=-2
    assert predict(base, motion, 2, 4).tolist() == [[16, 4, 10]]
    assert predict(base, motion, 1, 100).tolist() == [[58, -38, 10]]  # at most 16 snapshots
    assert predict(base, None, 0, 5) is base and predict(base, motion, 0, 5) is base


def test_moving_layout_sends_residuals_and_late_joiners_get_the_motion() -> None:
    from graphwire.protocol.quantized import FLAG_MOTION, VALUES_PREDICTED

    n = 300
    rng = np.random.default_rng(21)
    start = rng.normal(0, 200, (n, 3))
    velocity = rng.normal(0, 3, (n, 3))
    traj = np.stack([start + velocity * s for s in range(12)]).astype(np.float32)
    outs = encode_all(traj, QStreamEncoder())
    frames = [decode_q(o.frame) for o in outs[1:]]
    assert all(isinstance(f, QDelta) and f.rebase for f in frames)  # moving: rebase each frame
    predicted = [f for f in frames[1:] if isinstance(f, QDelta)]
    assert all(f.value_coding == VALUES_PREDICTED for f in predicted)
    # uniform motion is predicted to within the rounding of the grid
    assert all(np.abs(f.dq).max() <= 2 for f in predicted if not f.shift.any())
    plain = encode_all(traj, QStreamEncoder(policy=QPolicy(predict=False)))
    assert sum(len(o.frame) for o in outs[2:]) < 0.5 * sum(len(o.frame) for o in plain[2:])
    full = outs[-1].full_keyframe()
    assert decode_q(full).header.flags & FLAG_MOTION
    late = QDecoder()
    late.apply(full)
    follower = QDecoder()
    for o in outs:
        follower.apply(o.frame)
    np.testing.assert_array_equal(late.q, follower.q)
    np.testing.assert_array_equal(late.motion, follower.motion)
    assert late.span == follower.span == 1


def test_fitted_prediction_is_floor_of_motion_times_the_frames_factor() -> None:
    from graphwire.protocol.quantized import fit_factor, predict_fitted

    base = np.array([[10, 10, 10], [0, 0, 0]], np.int64)
    motion = np.array([[3, -3, 0], [8, 8, 8]], np.int64)
    factor = np.array([0.5, 0.5, 2.0])
    assert predict_fitted(base, motion, factor).tolist() == [[11, 8, 10], [4, 4, 16]]
    assert predict_fitted(base, None, factor) is base
    motion = np.array([[4, -4, 0], [8, 8, 8]], np.int64)
    q = base + np.array([[3, -3, 0], [6, 6, 0]], np.int64)  # x and y: 3/4 of the motion
    f = fit_factor(q, base, motion)
    assert f[0] == pytest.approx(0.75) and f[1] == pytest.approx(0.75) and f[2] == 0.0
    assert f.dtype == np.float64 and np.all(f.astype(np.float32) == f)  # what the frame holds


def test_a_layout_that_slows_down_is_predicted_with_a_fitted_factor() -> None:
    # Every node keeps its direction and loses 5 % of its speed each snapshot (a cooling
    # layout), sent to a lane that ticks every 4 snapshots. The last interval's motion carried
    # on overshoots by a fifth (0.95^4 = 0.81); the frame's own factor leaves only the
    # rounding, and a follower still decodes every frame exactly.
    from graphwire.protocol.quantized import VALUES_FITTED

    n, pace = 400, 4
    rng = np.random.default_rng(5)
    start = rng.uniform(-500, 500, (n, 3))
    velocity = rng.normal(0, 20, (n, 3))
    traj = np.stack([start + velocity * (1 - 0.95 ** s) / 0.05
                     for s in range(0, 12 * pace, pace)]).astype(np.float32)
    # a fixed extent, so that the grid never changes and residuals are in one unit
    traj[:, :2] = [[-9000, -9000, -9000], [9000, 9000, 9000]]
    dec, enc = QDecoder(), QStreamEncoder()
    fitted = []
    for k in range(traj.shape[0]):
        frame_bytes = enc.encode(1 + k * pace, np.arange(n, dtype=np.uint32), traj[k],
                                 epoch=7).frame
        dec.apply(frame_bytes)
        assert dec.grid is not None
        assert_exact(dec, dec.grid.step, traj[k])
        frame = decode_q(frame_bytes)
        if isinstance(frame, QDelta) and frame.value_coding == VALUES_FITTED:
            fitted.append(frame)
    assert len(fitted) >= 9  # every frame after the first two
    for frame in fitted:
        assert frame.factor is not None
        np.testing.assert_allclose(frame.factor, 0.95 ** pace, atol=0.01)
        assert np.abs(frame.dq).max() <= 3  # the rounding of three grid points


def test_a_malformed_prediction_factor_is_refused() -> None:
    from graphwire.protocol.errors import ProtocolError
    from graphwire.protocol.quantized import VALUES_FITTED, encode_delta

    idx = np.array([0], np.int64)
    dq = np.array([[1, 2, 3]], np.int64)
    good = encode_delta(5, 4, idx, dq, seq=6, epoch=1, value_coding=VALUES_FITTED,
                        factor=np.array([0.5, 1.0, 2.0]))
    frame = decode_q(good)
    assert isinstance(frame, QDelta) and frame.factor is not None
    assert frame.factor.tolist() == [0.5, 1.0, 2.0] and frame.dq.tolist() == [[1, 2, 3]]
    for bad in (float("nan"), float("inf"), 1025.0):
        raw = encode_delta(5, 4, idx, dq, seq=6, epoch=1, value_coding=VALUES_FITTED,
                           factor=np.array([0.5, bad, 2.0]))
        with pytest.raises(ProtocolError, match="prediction factor"):
            decode_q(raw)
    with pytest.raises(ValueError, match="factor"):
        encode_delta(5, 4, idx, dq, seq=6, epoch=1, value_coding=VALUES_FITTED)
    with pytest.raises(ValueError, match="factor"):
        encode_delta(5, 4, idx, dq, seq=6, epoch=1, factor=np.ones(3))


def test_prediction_can_be_switched_off() -> None:
    traj = walk(100, 8, seed=22)
    outs = encode_all(traj, QStreamEncoder(policy=QPolicy(predict=False)))
    for o in outs[1:]:
        frame = decode_q(o.frame)
        assert isinstance(frame, QDelta) and frame.value_coding == 0
    assert not decode_q(outs[-1].full_keyframe()).header.flags & 0x20


def test_a_rebase_that_refines_the_grid_keeps_coordinates_inside_int32() -> None:
    # A layout that spans two million units, then shrinks to a speck far from the grid's
    # origin (its minimum corner): refining the grid to the speck's extent would put its
    # coordinates past 2^30 steps from the origin. The rebase must notice, and every frame must
    # still decode (a client keeps grid coordinates in int32) to within half a step.
    ids = np.arange(64, dtype=np.uint32)
    rng = np.random.default_rng(3)
    wide = rng.uniform(-1e6, 1e6, (64, 3))
    speck = rng.uniform(0, 1e-2, (64, 3))
    enc, dec = QStreamEncoder(), QDecoder()
    dec.apply(enc.encode(1, ids, wide, epoch=1).frame)
    for seq, pos in enumerate((speck, speck + 1e-3, speck * 1.0000001), start=2):
        out = enc.encode(seq, ids, pos, epoch=1, force_keyframe=True)
        frame = out.frame if dec.key_seq == out.base_seq else out.full_keyframe()
        dec.apply(frame)
        assert int(np.abs(dec.q).max()) < 2**30
        assert dec.grid is not None
        err = np.abs(dec.positions() - pos)
        assert np.all(err <= dec.grid.step / 2 + 1e-9)


def test_a_prediction_that_would_leave_2_30_falls_back_to_plain_moves() -> None:
    # The keyframe's motion carried on would put nodes past ±2^30 (a client keeps int32): the
    # encoder codes plain moves instead, and the frame decodes exactly.
    from graphwire.protocol.quantized import VALUES_VARINT_COLUMNS

    n = 20
    rng = np.random.default_rng(9)
    traj = rng.uniform(-100, 100, (3, n, 3)).astype(np.float32)
    enc, dec = QStreamEncoder(policy=QPolicy(rebase_ratio=1e9)), QDecoder()
    ids = np.arange(n, dtype=np.uint32)
    dec.apply(enc.encode(1, ids, traj[0], epoch=1).frame)
    lin = enc._lin
    assert lin is not None
    lin.motion, lin.span = np.full((n, 3), 2**29, np.int64), 1  # as if it had flown apart
    dec.motion, dec.span = lin.motion.copy(), 1  # what a client of that keyframe holds
    out = enc.encode(3, ids, traj[1], epoch=1)  # two snapshots on: 2 × 2^29 ahead
    frame = decode_q(out.frame)
    assert isinstance(frame, QDelta) and frame.value_coding == VALUES_VARINT_COLUMNS
    dec.apply(out.frame)
    assert dec.grid is not None
    assert_exact(dec, dec.grid.step, traj[1])
