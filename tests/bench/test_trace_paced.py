"""The paced rows of bench trace: q clients at several paces through the real stream hub."""

from __future__ import annotations

import numpy as np

from graphwire.bench import trace


def test_paced_clients_are_sent_a_frame_per_pace_and_no_keyframe_each_time() -> None:
    rows = trace.paced_rows(snapshots=120, intervals_ms=(17, 200))
    by = {r["intervalMs"]: r for r in rows}
    assert by[17]["frames"] == 120  # every snapshot of the 60 Hz stream
    assert 9 <= by[200]["frames"] <= 11  # one every 12 snapshots
    # a 200 ms client applies frames relative to a keyframe it holds: below the full keyframe
    # (~6 bytes a node) plus a frame that a client without its lineage's keyframe gets each
    # time (7.3 bytes a node on this stream before pace lanes)
    assert by[200]["bytesPerNodePerFrame"] < 5.0
    assert all(r["trace"] == "demo-60hz" and r["format"] == "q" for r in rows)


def test_residual_entropy_is_zero_for_steady_motion_and_grows_with_noise() -> None:
    rng = np.random.default_rng(3)
    start = rng.uniform(-100, 100, (500, 3))
    velocity = rng.uniform(-0.5, 0.5, (500, 3))
    steady = [start + k * velocity for k in range(40)]
    # motion that goes on as it went is all predicted: what is left is each frame's rounding
    # on its own grid (residuals of -1, 0 or 1 a step: ~1.5 bits an axis)
    assert trace.residual_entropy(steady, 1) < 0.8
    assert trace.residual_entropy(steady, 10) < 0.8
    jitter = [p + rng.normal(0, 0.05, p.shape) for p in steady]
    noisy = trace.residual_entropy(jitter, 1)
    # a node's random 0.05 on a 16-bit grid of a ~200 extent is ~16 steps: ~6 bits an axis
    assert 1.5 < noisy < 3.5
    # a random walk wanders further over a longer pace: more to send
    walk = np.cumsum([rng.normal(0, 0.05, start.shape) for _ in range(40)], axis=0) + start
    assert trace.residual_entropy(list(walk), 10) > trace.residual_entropy(list(walk), 1) + 0.3


def test_paced_rows_name_the_trace_and_compare_with_the_every_frame_client() -> None:
    rows = trace.paced_rows(snapshots=60, intervals_ms=(17, 200), warmup=30, hot=True)
    assert [r["trace"] for r in rows] == ["demo-60hz-hot@30"] * 2
    first, paced = rows
    assert first["timesEveryFrame"] == 1.0
    assert paced["timesEveryFrame"] == round(paced["bytesPerNodePerFrame"]
                                             / first["bytesPerNodePerFrame"], 2)
    assert first["residualEntropy"] > 0
    assert first["afterJoinTimesEveryFrame"] == 1.0
    # the join keyframe weighs more on a client of few frames: without it the ratio drops
    assert paced["afterJoinTimesEveryFrame"] < paced["timesEveryFrame"]


def test_residual_entropy_needs_three_frames_at_the_pace() -> None:
    trail = [np.zeros((10, 3)) + k for k in range(5)]
    assert trace.residual_entropy(trail, 2) is not None  # frames 0, 2, 4
    assert trace.residual_entropy(trail, 3) is None  # frames 0 and 3 only: nothing to predict
