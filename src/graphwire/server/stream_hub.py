"""The stream hub: one encode per format and snapshot, the same bytes for every subscriber.

For each snapshot and each format in use the hub encodes at most one keyframe and one delta
frame (docs/protocol.md §4.7, §4) and hands the same frame to every subscriber it fits; the fan-out
(:mod:`.fanout`) builds the WebSocket frame around it once and writes those bytes to each client.
It never awaits a client: a subscriber with anything of its previous frame still waiting to be
written (in its outbox or its socket's buffer) is skipped for this frame (counted) and later
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
stays within the deadband of the layout. A snapshot at which some client is due a keyframe, or
falls due before the next snapshot is expected (a paced client's timer firing between
snapshots), moves every node that moved at all (not only past the deadband), so the keyframe is
then exact.

**Cluster.** The hub takes snapshots from the local simulation (:meth:`StreamHub.on_snapshot`),
or, in a gateway, the frames a simulation encoded and published (:meth:`StreamHub.on_frames`):
the same delivery rules then hand out the published bytes, never re-encoded, so every gateway
sends the same frames. A simulation that publishes asks :meth:`StreamHub.export` for the frames
of every stream its gateways use (``remote_streams``: ``v1``, ``v2`` and one name per ``q`` lane,
see :func:`q_stream_name`), encoded once with those of its own subscribers. A ``q`` lane is a
lineage of the simulation: it ticks there, at its pace, and its frame of every snapshot is
published with whether it was a tick, so a gateway's lane of that pace follows the same lineage
and its members always hold the keyframe the next tick's frame applies to.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from graphwire.cluster.envelope import FrameSet, QFrames, VFrames
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

V_STREAMS = ("v1", "v2")
"""The names of the V1/V2 streams a gateway asks its simulation for."""

SLOW_RECHECK = 0.02
"""Seconds between looks at a skipped (slow) subscriber's socket, to send it the newest frame
soon after it drains."""


def q_stream_name(velocity: bool, interval: float) -> str:
    """The name of a ``q`` lane's stream between a simulation and its gateways: ``q@<ms>``, or
    ``q+v@<ms>`` with velocities, where ``<ms>`` is the lane's pace in whole milliseconds."""
    return f"{'q+v' if velocity else 'q'}@{round(interval * 1000)}"


def parse_q_stream(name: str) -> tuple[bool, float] | None:
    """``(velocity, interval)`` of a ``q`` stream name, or None when it is not one."""
    kind, at, ms = name.partition("@")
    if kind not in ("q", "q+v") or not at or not ms.isdigit():
        return None
    return kind == "q+v", int(ms) / 1000


def is_stream_name(name: str) -> bool:
    """A stream a gateway may ask its simulation for."""
    return name in V_STREAMS or parse_q_stream(name) is not None


