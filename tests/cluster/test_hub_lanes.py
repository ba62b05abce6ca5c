"""The hub across a cluster without processes: a simulation's hub exports each ``q`` lane its
gateways name, through the FRAMES envelope, to two gateway hubs whose paced clients must get
the same bytes and only frames relative to a keyframe they hold (the whole cluster, processes
and Redis: ``test_cluster.py``)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from graphwire.cluster import envelope
from graphwire.cluster.envelope import FrameSet
from graphwire.protocol.header import Flags, unpack_header
from graphwire.protocol.positions import decode_v2
from graphwire.protocol.q_decoder import QDecoder
from graphwire.server.stream_hub import StreamHub, parse_q_stream, q_stream_name

from ..server.test_stream_hub_outlets import Clock, N, Outlet, make_hub, snapshot

SIM_INTERVAL = 0.05  # the simulation's stream interval in make_hub


def publish(sim: StreamHub, gateways: list[StreamHub], n: int) -> FrameSet:
    """What the simulation exports for its newest snapshot, as every gateway receives it."""
    fs = sim.export(7, 20.0)
    assert fs is not None
    for gw in gateways:
        back = FrameSet.from_envelope(envelope.decode(fs.encode(token=1, n=n)))
        gw.on_frames(back, snapshot(back.seq))
    return fs


def test_stream_names_round_trip() -> None:
    assert q_stream_name(False, 0.4) == "q@400" and q_stream_name(True, 0.2) == "q+v@200"
    assert parse_q_stream("q+v@250") == (True, 0.25) and parse_q_stream("q@17") == (False, 0.017)
    for bad in ("q", "v2", "q@", "q@x", "q+x@200", "@200"):
        assert parse_q_stream(bad) is None


async def test_paced_q_clients_on_two_gateways_get_the_same_frames_of_one_lineage() -> None:
    clock = Clock()
    sim, _, _ = make_hub(clock)
    gateways = [make_hub(clock)[0] for _ in range(2)]
    slow = [Outlet("slow-a"), Outlet("slow-b")]   # 400 ms: a tick every 8 snapshots
    fast = [Outlet("fast-a"), Outlet("fast-b")]   # every snapshot
    for gw, s, f in zip(gateways, slow, fast, strict=True):
        gw.subscribe(s, "q", False, 0.4)
        gw.subscribe(f, "q", False, 0.0)
    wanted = gateways[0].streams_in_use() | gateways[1].streams_in_use()
    assert wanted == {"q@400", "q@0"}
    sim.remote_streams = wanted
    late = Outlet("late-b")
    for seq in range(1, 41):
        clock.now += SIM_INTERVAL
        sim.on_snapshot(snapshot(seq, moved=seq * 0.7), False)
        fs = publish(sim, gateways, seq)
        assert set(fs.q) == wanted
        if seq == 13:  # a client joins gateway B between two ticks of the slow lane
            gateways[1].subscribe(late, "q", False, 0.4)
    # the same bytes on both gateways, for both paces
    assert slow[0].frames == slow[1].frames and fast[0].frames == fast[1].frames
    assert len(fast[0].frames) == 40
    # the slow clients were sent a frame per tick (about every 8 snapshots), not every one
    seqs = [unpack_header(f).seq for f in slow[0].frames]
    assert 5 <= len(seqs) <= 7 and all(7 <= b - a <= 9 for a, b in pairwise(seqs))
    # every frame applies to the keyframe the client holds: one full keyframe, then deltas or
    # rebases from the held keyframe, never a full keyframe again; positions stay exact
    for out in (*slow, *fast, late):
        dec = QDecoder()
        full = 0
        for frame in out.frames:
            flags = frame[1]
            full += bool(flags & Flags.KEYFRAME) and not flags & 0x10
            dec.apply(frame)
        assert full == 1, out.client_id
        want = snapshot(dec.seq, moved=dec.seq * 0.7).pos
        assert dec.grid is not None
        assert np.all(np.abs(dec.positions() - want) <= dec.grid.step / 2 * 1.000001)
    # the late client got the lane's keyframe and then follows the same ticks as the others
    late_seqs = [unpack_header(f).seq for f in late.frames]
    assert late_seqs[1] == 14 and len(late_seqs) >= 4 and set(late_seqs[2:]) <= set(seqs)


async def test_a_lane_no_gateway_names_any_more_is_dropped_and_v_streams_are_shared() -> None:
    clock = Clock()
    sim, _, _ = make_hub(clock)
    gw, _, _ = make_hub(clock)
    a = Outlet("a")
    gw.subscribe(a, "v2", False, 0.0)
    sim.remote_streams = {"v2", "q@400"}
    for seq in (1, 2):
        clock.now += SIM_INTERVAL
        sim.on_snapshot(snapshot(seq, moved=seq * 1.0), False)
        fs = publish(sim, [gw], seq)
    assert set(fs.q) == {"q@400"} and set(fs.v) == {"v2"}
    sim.remote_streams = {"v2"}
    clock.now += SIM_INTERVAL
    sim.on_snapshot(snapshot(3, moved=3.0), False)
    fs = publish(sim, [gw], 3)
    assert fs.q == {} and not sim._lanes  # the lane is gone
    frames = [decode_v2(f) for f in a.frames]
    assert [f.header.seq for f in frames] == [1, 2, 3]
    assert frames[0].header.keyframe and len(frames[0].nodes) == N
    assert not frames[1].header.keyframe and not frames[2].header.keyframe
