"""The stream hub without sockets: subscriptions, encode-once fan-out, slow outlets and
pacing, through the outlets and the clock it accepts (pace lanes and the deadband:
``test_stream_hub.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphwire.protocol.header import Flags
from graphwire.protocol.positions import decode_v2
from graphwire.protocol.q_decoder import QDecoder
from graphwire.protocol.quantized import FLAG_VELOCITY
from graphwire.server.fanout import WireFrame
from graphwire.server.live_settings import HubSettings
from graphwire.server.metrics import Metrics
from graphwire.server.stream_hub import StreamHub
from graphwire.simulation import Snapshot
from graphwire.simulation.sssp import ShortestPaths

N = 50


class Outlet:
    """A connection as the hub sees it: records what it is handed."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.frames: list[bytes] = []
        self.json: list[dict[str, Any]] = []
        self.pending = False
        self.closed_slow = False

    def position_pending(self) -> bool:
        return self.pending

    def write_frames(self, frames: Sequence[WireFrame]) -> bool:
        self.frames.extend(f.payload for f in frames)
        return True

    def send_json(self, message: dict[str, object]) -> None:
        self.json.append(message)

    def send_bytes(self, data: bytes) -> None:
        self.frames.append(data)

    def close_slow(self) -> None:
        self.closed_slow = True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def snapshot(seq: int, moved: float = 0.0) -> Snapshot:
    """A layout of N nodes on a line; ``moved`` shifts the first ten along x."""
    pos = np.zeros((N, 3), np.float32)
    pos[:, 0] = np.arange(N, dtype=np.float32) * 3
    pos[:10, 0] += moved
    return Snapshot(seq=seq, ids=np.arange(N, dtype=np.uint32), agent=np.zeros(N, bool),
                    pos=pos, vel=np.zeros((N, 3), np.float32), settled=False,
                    kinetic_energy=0.0, topology_version=0, steps=seq)


def make_hub(clock: Clock, **settings: Any) -> tuple[StreamHub, Metrics, list[int]]:
    metrics = Metrics()
    requests: list[int] = []
    paths = ShortestPaths(None, np.full(N, np.inf, np.float32), np.full(N, -1, np.int32), 0)
    hub_settings = HubSettings(**{**{"deadband": 0.01, "high_water": 1 << 20,
                                     "slow_timeout": 5.0}, **settings})
    hub = StreamHub(metrics, lambda: 7, lambda: paths, lambda: requests.append(1),
                    lambda: 0.05, hub_settings, clock=clock)
    return hub, metrics, requests


async def test_a_subscription_asks_for_a_snapshot_and_gets_a_keyframe_then_deltas() -> None:
    clock = Clock()
    hub, metrics, requests = make_hub(clock)
    a, b = Outlet("a"), Outlet("b")
    hub.subscribe(a, "v2", False, 0.0)
    hub.subscribe(b, "v2", False, 0.0)
    assert len(requests) == 2  # each subscription asks for a snapshot at once
    hub.on_snapshot(snapshot(1), False)
    key = decode_v2(a.frames[0])
    assert key.header.keyframe and len(key.nodes) == N and key.header.epoch16 == 7
    clock.now += 0.1
    hub.on_snapshot(snapshot(2, moved=1.0), False)
    delta = decode_v2(a.frames[1])
    assert not delta.header.keyframe and delta.header.seq == 2
    assert sorted(delta.nodes.ids.tolist()) == list(range(10))  # past the deadband only
    # encoded once: both subscribers hold the very same bytes objects
    assert a.frames[0] is b.frames[0] and a.frames[1] is b.frames[1]
    assert metrics.snapshots == 2 and metrics.keyframes_instead_of_delta == 0


async def test_q_subscribers_share_frames_and_decode_the_layout() -> None:
    clock = Clock()
    hub, _, _ = make_hub(clock)
    outlets = [Outlet(str(i)) for i in range(3)]
    for o in outlets:
        hub.subscribe(o, "q", False, 0.0)
    for seq in range(1, 5):
        clock.now += 0.1
        hub.on_snapshot(snapshot(seq, moved=seq * 0.5), False)
    first = outlets[0].frames
    assert all(o.frames == first and all(x is y for x, y in zip(o.frames, first, strict=True))
               for o in outlets)
    dec = QDecoder()
    for frame in first:
        dec.apply(frame)
    want = snapshot(4, moved=2.0).pos
    assert dec.seq == 4 and dec.grid is not None
    assert np.all(np.abs(dec.positions() - want) <= dec.grid.step / 2 * 1.000001)


