"""The stream hub through the clock and outlets it accepts (no sockets): pace lanes, V deadband,
slow clients, shared wire frames."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from graphwire.protocol.positions import decode_v2
from graphwire.protocol.q_decoder import QDecoder
from graphwire.protocol.quantized import QKeyframe, decode_q
from graphwire.server.fanout import WireFrame
from graphwire.server.live_settings import HubSettings
from graphwire.server.metrics import Metrics
from graphwire.server.stream_hub import MAX_LANES, StreamHub
from graphwire.simulation import ShortestPaths, Snapshot

N = 300
PERIOD = 1 / 60


class Viewer:
    """An outlet that keeps every frame it is sent, decoded from its WebSocket bytes."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.updates: list[list[bytes]] = []
        self.wires: list[WireFrame] = []
        self.pending = False
        self.closed = False

    def position_pending(self) -> bool:
        return self.pending

    def write_frames(self, frames: Sequence[WireFrame]) -> bool:
        self.wires += frames
        self.updates.append([unwrap(f.wire) for f in frames])
        return True

    def send_json(self, message: dict[str, object]) -> None:
        pass

    def send_bytes(self, data: bytes) -> None:
        pass

    def close_slow(self) -> None:
        self.closed = True


def unwrap(wire: bytes) -> bytes:
    """The payload of an unmasked, final, binary WebSocket frame (RFC 6455 §5.2)."""
    assert wire[0] == 0x82 and not wire[1] & 0x80
    n, head = wire[1] & 0x7F, 2
    if n == 126:
        n, head = int.from_bytes(wire[2:4], "big"), 4
    elif n == 127:
        n, head = int.from_bytes(wire[2:10], "big"), 10
    assert len(wire) == head + n
    return wire[head:]


class Stream:
    """Snapshots of a moving layout on a simulated 60 Hz clock, fed to one hub."""

    def __init__(self, deadband: float = 0.01) -> None:
        self.now = 0.0
        self.seq = 0
        self.rng = np.random.default_rng(7)
        self.pos = self.rng.normal(0, 100, (N, 3)).astype(np.float32)
        self.vel = np.zeros((N, 3), np.float32)
        paths = ShortestPaths(None, np.full(N, np.inf, np.float32), np.full(N, -1, np.int32), 0)
        self.hub = StreamHub(Metrics(), lambda: 1, lambda: paths, lambda: None, lambda: PERIOD,
                             dataclasses.replace(HubSettings.from_settings(), deadband=deadband),
                             clock=lambda: self.now)
        self.history: dict[int, np.ndarray] = {}

    def publish(self, step: float = 0.5, settled: bool = False) -> Snapshot:
        self.seq += 1
        self.now = self.seq * PERIOD
        self.vel = (0.8 * self.vel + self.rng.normal(0, step, (N, 3))).astype(np.float32)
        self.pos = (self.pos + self.vel).astype(np.float32)
        snap = Snapshot(self.seq, np.arange(N, dtype=np.uint32), np.zeros(N, bool),
                        self.pos.copy(), self.vel.copy(), settled, 1.0, 0, self.seq)
        self.history[self.seq] = snap.pos
        self.hub.on_snapshot(snap, False)
        return snap


def replay_q(stream: Stream, viewer: Viewer) -> QDecoder:
    """Apply everything a q viewer was sent; each update lands on its snapshot exactly."""
    dec = QDecoder()
    for update in viewer.updates:
        for frame in update:
            dec.apply(frame)  # raises KeyframeMissingError if it needed a keyframe not held
        assert dec.seq is not None and dec.grid is not None
        err = np.abs(dec.positions() - stream.history[dec.seq])
        assert np.all(err <= dec.grid.step / 2 + 1e-6)
    return dec


async def test_paced_clients_get_frames_relative_to_a_keyframe_they_hold() -> None:
    s = Stream()
    follower, paced, slow = Viewer("f"), Viewer("p"), Viewer("s")
    s.hub.subscribe(follower, "q", False, PERIOD)
    s.hub.subscribe(paced, "q", False, 0.2)
    s.hub.subscribe(slow, "q", False, 1.0)
    for _ in range(240):
        s.publish()
    replay_q(s, follower)
    replay_q(s, paced)
    replay_q(s, slow)
    assert len(follower.updates) == 240
    assert 19 <= len(paced.updates) <= 21  # every 12 snapshots, four seconds
    assert 4 <= len(slow.updates) <= 5
    for v in (follower, paced, slow):
        first, *rest = v.updates
        assert isinstance(decode_q(first[0]), QKeyframe)  # the join: one full keyframe
        # after it, one frame an update, never a full keyframe: each applies to the key held
        assert all(len(u) == 1 and not isinstance(decode_q(u[0]), QKeyframe) for u in rest)
    assert s.hub.metrics.keyframes_instead_of_delta == 0


async def test_a_client_joining_a_lane_between_ticks_then_follows_its_ticks() -> None:
    s = Stream()
    first, late = Viewer("a"), Viewer("b")
    s.hub.subscribe(first, "q", False, 0.2)
    for _ in range(17):
        s.publish()
    s.hub.subscribe(late, "q", False, 0.2)
    for _ in range(60):
        s.publish()
    replay_q(s, late)
    join, *rest = late.updates
    assert isinstance(decode_q(join[0]), QKeyframe)
    assert len(rest) >= 4 and all(len(u) == 1 for u in rest)
    # after the join, both are sent the very same frames (one lineage, encoded once)
    assert [u[0] for u in rest] == [u[0] for u in first.updates[-len(rest):]]


