"""The JavaScript decoders agree with the Python reference on real streams (docs/protocol.md §1).

The Python encoder (``QStreamEncoder``) turns a moving layout into kind 0x03 frames: full
keyframes, rebases with grid shifts, predicted deltas, gzip payloads, velocity blocks. The JS
``QDecoder`` (run by Node) must land on exactly the grid coordinates the Python ``QDecoder``
holds after every frame, in any order the contract allows (a delta applied after skips).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pytest

from graphwire.bench.trace import standard_trace
from graphwire.protocol import q_decoder, q_encoder
from graphwire.protocol.quantized import VALUES_FITTED, VALUES_PREDICTED, QDelta, decode_q
from graphwire.protocol.sssp import encode_sssp

WEB = Path(__file__).resolve().parents[2] / "src" / "graphwire" / "web"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


class _Snap(NamedTuple):
    seq: int
    ids: npt.NDArray[np.uint32]
    pos: npt.NDArray[np.float32]
    vel: npt.NDArray[np.float32]


def slowing_trace(snapshots: int, nodes: int) -> Iterator[_Snap]:
    """Nodes drifting on straight lines as a cooling layout does (each slower than the snapshot
    before), with a slow wobble: a motion a keyframe's prediction follows, on any machine."""
    rng = np.random.default_rng(11)
    start = rng.uniform(-300, 300, (nodes, 3))
    heading = rng.normal(0, 1, (nodes, 3))
    phase = rng.uniform(0, 2 * np.pi, (nodes, 1))
    ids = np.arange(nodes, dtype=np.uint32)
    for seq in range(snapshots):
        t = float(seq)
        travel = 150.0 * (1 - math.exp(-t / 120))
        pos = start + heading * travel + 2.0 * np.sin(t / 25 + phase)
        vel = heading * 150.0 / 120 * math.exp(-t / 120) + 0.08 * np.cos(t / 25 + phase)
        yield _Snap(seq, ids, pos.astype(np.float32), vel.astype(np.float32))


def decode_with_js(frames: list[bytes]) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["node", str(WEB / "test" / "decode_stream.mjs")],
        input=json.dumps({"frames": [f.hex() for f in frames]}), capture_output=True, text=True,
        check=True, timeout=60,
    )
    results: list[dict[str, Any]] = json.loads(out.stdout)["results"]
    return results


@pytest.mark.parametrize("velocity", [False, True])
def test_js_follows_a_moving_stream_exactly(velocity: bool) -> None:
    enc = q_encoder.QStreamEncoder(velocity=velocity)
    frames: list[bytes] = []
    py = q_decoder.QDecoder()
    expected = []
    for snap in standard_trace(snapshots=40, nodes=1500):
        vel = snap.vel if velocity else None
        out = enc.encode(snap.seq, snap.ids, snap.pos, epoch=7, vel=vel)
        frames.append(out.frame)
        py.apply(out.frame)
        expected.append((py.q.copy(), None if py.vel is None else py.vel.copy(), py.positions()))
    kinds = {(f[1] & 0x02, f[1] & 0x10, f[1] & 0x01) for f in frames}
    assert (0x02, 0x10, 0x01) in kinds or (0x02, 0x10, 0) in kinds  # rebases happened
    codings = {f.value_coding for f in map(decode_q, frames) if isinstance(f, QDelta)}
    assert VALUES_PREDICTED in codings  # predicted frames (the fitted ones: the paced test)
    got = decode_with_js(frames)
    assert len(got) == len(frames)
    for (q, vel, pos), js in zip(expected, got, strict=True):
        assert "error" not in js, js
        np.testing.assert_array_equal(np.array(js["q"]).reshape(-1, 3), q)
        np.testing.assert_allclose(np.array(js["pos"]).reshape(-1, 3), pos, rtol=0, atol=1e-3)
        if vel is not None:
            np.testing.assert_array_equal(np.array(js["vel"], np.float32).reshape(-1, 3), vel)


