"""``graphwire bench client`` measures what its rows name (small sizes here; the figures live
in docs/benchmarks.md)."""

from __future__ import annotations

import asyncio

from graphwire.bench import client as bench


def test_each_format_is_decoded_into_the_mirror() -> None:
    trace = bench._trace(2000)
    for frames in (bench._v_frames(trace, "v1"), bench._v_frames(trace, "v2"),
                   bench._q_frames(trace)):
        assert len(frames) >= len(trace)
        assert bench._frames_per_sec(frames, repeat=1) > 0


def test_the_batch_queue_row() -> None:
    assert asyncio.run(bench._batch_queue_items_per_sec(updates=5000, nodes=500)) > 0
