"""The stream hub: one encode per format and snapshot, the same bytes for every subscriber.

For each snapshot and each format in use the hub encodes at most one keyframe and one delta
frame (PROTOCOL.md §3.3, §3.4) and hands the same frame to every subscriber it fits; the fan-out
(:mod:`.fanout`) builds the WebSocket frame around it once and writes those bytes to each client.
It never awaits a client: a subscriber whose previous frame is still waiting to be written, or
whose socket holds more than the high-water mark, is skipped for this frame (counted) and later
sent what the contract says (V1/V2: the keyframe of that snapshot; ``q``: the newest frame,
preceded by the full keyframe when it does not hold the frame's keyframe). A subscriber skipped
for longer than ``slowClientTimeoutMs`` is closed with 1013.

**Pace.** Each subscriber is paced by its own ``intervalMs``. ``q`` subscribers of one pace
(the same ``intervalMs`` and velocity flag) share one keyframe *lineage*, a :class:`_Lane`: the
lane ticks at that pace, every member is sent the tick's frame, and the lineage rebases only on
its ticks, so a member always holds the keyframe the next tick's frame applies to and pays what
a client that takes every snapshot pays (a rebase costs a delta), however slow its pace. Frames
between ticks (a new member's first keyframe, a lagging member catching up) never move the
lineage. At most :data:`MAX_LANES` paces get a lane of their own per velocity flag; a subscriber
beyond that shares the lane of the nearest slower-or-equal pace and is paced by its own clock.

**V1/V2.** Every client in step with a V stream holds what the stream last sent of each node;
a keyframe carries exactly that, so whoever joined by keyframe holds the same, and every client
stays within the deadband of the layout. A snapshot at which some client is due a keyframe moves
every node that moved at all (not only past the deadband), so the keyframe is then exact.

The hub takes snapshots from the local simulation today; it only needs ``Snapshot`` values, so
tomorrow it can take them from a subscription.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from graphwire.protocol.control import ErrorMessage, Format
from graphwire.protocol.errors import ErrorCode, ProtocolError
from graphwire.protocol.header import Flags
from graphwire.protocol.positions import FrameBuffer, NodeRecords, encode_v1, encode_v2, v1_fits
from graphwire.protocol.q_encoder import QOutput, QStreamEncoder
from graphwire.simulation import ShortestPaths, Snapshot

from .fanout import FrameSink, WireFrame, deliver
from .live_settings import HubSettings
from .metrics import Metrics

MAX_LANES = 8
"""Paces (per velocity flag) that get a ``q`` lineage of their own. Each costs one encode per
tick of its pace; a subscriber beyond them shares the nearest slower-or-equal pace's lineage."""

SLOW_RECHECK = 0.02
"""Seconds between looks at a skipped (slow) subscriber's socket, to send it the newest frame
soon after it drains."""


class Outlet(FrameSink, Protocol):
    """What the hub needs of a connection."""

    client_id: str

    def position_pending(self) -> bool:
        """A position frame handed over earlier is not yet written to the socket."""

    def write_buffer(self) -> int:
        """Bytes waiting in the socket's write buffer."""

    def send_json(self, message: dict[str, object]) -> None:
        """Queue a control message."""

    def send_bytes(self, data: bytes) -> None:
        """Queue a binary message that is not a position frame (SSSP)."""

    def close_slow(self) -> None:
        """Close with 1013: too slow."""


@dataclass(slots=True, eq=False)
class _Lane:
    """One ``q`` keyframe lineage, shared by the subscribers of one pace."""

    velocity: bool
    interval: float
    encoder: QStreamEncoder
    members: int = 0
    next_tick: float = 0.0
    tick_seq: int = -1  # the snapshot of its latest tick

    def aligned(self, sub: Subscription) -> bool:
        """The subscriber is paced by the lane's ticks (not by its own clock)."""
        return sub.interval == self.interval


@dataclass(slots=True, eq=False)
class Subscription:
    """One connection's stream: format, pacing and what it holds."""

    outlet: Outlet
    format: Format
    velocity: bool
    interval: float
    next_due: float = 0.0
    q_key: int | None = None  # q: seq of the keyframe held
    needs_key: bool = True
    slow_since: float | None = None
    fresh: bool = True
    seq: int | None = None  # the snapshot last delivered, whatever the format
    lane: _Lane | None = None  # q: the lineage it follows


@dataclass(slots=True, eq=False)
class _VStream:
    """V1/V2 stream state: what was last sent of every node (aligned with snapshot ids)."""

    sent: np.ndarray | None = None
    ids: np.ndarray | None = None
    topology_version: int = -1
    moved: np.ndarray | None = None  # nodes of the latest delta frame; None: keyframes only
    scratch: FrameBuffer = field(default_factory=FrameBuffer)