async def test_beyond_max_lanes_a_pace_shares_a_lane_and_stays_exact() -> None:
    s = Stream()
    viewers = [Viewer(f"v{i}") for i in range(MAX_LANES + 2)]
    for i, v in enumerate(viewers):
        s.hub.subscribe(v, "q", False, 0.05 + 0.01 * i)
    for _ in range(120):
        s.publish()
    assert len(s.hub._lanes) == MAX_LANES
    for v in viewers:
        assert len(v.updates) >= 8
        replay_q(s, v)


async def test_a_slow_client_is_skipped_then_sent_the_newest_frame() -> None:
    s = Stream()
    fast, slow = Viewer("fast"), Viewer("slow")
    s.hub.subscribe(fast, "q", False, PERIOD)
    s.hub.subscribe(slow, "q", False, PERIOD)
    for _ in range(5):
        s.publish()
    slow.pending = True
    for _ in range(5):
        s.publish()
    got = len(slow.updates)
    assert got == 5 and s.hub.metrics.frames_skipped_slow == 5
    slow.pending = False
    s.hub.drained("slow")  # the socket drained: the newest snapshot at once
    assert len(slow.updates) == got + 1
    dec = replay_q(s, slow)
    assert dec.seq == s.seq


async def test_the_wire_bytes_of_a_frame_are_built_once_and_shared() -> None:
    s = Stream()
    viewers = [Viewer(str(i)) for i in range(5)]
    for v in viewers:
        s.hub.subscribe(v, "q", False, PERIOD)
    for _ in range(3):
        s.publish()
    last = [v.wires[-1] for v in viewers]
    assert all(w is last[0] for w in last)  # one object, one bytes, for every client
    assert all(v.wires[-1].wire is last[0].wire for v in viewers)
    assert s.hub.metrics.frames["q"] == 15


async def test_v2_clients_stay_within_the_deadband() -> None:
    # Nodes creep by less than the deadband a snapshot, sometimes back: a client that joined
    # by keyframe, as one that followed from the start, is never more than the deadband off.
    deadband = 0.01
    s = Stream(deadband)
    early, late = Viewer("early"), Viewer("late")
    s.hub.subscribe(early, "v2", False, PERIOD)
    shown: dict[str, np.ndarray] = {}
    seen = {"early": 0, "late": 0}
    for k in range(40):
        if k == 9:
            s.hub.subscribe(late, "v2", False, PERIOD)
        s.publish(step=0.004)
        for v in (early, late):
            if len(v.updates) == seen[v.client_id]:
                continue
            seen[v.client_id] = len(v.updates)
            frame = decode_v2(v.updates[-1][0])
            state = (np.full((N, 3), np.nan, np.float32) if frame.header.keyframe
                     else shown[v.client_id].copy())
            state[frame.nodes.ids] = frame.nodes.pos
            shown[v.client_id] = state
            assert frame.header.seq == s.seq
            off = np.linalg.norm(state - s.history[s.seq], axis=1)
            assert off.max() <= deadband + 1e-6
    assert len(early.updates) == 40 and len(late.updates) == 31


async def test_a_paced_v2_client_due_between_snapshots_gets_an_exact_keyframe() -> None:
    # A 200 ms client on a 60 Hz stream falls due between snapshots (its catch-up timer fires
    # there) and is sent the newest snapshot as a keyframe: it holds that snapshot exactly, not
    # what the in-step clients hold within the deadband.
    s = Stream(0.01)
    follower, paced = Viewer("follower"), Viewer("paced")
    s.hub.subscribe(follower, "v2", False, PERIOD)
    s.hub.subscribe(paced, "v2", False, 0.2)
    for _ in range(120):
        s.publish(step=0.004)
        s.now += PERIOD / 2
        s.hub.catch_up()  # what the hub's timer does between snapshots
    keyframes = [decode_v2(u[0]) for u in paced.updates]
    assert len(keyframes) >= 9
    for frame in keyframes:
        assert frame.header.keyframe
        assert np.array_equal(frame.nodes.pos, s.history[frame.header.seq][frame.nodes.ids])
    # the follower was sent every snapshot and stays within the deadband of each
    assert len(follower.updates) == 120
    held = np.full((N, 3), np.nan, np.float32)
    for update in follower.updates:
        frame = decode_v2(update[0])
        held[frame.nodes.ids] = frame.nodes.pos
        off = np.linalg.norm(held - s.history[frame.header.seq], axis=1)
        assert off.max() <= 0.01 + 1e-6


async def test_a_keyframe_sent_after_the_paths_changed_carries_the_new_paths() -> None:
    # V records carry each node's distance and parent: a client that joins after the source
    # changed, before the next snapshot (a settled layout sends none for 10 s), must not be
    # sent the keyframe encoded with the old paths
    s = Stream()
    asked: list[int] = []
    s.hub.request_snapshot = lambda: asked.append(s.seq)
    old = ShortestPaths(None, np.full(N, np.inf, np.float32), np.full(N, -1, np.int32), 0)
    new = ShortestPaths(5, np.arange(N, dtype=np.float32), np.full(N, 5, np.int32), 0)
    paths = [old]
    s.hub.sssp = lambda: paths[0]
    first, later = Viewer("first"), Viewer("later")
    s.hub.subscribe(first, "v2", False, PERIOD)
    s.publish(settled=True)
    before = decode_v2(first.updates[-1][0])
    assert before.header.keyframe and np.isinf(before.nodes.dist).all()
    paths[0] = new
    asked.clear()
    s.hub.paths_changed()
    assert asked == [s.seq]  # and the next snapshot is asked for
    s.hub.subscribe(later, "v2", False, PERIOD)
    frame = decode_v2(later.updates[-1][0])
    assert frame.header.keyframe and frame.header.seq == before.header.seq
    assert np.array_equal(frame.nodes.dist, new.distance[frame.nodes.ids])
    assert np.all(frame.nodes.parent == 5)