@pytest.mark.parametrize(("fit", "velocity"), [(False, False), (True, False), (True, True)])
def test_js_follows_a_paced_lineage_predicted_past_16_snapshots(fit: bool, velocity: bool
                                                                ) -> None:
    # a lane that ticks every 30 snapshots: its keyframes span 30, so its predictions reach 30
    # snapshots ahead (docs/protocol.md §4.1), past the 16 of a stream in step; with ``fit``
    # the encoder scales them by a factor per axis fitted to each frame (value coding 2)
    # (a smooth, slowing motion rather than the physics: whether the prediction beats the plain
    # moves on a trajectory of the physics is a close call that floating point decides
    # differently on another CPU)
    enc = q_encoder.QStreamEncoder(velocity=velocity, policy=q_encoder.QPolicy(fit=fit))
    frames, expected = [], []
    py = q_decoder.QDecoder()
    for snap in slowing_trace(snapshots=240, nodes=800):
        if snap.seq % 30:
            continue
        frames.append(enc.encode(snap.seq, snap.ids, snap.pos, epoch=3,
                                 vel=snap.vel if velocity else None).frame)
        py.apply(frames[-1])
        expected.append((py.q.copy(), None if py.vel is None else py.vel.copy()))
        np.testing.assert_allclose(py.positions(), snap.pos, rtol=0, atol=float(py.grid.step.max()))
    deltas = [decode_q(f) for f in frames[1:]]
    coding = VALUES_FITTED if fit else VALUES_PREDICTED
    assert any(isinstance(d, QDelta) and d.value_coding == coding
               and d.header.seq - d.key_seq == 30 for d in deltas)
    got = decode_with_js(frames)
    for (q, vel), js in zip(expected, got, strict=True):
        assert "error" not in js, js
        np.testing.assert_array_equal(np.array(js["q"]).reshape(-1, 3), q)
        if vel is not None:
            np.testing.assert_array_equal(np.array(js["vel"], np.float32).reshape(-1, 3), vel)


def test_js_applies_any_delta_of_the_held_keyframe_after_skips() -> None:
    one_keyframe = q_encoder.QPolicy(rebase_ratio=1e9, max_age=1000)
    enc = q_encoder.QStreamEncoder(policy=one_keyframe)
    frames = []
    for snap in standard_trace(snapshots=12, nodes=800):
        frames.append(enc.encode(snap.seq, snap.ids, snap.pos, epoch=1).frame)
    chosen = [frames[0], frames[9], frames[3], frames[11]]  # out of order, with skips
    py = q_decoder.QDecoder()
    got = decode_with_js(chosen)
    for frame, js in zip(chosen, got, strict=True):
        py.apply(frame)
        np.testing.assert_array_equal(np.array(js["q"]).reshape(-1, 3), py.q)


def test_js_asks_for_a_keyframe_it_does_not_hold() -> None:
    enc = q_encoder.QStreamEncoder()
    frames = [enc.encode(s.seq, s.ids, s.pos, epoch=1).frame
              for s in standard_trace(snapshots=3, nodes=300)]
    got = decode_with_js(frames[1:])  # no keyframe held
    assert got[0] == {"error": "malformed_frame"}


def test_js_decodes_sssp_frames_plain_and_gzip() -> None:
    small = encode_sssp(2, [1.0, 0.5, 0.0], [2, 2, -1], seq=5, epoch=1)
    n = 5000
    dist = np.where(np.arange(n) % 7 == 0, np.inf, np.arange(n) / 10).astype(np.float32)
    parent = np.where(np.isinf(dist), -1, np.arange(n) - 1).astype(np.int32)
    big = encode_sssp(1, dist, parent, seq=6, epoch=1)
    cleared = encode_sssp(None, np.full(4, np.inf), np.full(4, -1), seq=7, epoch=1)
    assert big[1] & 0x01  # compressed
    got = decode_with_js([small, big, cleared])
    assert got[0] == {"source": 2, "distance": [1.0, 0.5, 0.0], "parent": [2, 2, -1]}
    assert got[1]["source"] == 1
    js_dist = [math.inf if d is None else d for d in got[1]["distance"]]
    np.testing.assert_array_equal(np.array(js_dist, np.float32), dist)
    assert got[1]["parent"] == parent.tolist()
    assert got[2]["source"] is None and got[2]["parent"] == [-1] * 4