async def test_a_slow_outlet_is_skipped_then_closed_after_the_timeout() -> None:
    clock = Clock()
    hub, metrics, _ = make_hub(clock, slow_timeout=5.0)
    slow, fine = Outlet("slow"), Outlet("fine")
    hub.subscribe(slow, "v2", False, 0.0)
    hub.subscribe(fine, "v2", False, 0.0)
    hub.on_snapshot(snapshot(1), False)
    slow.pending = True  # its frame is not written yet
    clock.now += 1.0
    hub.on_snapshot(snapshot(2, moved=1.0), False)
    assert len(slow.frames) == 1 and len(fine.frames) == 2
    assert metrics.frames_skipped_slow == 1
    clock.now += 5.5  # stuck past slowClientTimeoutMs
    hub.on_snapshot(snapshot(3, moved=2.0), False)
    assert slow.closed_slow and metrics.slow_closes == 1
    assert "slow" not in hub.subs and "fine" in hub.subs
    slow.pending = False
    hub.drained("slow")  # gone: nothing more
    assert len(slow.frames) == 1


async def test_a_drained_outlet_that_missed_a_frame_gets_this_snapshots_keyframe() -> None:
    clock = Clock()
    hub, metrics, _ = make_hub(clock)
    out = Outlet("o")
    hub.subscribe(out, "v2", False, 0.0)
    hub.on_snapshot(snapshot(1), False)
    out.pending = True
    clock.now += 0.1
    hub.on_snapshot(snapshot(2, moved=1.0), False)
    clock.now += 0.1
    hub.on_snapshot(snapshot(3, moved=2.0), False)
    out.pending = False
    hub.drained("o")
    caught_up = decode_v2(out.frames[-1])
    assert caught_up.header.seq == 3 and caught_up.header.keyframe
    assert metrics.keyframes_instead_of_delta == 1


async def test_a_paced_outlet_waits_for_its_interval() -> None:
    clock = Clock()
    hub, _, _ = make_hub(clock)
    out = Outlet("o")
    hub.subscribe(out, "v2", False, 1.0)  # one frame a second
    hub.on_snapshot(snapshot(1), False)
    for seq in range(2, 6):
        clock.now += 0.1
        hub.on_snapshot(snapshot(seq, moved=float(seq)), False)
    assert len(out.frames) == 1  # not due yet
    clock.now += 0.6
    hub.catch_up()
    frame = decode_v2(out.frames[-1])
    assert len(out.frames) == 2 and frame.header.seq == 5 and frame.header.keyframe
    await asyncio.sleep(0)


async def test_request_keyframe_and_unsubscribe() -> None:
    clock = Clock()
    hub, _, requests = make_hub(clock)
    out = Outlet("o")
    assert not hub.request_keyframe("o")  # no subscription
    hub.subscribe(out, "v2", False, 0.0)
    hub.on_snapshot(snapshot(1), False)
    clock.now += 0.1
    assert hub.request_keyframe("o") and len(requests) == 2
    hub.on_snapshot(snapshot(2, moved=1.0), False)
    assert decode_v2(out.frames[-1]).header.flags & Flags.KEYFRAME
    hub.unsubscribe(out)
    clock.now += 0.1
    hub.on_snapshot(snapshot(3, moved=2.0), False)
    assert len(out.frames) == 2


def test_a_lane_made_between_snapshots_never_takes_a_dropped_lanes_frames() -> None:
    # the client's only lane is dropped when it subscribes again, and a new lane may be built
    # at the same address: a catch-up before the next snapshot must encode for the new lane
    clock = Clock()
    hub, _, _ = make_hub(clock)
    a = Outlet("a")
    hub.subscribe(a, "q", False, 0.0)
    hub.on_snapshot(snapshot(1), False)
    clock.now += 0.05
    hub.on_snapshot(snapshot(2, moved=1.0), False)
    sent = len(a.frames)
    hub.subscribe(a, "q", True, 0.0)  # now with velocities
    hub.catch_up()
    assert len(a.frames) == sent + 1
    assert a.frames[-1][1] & Flags.KEYFRAME and a.frames[-1][1] & FLAG_VELOCITY
    QDecoder().apply(a.frames[-1])