@dataclass(slots=True, eq=False)
class _Latest:
    """The newest snapshot and its frames, encoded at most once each, for catch-ups."""

    snap: Snapshot
    keyframe_all: bool
    v: dict[str, dict[str, WireFrame]] = field(default_factory=dict)
    q: dict[int, QOutput] = field(default_factory=dict)  # by id() of the lane
    wire: dict[int, WireFrame] = field(default_factory=dict)  # by id() of the payload

    def frame(self, payload: bytes) -> WireFrame:
        """The shared wire frame of an encoded payload (built once per snapshot)."""
        wf = self.wire.get(id(payload))
        if wf is None or wf.payload is not payload:
            wf = self.wire[id(payload)] = WireFrame(payload)
        return wf


class StreamHub:
    """Subscriptions and the encode-once fan-out of snapshots."""

    def __init__(self, metrics: Metrics, epoch: Callable[[], int],
                 sssp: Callable[[], ShortestPaths], request_snapshot: Callable[[], None],
                 stream_interval: Callable[[], float], settings: HubSettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.epoch = epoch
        self.sssp = sssp
        self.request_snapshot = request_snapshot
        self.stream_interval = stream_interval
        self.settings = settings or HubSettings.from_settings()
        self.clock = clock
        self.subs: dict[str, Subscription] = {}
        self._v: dict[str, _VStream] = {"v1": _VStream(), "v2": _VStream()}
        self._lanes: dict[tuple[bool, float], _Lane] = {}
        self._latest_frames: _Latest | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -- subscriptions -----------------------------------------------------------------------
    def subscribe(self, outlet: Outlet, fmt: Format, velocity: bool,
                  interval: float) -> Subscription:
        """Start (or replace) the stream of a connection; it gets a keyframe next."""
        self.unsubscribe(outlet)
        sub = Subscription(outlet, fmt, velocity, interval)
        if fmt == "q":
            sub.lane = self._lane_for(velocity, interval)
            sub.lane.members += 1
        self.subs[outlet.client_id] = sub
        self.request_snapshot()
        return sub

    def unsubscribe(self, outlet: Outlet) -> None:
        """Stop the stream of a connection."""
        self._drop(outlet.client_id)

    def _drop(self, client_id: str) -> None:
        sub = self.subs.pop(client_id, None)
        if sub is not None and sub.lane is not None:
            sub.lane.members -= 1
            if sub.lane.members <= 0:
                self._lanes.pop((sub.lane.velocity, sub.lane.interval), None)

    def _lane_for(self, velocity: bool, interval: float) -> _Lane:
        lane = self._lanes.get((velocity, interval))
        if lane is not None:
            return lane
        mine = [ln for (v, _), ln in self._lanes.items() if v == velocity]
        if len(mine) >= MAX_LANES:
            slower = [ln for ln in mine if ln.interval <= interval]
            return max(slower, key=lambda ln: ln.interval) if slower else \
                min(mine, key=lambda ln: ln.interval)
        lane = _Lane(velocity, interval, QStreamEncoder(velocity=velocity))
        self._lanes[(velocity, interval)] = lane
        return lane

    def request_keyframe(self, client_id: str) -> bool:
        """Send this client a keyframe with the next snapshot (published at once)."""
        sub = self.subs.get(client_id)
        if sub is None:
            return False
        sub.needs_key = True
        self.request_snapshot()
        return True

    # -- snapshots ---------------------------------------------------------------------------
    def on_snapshot(self, snap: Snapshot, keyframe_all: bool) -> None:
        """Encode a snapshot once per format in use and deliver it to every ready subscriber.

        Subscribers not due yet (their own pace) or slow are caught up with the newest snapshot
        as soon as they are: at their due time, or when their socket drains.
        """
        self.metrics.snapshots += 1
        latest = self._latest_frames = _Latest(snap, keyframe_all)
        now = self.clock()
        tolerance = 0.5 * self.stream_interval()
        self._tick(latest, now, tolerance)
        for fmt in ("v1", "v2"):
            subs = [s for s in self.subs.values() if s.format == fmt]
            if subs:
                self._advance_v(snap, fmt, keyframe_all,
                                exact=any(self._wants_v_key(s, snap.seq, now, tolerance)
                                          for s in subs))
            else:
                self._v[fmt] = _VStream()
        self._deliver(list(self.subs.values()), now, tolerance)

    def catch_up(self) -> None:
        """Deliver the newest snapshot to subscribers that were waiting and now are ready."""
        self._timer = None
        latest = self._latest_frames
        if latest is not None:
            now = self.clock()
            tolerance = 0.5 * self.stream_interval()
            self._tick(latest, now, tolerance)
            waiting = [s for s in self.subs.values() if s.seq != latest.snap.seq]
            self._deliver(waiting, now, tolerance)

    def drained(self, client_id: str) -> None:
        """A connection wrote its queued position frames: it may be behind."""
        sub = self.subs.get(client_id)
        latest = self._latest_frames
        if sub is not None and latest is not None and sub.seq != latest.snap.seq:
            self._deliver([sub], self.clock(), 0.5 * self.stream_interval())

    def _tick(self, latest: _Latest, now: float, tolerance: float) -> None:
        """Lanes whose pace is due tick at the newest snapshot."""
        seq = latest.snap.seq
        for lane in self._lanes.values():
            if lane.tick_seq != seq and (latest.keyframe_all or now + tolerance >= lane.next_tick):
                lane.tick_seq = seq
                lane.next_tick = now + lane.interval

    def _due(self, sub: Subscription, now: float, tolerance: float) -> bool:
        lane = sub.lane
        if lane is not None and lane.aligned(sub):
            return sub.seq is None or sub.seq < lane.tick_seq
        return now + tolerance >= sub.next_due

    def _wants_v_key(self, sub: Subscription, seq: int, now: float, tolerance: float) -> bool:
        """A V subscriber that will be sent a keyframe at snapshot ``seq`` if it can take it."""
        return sub.needs_key or (sub.seq != seq - 1 and self._due(sub, now, tolerance))

    def _deliver(self, subs: list[Subscription], now: float, tolerance: float) -> None:
        latest = self._latest_frames
        if latest is None:
            return
        seq = latest.snap.seq
        later: list[float] = []
        v_ready: dict[str, list[Subscription]] = {}
        q_ready: dict[int, tuple[_Lane, list[Subscription]]] = {}
        for sub in subs:
            if sub.seq == seq:
                continue
            if not sub.needs_key and not self._due(sub, now, tolerance):
                lane = sub.lane
                if lane is not None and lane.aligned(sub):
                    # a lane ticks on a snapshot; this is only in case the stream goes quiet
                    later.append(lane.next_tick + tolerance)
                else:
                    later.append(sub.next_due - tolerance)  # not due yet at its own pace
                continue
            if not self._writable(sub, now):
                later.append(now + SLOW_RECHECK)
                continue
            if sub.lane is not None:
                q_ready.setdefault(id(sub.lane), (sub.lane, []))[1].append(sub)
            else:
                v_ready.setdefault(sub.format, []).append(sub)
        for fmt, ready in v_ready.items():
            self._deliver_v(latest, fmt, ready)
        for lane, ready in q_ready.values():
            self._deliver_q(latest, lane, ready)
        for group in (*v_ready.values(), *(ready for _, ready in q_ready.values())):
            for sub in group:
                sub.next_due = now + sub.interval
                sub.seq = seq
        if later:
            self._schedule(min(later))

    def _schedule(self, when: float) -> None:
        if self._timer is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = when
        self._timer = loop.call_later(max(0.0, when - self.clock()), self.catch_up)

    def _writable(self, sub: Subscription, now: float) -> bool:
        out = sub.outlet
        if out.position_pending() or out.write_buffer() > self.settings.high_water:
            self.metrics.frames_skipped_slow += 1
            if sub.slow_since is None:
                sub.slow_since = now
            elif now - sub.slow_since > self.settings.slow_timeout:
                self.metrics.slow_closes += 1
                self._drop(out.client_id)
                out.close_slow()
            return False
        sub.slow_since = None
        return True

    def _records(self, snap: Snapshot, idx: np.ndarray | None,
                 pos: np.ndarray | None = None) -> NodeRecords:
        sssp = self.sssp()
        ids = snap.ids if idx is None else snap.ids[idx]
        known = ids < sssp.distance.shape[0]
        safe = np.where(known, ids, 0)
        dist = np.where(known, sssp.distance[safe], np.float32(np.inf)).astype(np.float32)
        parent = np.where(known, sssp.parent[safe], -1).astype(np.int32)
        if pos is None:
            pos = snap.pos if idx is None else snap.pos[idx]
        vel = snap.vel if idx is None else snap.vel[idx]
        agent = snap.agent if idx is None else snap.agent[idx]
        return NodeRecords(ids, agent, pos, vel, dist, parent)

    def _advance_v(self, snap: Snapshot, fmt: str, keyframe_all: bool, *, exact: bool) -> None:
        """Move a V1/V2 stream to a snapshot: which nodes its delta frame holds.

        ``exact``: a keyframe goes out at this snapshot, so the delta holds every node that
        moved at all and what was sent becomes the snapshot itself (the keyframe's content).
        """
        st = self._v[fmt]
        reset = (keyframe_all or st.sent is None or st.topology_version != snap.topology_version
                 or st.ids is None or not np.array_equal(st.ids, snap.ids))
        if reset:
            st.sent, st.ids, st.topology_version = snap.pos.copy(), snap.ids, snap.topology_version
            st.moved = None
        else:
            assert st.sent is not None
            diff = snap.pos - st.sent
            if exact:
                st.moved = np.flatnonzero((diff != 0).any(axis=1))
            else:
                st.moved = np.flatnonzero((diff * diff).sum(axis=1)
                                          > self.settings.deadband ** 2)
            st.sent[st.moved] = snap.pos[st.moved]

    def _deliver_v(self, latest: _Latest, fmt: str, ready: list[Subscription]) -> None:
        snap = latest.snap
        st = self._v[fmt]
        encode = encode_v1 if fmt == "v1" else encode_v2
        if fmt == "v1" and not v1_fits(snap.ids):
            self._stop_v1(ready, snap)
            return
        settled = Flags.SETTLED if snap.settled else 0
        frames = latest.v.setdefault(fmt, {})
        in_step: list[Subscription] = []
        keyed: list[Subscription] = []
        for sub in ready:
            if st.moved is not None and not sub.needs_key and sub.seq == snap.seq - 1:
                in_step.append(sub)
            else:
                if not sub.needs_key and st.moved is not None and not sub.fresh:
                    self.metrics.keyframes_instead_of_delta += 1
                keyed.append(sub)
            sub.needs_key = False
            sub.fresh = False
        if in_step:
            assert st.moved is not None
            if "delta" not in frames:
                frames["delta"] = WireFrame(encode(
                    self._records(snap, st.moved), seq=snap.seq, epoch=self.epoch(),
                    flags=settled, scratch=st.scratch))
            deliver(self._outlets(in_step), [frames["delta"]], self.metrics, fmt,
                    int(st.moved.shape[0]), False)
        if keyed:
            if "key" not in frames:
                # what every client in step holds: the snapshot, within the deadband
                frames["key"] = WireFrame(encode(
                    self._records(snap, None, st.sent), seq=snap.seq, epoch=self.epoch(),
                    flags=Flags.KEYFRAME | settled, scratch=st.scratch))
            deliver(self._outlets(keyed), [frames["key"]], self.metrics, fmt,
                    int(snap.ids.shape[0]), True)

    @staticmethod
    def _outlets(subs: Sequence[Subscription]) -> list[Outlet]:
        return [sub.outlet for sub in subs]

    def _stop_v1(self, subs: list[Subscription], snap: Snapshot) -> None:
        err = ProtocolError(ErrorCode.FORMAT_UNSUPPORTED,
                            f"node id {int(snap.ids.max())} does not fit in V1's 14 bits: "
                            "subscribe to v2 or q")
        for sub in subs:
            self._drop(sub.outlet.client_id)
            sub.outlet.send_json(ErrorMessage.of(err).to_json())

    def _deliver_q(self, latest: _Latest, lane: _Lane, ready: list[Subscription]) -> None:
        snap = latest.snap
        out = latest.q.get(id(lane))
        if out is None:
            tick = lane.tick_seq == snap.seq
            # On a tick, a member that needs a keyframe makes this snapshot the keyframe: it
            # gets one full keyframe, every other member a rebase that costs what a delta costs.
            # Between ticks the lineage stays put, so the members still hold its keyframe.
            force = latest.keyframe_all or (tick and any(s.needs_key for s in ready))
            out = lane.encoder.encode(snap.seq, snap.ids, snap.pos, epoch=self.epoch(),
                                      vel=snap.vel if lane.velocity else None,
                                      settled=snap.settled, force_keyframe=force,
                                      may_rebase=tick)
            latest.q[id(lane)] = out
        n = int(snap.ids.shape[0])
        holders: list[Outlet] = []
        others: list[Outlet] = []
        for sub in ready:
            if out.base_seq is None or (sub.q_key == out.base_seq and not sub.needs_key):
                holders.append(sub.outlet)
            else:
                if not sub.needs_key and not sub.fresh:
                    self.metrics.keyframes_instead_of_delta += 1
                others.append(sub.outlet)
            sub.q_key = out.key_seq
            sub.needs_key = False
            sub.fresh = False
        frame = latest.frame(out.frame)
        if holders:
            deliver(holders, [frame], self.metrics, "q",
                    n if out.base_seq is None else out.moved, out.keyframe)
        if others:
            frames = [latest.frame(out.full_keyframe())]
            if not out.keyframe:
                frames.append(frame)
            deliver(others, frames, self.metrics, "q", n, True)