def _keyframe_with_motion(base: np.ndarray, motion: np.ndarray, span: int) -> bytes:
    from graphwire.protocol.quantized import Grid, encode_keyframe

    grid = Grid(np.zeros(3), np.full(3, 0.5))
    ids = np.arange(base.shape[0], dtype=np.uint32)
    return encode_keyframe(grid, ids, base, seq=10, epoch=1, motion=motion, span=span)


def test_js_and_python_apply_fitted_rebases_that_shift_the_grid_alike() -> None:
    # value coding 2 with a grid shift, on both of the JavaScript decoder's paths (some nodes
    # moved, every node moved), negative motion included: the floors must agree
    from graphwire.protocol.quantized import VALUES_FITTED, encode_delta

    rng = np.random.default_rng(8)
    n = 50
    base = rng.integers(-5000, 5000, (n, 3)).astype(np.int64)
    motion = rng.integers(-700, 700, (n, 3)).astype(np.int64)
    key = _keyframe_with_motion(base, motion, 7)
    some = np.sort(rng.choice(n, 20, replace=False)).astype(np.int64)
    every = np.arange(n, dtype=np.int64)
    frames = [key]
    # each rebase is based on the frame before it (keySeq 10, then 12)
    for key_seq, seq, idx, shift in ((10, 12, some, [1, 0, -1]), (12, 13, every, [0, 2, 0])):
        frames.append(encode_delta(key_seq, n, idx, rng.integers(-40, 40, (idx.shape[0], 3)),
                                   seq=seq, epoch=1, rebase=True, shift=np.array(shift),
                                   value_coding=VALUES_FITTED,
                                   factor=np.array([0.3, -1.7, 2.25])))
    py = q_decoder.QDecoder()
    expected = []
    for frame in frames:
        py.apply(frame)
        expected.append(py.q.copy())
    got = decode_with_js(frames)
    for q, js in zip(expected, got, strict=True):
        assert "error" not in js, js
        np.testing.assert_array_equal(np.array(js["q"]).reshape(-1, 3), q)


@pytest.mark.parametrize("every_node", [False, True])
def test_a_prediction_past_2_30_is_refused_by_both_decoders(every_node: bool) -> None:
    from graphwire.protocol.errors import ProtocolError
    from graphwire.protocol.quantized import VALUES_FITTED, encode_delta

    n = 4
    base = np.full((n, 3), 2**29, np.int64)
    motion = np.full((n, 3), 2**29, np.int64)
    key = _keyframe_with_motion(base, motion, 1)
    idx = np.arange(n if every_node else 1, dtype=np.int64)
    # predicted 2^29 + 2 × 2^29 = 3 × 2^29, past 2^30; the moves bring it back to 2^29
    back = np.full((idx.shape[0], 3), -(2**30), np.int64)
    bad = encode_delta(10, n, idx, back, seq=11, epoch=1, value_coding=VALUES_FITTED,
                       factor=np.full(3, 2.0))
    fine = encode_delta(10, n, idx, np.zeros((idx.shape[0], 3), np.int64), seq=12, epoch=1,
                        value_coding=VALUES_FITTED, factor=np.full(3, 0.5))
    py = q_decoder.QDecoder()
    py.apply(key)
    with pytest.raises(ProtocolError, match="2\\^30"):
        py.apply(bad)
    py.apply(fine)
    got = decode_with_js([key, bad, fine])
    assert got[1] == {"error": "malformed_frame"}
    np.testing.assert_array_equal(np.array(got[2]["q"]).reshape(-1, 3), py.q)