class Outlet(FrameSink, Protocol):
    """What the hub needs of a connection."""

    client_id: str

    def position_pending(self) -> bool:
        """A position frame handed over earlier is not yet written to the socket."""

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
    remote: bool = False  # a simulation's gateways use it: kept without local members

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
    # by lane (identity: a lane dropped and a new one at its address never share an entry)
    q: dict[_Lane, QOutput] = field(default_factory=dict)
    wire: dict[int, WireFrame] = field(default_factory=dict)  # by id() of the payload
    moved: dict[str, int | None] = field(default_factory=dict)  # V1/V2: nodes in the delta
    published: bool = False  # frames from a simulation: only those can be sent

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
        # streams a simulation's gateways use: "v1", "v2" and q lane names (q_stream_name)
        self.remote_streams: set[str] = set()
        self._remote_lanes: dict[str, _Lane] = {}

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
        if not self._key_from_settled(sub):
            self.request_snapshot()
        return sub

    def unsubscribe(self, outlet: Outlet) -> None:
        """Stop the stream of a connection."""
        self._drop(outlet.client_id)

    def _drop(self, client_id: str) -> None:
        sub = self.subs.pop(client_id, None)
        if sub is not None and sub.lane is not None:
            sub.lane.members -= 1
            if sub.lane.members <= 0 and not sub.lane.remote:
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
        if not self._key_from_settled(sub):
            self.request_snapshot()
        return True

    def _key_from_settled(self, sub: Subscription) -> bool:
        """Send a subscriber that needs a keyframe the newest snapshot's now, if the layout
        has settled (it is what the simulation would publish again) and that snapshot has the
        subscriber's stream. Asking for a snapshot instead would send every other subscriber
        an empty frame: once settled, the stream is only a keyframe every interval (§8)."""
        latest = self._latest_frames
        if latest is None or not self.settled:
            return False
        if latest.published and not self._has_published(latest, sub):
            return False  # a gateway: the simulation must publish this stream first
        sub.seq = None  # a client asking for a keyframe may hold this snapshot already
        self._deliver_newest(latest, [sub])
        return True

    def paths_changed(self) -> None:
        """The shortest paths changed: V1/V2 records carry them, so the newest snapshot's
        frames are encoded again when next sent (a keyframe of it sent later shows the new
        paths, as the SSSP frame does), and a snapshot is asked for, so that the frames a
        simulation publishes to its gateways carry them at once too."""
        latest = self._latest_frames
        if latest is not None and not latest.published:
            latest.v.clear()
        self.request_snapshot()

    def request_keyframes(self) -> None:
        """Send every subscriber a keyframe with the next snapshot (published at once)."""
        for sub in self.subs.values():
            sub.needs_key = True
        if self.subs:
            self.request_snapshot()

    # -- snapshots ---------------------------------------------------------------------------
    def on_snapshot(self, snap: Snapshot, keyframe_all: bool) -> None:
        """Encode a snapshot once per format in use and deliver it to every ready subscriber.

        Subscribers not due yet (their own pace) or slow are caught up with the newest snapshot
        as soon as they are: at their due time, or when their socket drains.
        """
        self.metrics.snapshots += 1
        latest = self._latest_frames = _Latest(snap, keyframe_all)
        now = self.clock()
        period = self.stream_interval()
        tolerance = 0.5 * period
        self._sync_remote_lanes()
        self._tick(latest, now, tolerance)
        for fmt in V_STREAMS:
            subs = [s for s in self.subs.values() if s.format == fmt]
            if subs or fmt in self.remote_streams:
                # a gateway's client due a keyframe is not known here: its keyframe is what
                # was last sent, within the deadband, like any in-step client's view
                self._advance_v(snap, fmt, keyframe_all,
                                exact=any(self._wants_v_key(s, snap.seq, now, tolerance, period)
                                          for s in subs))
                moved = self._v[fmt].moved
                latest.moved[fmt] = None if moved is None else int(moved.shape[0])
            else:
                self._v[fmt] = _VStream()
        self._deliver(list(self.subs.values()), now, tolerance)

    # -- cluster -----------------------------------------------------------------------------
    def _sync_remote_lanes(self) -> None:
        """Keep a lane for every ``q`` stream in ``remote_streams``, and only those."""
        wanted: dict[str, _Lane] = {}
        for name in sorted(self.remote_streams):
            pace = parse_q_stream(name)
            if pace is not None:
                lane = self._remote_lanes.get(name) or self._lane_for(*pace)
                lane.remote = True
                wanted[name] = lane
        keep = set(wanted.values())
        for lane in self._remote_lanes.values():
            if lane not in keep:
                lane.remote = False
                if lane.members <= 0:
                    self._lanes.pop((lane.velocity, lane.interval), None)
        self._remote_lanes = wanted

    def export(self, epoch: int, rate_hz: float) -> FrameSet | None:
        """The newest snapshot with the frames of every stream in ``remote_streams`` (V1/V2
        also when local subscribers use them), each encoded at most once, for publishing.

        Each ``q`` lane's frame is published at every snapshot with whether the lane ticked
        there, so a gateway serves its members and its catch-ups from the same lineage.
        Called after :meth:`on_snapshot` of that snapshot, which synced and ticked the lanes."""
        latest = self._latest_frames
        if latest is None:
            return None
        snap = latest.snap  # on_snapshot synced the remote lanes and ticked them already
        out = FrameSet(snap.seq, epoch, snap.topology_version, snap.settled,
                       snap.kinetic_energy, latest.keyframe_all, rate_hz, snap.ids,
                       snap.agent, snap.pos)
        for fmt in V_STREAMS:
            if fmt not in latest.moved or (fmt == "v1" and not v1_fits(snap.ids)):
                continue
            frames = self._v_frames(latest, fmt, delta=latest.moved[fmt] is not None, key=True)
            delta = frames.get("delta")
            out.v[fmt] = VFrames(frames["key"].payload, None if delta is None else delta.payload,
                                 latest.moved[fmt] or 0)
        for name, lane in self._remote_lanes.items():
            q = self._lane_output(latest, lane, force=latest.keyframe_all)
            out.q[name] = QFrames(q.frame, q.base_seq, q.key_seq, q.keyframe, q.moved,
                                  q.frame if q.base_seq is None else q.full_keyframe(),
                                  lane.tick_seq == snap.seq)
        return out

    @property
    def settled(self) -> bool:
        """Whether the newest snapshot is of a settled layout."""
        return self._latest_frames is not None and self._latest_frames.snap.settled

    def export_added(self, epoch: int, rate_hz: float) -> FrameSet | None:
        """The newest snapshot again, with the streams added to ``remote_streams`` since it
        was exported: a keyframe of each new stream (a new lane ticks at it), the same bytes
        for the others. A gateway sends a snapshot only to clients that have not had it, so
        on a settled layout a new stream costs no one else a frame (publishing the next
        snapshot would send everyone an empty one, against §8)."""
        latest = self._latest_frames
        if latest is None:
            return None
        self._sync_remote_lanes()
        now = self.clock()
        for lane in self._remote_lanes.values():
            if lane not in latest.q:  # new: every other remote lane was exported already
                lane.tick_seq = latest.snap.seq
                lane.next_tick = now + lane.interval
        for fmt in V_STREAMS:
            if fmt in self.remote_streams and fmt not in latest.moved:
                # a new stream starts from this snapshot: its keyframe alone
                self._advance_v(latest.snap, fmt, True, exact=True)
                latest.moved[fmt] = None
        return self.export(epoch, rate_hz)

    def on_frames(self, fs: FrameSet, snap: Snapshot) -> None:
        """A gateway's snapshot: the frames a simulation published (``snap`` is its layout).
        Delivered by the same rules as :meth:`on_snapshot`, never re-encoded; each local lane
        takes the published frame of its pace and ticks when the simulation's lane did."""
        self.metrics.snapshots += 1
        latest = self._latest_frames = _Latest(snap, fs.keyframe_all, published=True)
        now = self.clock()
        for fmt, vf in fs.v.items():
            latest.v[fmt] = {"key": WireFrame(vf.key)}
            if vf.delta is not None:
                latest.v[fmt]["delta"] = WireFrame(vf.delta)
            latest.moved[fmt] = None if vf.delta is None else vf.moved
        for lane in self._lanes.values():
            qf = fs.q.get(q_stream_name(lane.velocity, lane.interval))
            if qf is None:
                continue
            latest.q[lane] = QOutput(fs.seq, qf.frame, qf.base_seq, qf.key_seq,
                                     qf.keyframe, qf.moved, _constant(qf.full))
            if qf.tick or fs.keyframe_all:
                lane.tick_seq = fs.seq
                lane.next_tick = now + lane.interval
        self._deliver(list(self.subs.values()), now, 0.5 * self.stream_interval())

    def streams_in_use(self) -> set[str]:
        """The streams local subscribers use: ``v1``, ``v2`` and their ``q`` lanes' names."""
        # a q stream's name comes from its lane: named once per lane, not per subscriber
        return {s.format for s in self.subs.values() if s.lane is None} | {
            q_stream_name(lane.velocity, lane.interval)
            for lane in self._lanes.values() if lane.members > 0}

    def missing_streams(self) -> set[str]:
        """Streams local subscribers use that the newest frames do not carry (a gateway asks
        its simulation for them)."""
        latest = self._latest_frames
        want = self.streams_in_use()
        if latest is None:
            return want
        have = set(latest.v) | {q_stream_name(lane.velocity, lane.interval)
                                for lane in self._lanes.values() if lane in latest.q}
        return want - have

    def restart(self) -> None:
        """A new epoch (another simulation took over): every subscriber needs a keyframe,
        whatever seq it saw last, no old frame is sent again, and every lane starts over."""
        self._latest_frames = None
        self._v = {fmt: _VStream() for fmt in V_STREAMS}
        for lane in self._lanes.values():
            lane.tick_seq = -1
            lane.next_tick = 0.0
        for sub in self.subs.values():
            sub.needs_key = True
            sub.seq = None
            sub.q_key = None

    def catch_up(self) -> None:
        """Deliver the newest snapshot to subscribers that were waiting and now are ready."""
        self._timer = None
        latest = self._latest_frames
        if latest is not None:
            self._deliver_newest(
                latest, [s for s in self.subs.values() if s.seq != latest.snap.seq])

    def _deliver_newest(self, latest: _Latest, subs: list[Subscription]) -> None:
        """Deliver the newest snapshot, between snapshots, to those of ``subs`` that are
        ready (lanes due tick at it first)."""
        now = self.clock()
        tolerance = 0.5 * self.stream_interval()
        if not latest.published:  # a gateway's lanes tick with the simulation's
            self._tick(latest, now, tolerance)
        self._deliver(subs, now, tolerance)

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

    def _wants_v_key(self, sub: Subscription, seq: int, now: float, tolerance: float,
                     period: float) -> bool:
        """A V subscriber that will be sent snapshot ``seq`` as a keyframe if it can take it:
        now, or when its pace falls due before the next snapshot is expected (``period`` on)."""
        return sub.needs_key or (sub.seq != seq - 1 and self._due(sub, now + period, tolerance))

    def _deliver(self, subs: list[Subscription], now: float, tolerance: float) -> None:
        latest = self._latest_frames
        if latest is None:
            return
        seq = latest.snap.seq
        later: list[float] = []
        v_ready: dict[str, list[Subscription]] = {}
        q_ready: dict[_Lane, list[Subscription]] = {}
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
            if latest.published and not self._has_published(latest, sub):
                continue  # not published yet: the gateway asked for it; the next one will be
            if not self._writable(sub, now):
                later.append(now + SLOW_RECHECK)
                continue
            if sub.lane is not None:
                q_ready.setdefault(sub.lane, []).append(sub)
            else:
                v_ready.setdefault(sub.format, []).append(sub)
        for fmt, ready in v_ready.items():
            self._deliver_v(latest, fmt, ready)
        for lane, ready in q_ready.items():
            self._deliver_q(latest, lane, ready)
        for group in (*v_ready.values(), *q_ready.values()):
            for sub in group:
                sub.next_due = now + sub.interval
                sub.seq = seq
        if later:
            self._schedule(min(later))

    @staticmethod
    def _has_published(latest: _Latest, sub: Subscription) -> bool:
        if sub.lane is not None:
            return sub.lane in latest.q
        # V1 on a graph past its ids: delivered, to be told so
        return sub.format in latest.v or (sub.format == "v1" and not v1_fits(latest.snap.ids))

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
        if out.position_pending():
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
        if fmt == "v1" and not v1_fits(snap.ids):
            self._stop_v1(ready, snap)
            return
        moved = latest.moved.get(fmt)
        in_step: list[Subscription] = []
        keyed: list[Subscription] = []
        for sub in ready:
            if moved is not None and not sub.needs_key and sub.seq == snap.seq - 1:
                in_step.append(sub)
            else:
                if not sub.needs_key and moved is not None and not sub.fresh:
                    self.metrics.keyframes_instead_of_delta += 1
                keyed.append(sub)
            sub.needs_key = False
            sub.fresh = False
        if in_step:
            assert moved is not None
            frames = self._v_frames(latest, fmt, delta=True, key=False)
            deliver(self._outlets(in_step), [frames["delta"]], self.metrics, fmt, moved, False)
        if keyed:
            frames = self._v_frames(latest, fmt, delta=False, key=True)
            deliver(self._outlets(keyed), [frames["key"]], self.metrics, fmt,
                    int(snap.ids.shape[0]), True)

    def _v_frames(self, latest: _Latest, fmt: str, *, delta: bool,
                  key: bool) -> dict[str, WireFrame]:
        """The delta frame and/or the keyframe of a V1/V2 stream for the newest snapshot, each
        encoded on first use and only when asked for (published frames are there already)."""
        snap = latest.snap
        st = self._v[fmt]
        encode = encode_v1 if fmt == "v1" else encode_v2
        settled = Flags.SETTLED if snap.settled else 0
        frames = latest.v.setdefault(fmt, {})
        if delta and "delta" not in frames:
            assert st.moved is not None
            frames["delta"] = WireFrame(encode(
                self._records(snap, st.moved), seq=snap.seq, epoch=self.epoch(),
                flags=settled, scratch=st.scratch))
        if key and "key" not in frames:
            # what every client in step holds: the snapshot, within the deadband
            frames["key"] = WireFrame(encode(
                self._records(snap, None, st.sent), seq=snap.seq, epoch=self.epoch(),
                flags=Flags.KEYFRAME | settled, scratch=st.scratch))
        return frames

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
        # On a tick, a member that needs a keyframe makes this snapshot the keyframe: it gets
        # one full keyframe, every other member a rebase that costs what a delta costs.
        force = latest.keyframe_all or (lane.tick_seq == snap.seq
                                        and any(s.needs_key for s in ready))
        out = self._lane_output(latest, lane, force=force)
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

    def _lane_output(self, latest: _Latest, lane: _Lane, *, force: bool) -> QOutput:
        """A lane's frames for the newest snapshot, encoded on first use. Between its ticks
        the lineage stays put, so its members still hold its keyframe at the next tick."""
        out = latest.q.get(lane)
        if out is None:
            snap = latest.snap
            tick = lane.tick_seq == snap.seq
            out = lane.encoder.encode(snap.seq, snap.ids, snap.pos, epoch=self.epoch(),
                                      vel=snap.vel if lane.velocity else None,
                                      settled=snap.settled, force_keyframe=force and tick,
                                      may_rebase=tick)
            latest.q[lane] = out
        return out


def _constant(data: bytes) -> Callable[[], bytes]:
    """A callable that returns ``data`` (a published full keyframe, already encoded)."""
    return lambda: data
