"""The paced rows of bench trace: q clients at several paces through the real stream hub."""

from __future__ import annotations

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
