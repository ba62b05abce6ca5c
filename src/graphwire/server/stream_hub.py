"""The stream hub: one encode per format and snapshot, the same bytes for every subscriber.

For each snapshot and each format in use the hub encodes at most one keyframe and one delta
frame (PROTOCOL.md §3.3, §3.4) and hands the same ``bytes`` object to every subscriber it fits.
It never awaits a client: a subscriber whose previous frame is still queued, or whose socket
holds more than the high-water mark, is skipped for this frame (counted) and later sent what the
contract says (V1/V2: the keyframe of that snapshot; ``q``: the newest frame, preceded by the
full keyframe when it does not hold the frame's keyframe). A subscriber skipped for longer than
``slowClientTimeoutMs`` is closed with 1013. Each subscriber is paced by its own ``intervalMs``.

The hub takes snapshots from the local simulation today; it only needs ``Snapshot`` values, so
tomorrow it can take them from a subscription.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from graphwire.protocol.control import ErrorMessage, Format
from graphwire.protocol.errors import ErrorCode, ProtocolError
from graphwire.protocol.header import Flags
from graphwire.protocol.positions import FrameBuffer, NodeRecords, encode_v1, encode_v2, v1_fits
from graphwire.protocol.quantized import QOutput, QStreamEncoder
from graphwire.simulation import ShortestPaths, Snapshot

from .live_settings import HubSettings
from .metrics import Metrics


class Outlet(Protocol):
    """What the hub needs of a connection."""

    client_id: str

    def position_pending(self) -> bool:
        """A position frame handed over earlier is not yet written to the socket."""

    def write_buffer(self) -> int:
        """Bytes waiting in the socket's write buffer."""

    def offer_frames(self, frames: list[bytes], fmt: str, nodes: int, keyframe: bool) -> None:
        """Queue position frames (already encoded, shared)."""

    def send_json(self, message: dict[str, object]) -> None:
        """Queue a control message."""

    def send_bytes(self, data: bytes) -> None:
        """Queue a binary message that is not a position frame (SSSP)."""

    def close_slow(self) -> None:
        """Close with 1013: too slow."""


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
    v: dict[str, dict[str, bytes]] = field(default_factory=dict)
    q: dict[bool, QOutput] = field(default_factory=dict)


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
        self._q: dict[bool, QStreamEncoder] = {}
        self._latest_frames: _Latest | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -- subscriptions -----------------------------------------------------------------------
    def subscribe(self, outlet: Outlet, fmt: Format, velocity: bool,
                  interval: float) -> Subscription:
        """Start (or replace) the stream of a connection; it gets a keyframe next."""
        sub = Subscription(outlet, fmt, velocity, interval)
        self.subs[outlet.client_id] = sub
        self.request_snapshot()
        return sub

    def unsubscribe(self, outlet: Outlet) -> None:
        """Stop the stream of a connection."""
        self.subs.pop(outlet.client_id, None)

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
        self._latest_frames = _Latest(snap, keyframe_all)
        for fmt in ("v1", "v2"):
            if any(s.format == fmt for s in self.subs.values()):
                self._advance_v(snap, fmt, keyframe_all)
            else:
                self._v[fmt] = _VStream()
        self._deliver(list(self.subs.values()), forced_keyframes=True)

    def catch_up(self) -> None:
        """Deliver the newest snapshot to subscribers that were waiting and now are ready."""
        self._timer = None
        if self._latest_frames is not None:
            waiting = [s for s in self.subs.values() if s.seq != self._latest_frames.snap.seq]
            self._deliver(waiting, forced_keyframes=False)

    def drained(self, client_id: str) -> None:
        """A connection wrote its queued position frames: it may be behind."""
        sub = self.subs.get(client_id)
        latest = self._latest_frames
        if sub is not None and latest is not None and sub.seq != latest.snap.seq:
            self._deliver([sub], forced_keyframes=False)

    def _deliver(self, subs: list[Subscription], *, forced_keyframes: bool) -> None:
        latest = self._latest_frames
        if latest is None:
            return
        snap = latest.snap
        now = self.clock()
        tolerance = 0.5 * self.stream_interval()
        later: list[float] = []
        groups: dict[tuple[str, bool], list[Subscription]] = {}
        for sub in subs:
            if sub.seq == snap.seq:
                continue
            if not sub.needs_key and now + tolerance < sub.next_due:
                later.append(sub.next_due - tolerance)  # not due yet at its own pace
                continue
            if not self._writable(sub, now):
                continue
            groups.setdefault((sub.format, sub.velocity), []).append(sub)
        for (fmt, velocity), ready in groups.items():
            if fmt == "q":
                self._deliver_q(latest, velocity, ready, forced_keyframes)
            else:
                self._deliver_v(latest, fmt, ready)
            for sub in ready:
                sub.next_due = now + sub.interval
                sub.seq = snap.seq
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
                self.subs.pop(out.client_id, None)
                out.close_slow()
            return False
        sub.slow_since = None
        return True

    def _records(self, snap: Snapshot, idx: np.ndarray | None) -> NodeRecords:
        sssp = self.sssp()
        ids = snap.ids if idx is None else snap.ids[idx]
        known = ids < sssp.distance.shape[0]
        safe = np.where(known, ids, 0)
        dist = np.where(known, sssp.distance[safe], np.float32(np.inf)).astype(np.float32)
        parent = np.where(known, sssp.parent[safe], -1).astype(np.int32)
        pos = snap.pos if idx is None else snap.pos[idx]
        vel = snap.vel if idx is None else snap.vel[idx]
        agent = snap.agent if idx is None else snap.agent[idx]
        return NodeRecords(ids, agent, pos, vel, dist, parent)

    def _advance_v(self, snap: Snapshot, fmt: str, keyframe_all: bool) -> None:
        """Move a V1/V2 stream to a snapshot: which nodes its delta frame holds."""
        st = self._v[fmt]
        reset = (keyframe_all or st.sent is None or st.topology_version != snap.topology_version
                 or st.ids is None or not np.array_equal(st.ids, snap.ids))
        if reset:
            st.sent, st.ids, st.topology_version = snap.pos.copy(), snap.ids, snap.topology_version
            st.moved = None
        else:
            assert st.sent is not None
            diff = snap.pos - st.sent
            st.moved = np.flatnonzero((diff * diff).sum(axis=1) > self.settings.deadband ** 2)
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
        for sub in ready:
            in_sync = (st.moved is not None and not sub.needs_key
                       and sub.seq == snap.seq - 1)
            if in_sync:
                assert st.moved is not None
                if "delta" not in frames:
                    frames["delta"] = encode(self._records(snap, st.moved), seq=snap.seq,
                                             epoch=self.epoch(), flags=settled,
                                             scratch=st.scratch)
                sub.outlet.offer_frames([frames["delta"]], fmt, int(st.moved.shape[0]), False)
            else:
                if not sub.needs_key and st.moved is not None and not sub.fresh:
                    self.metrics.keyframes_instead_of_delta += 1
                if "key" not in frames:
                    frames["key"] = encode(self._records(snap, None), seq=snap.seq,
                                           epoch=self.epoch(), flags=Flags.KEYFRAME | settled,
                                           scratch=st.scratch)
                sub.outlet.offer_frames([frames["key"]], fmt, int(snap.ids.shape[0]), True)
            sub.needs_key = False
            sub.fresh = False

    def _stop_v1(self, subs: list[Subscription], snap: Snapshot) -> None:
        err = ProtocolError(ErrorCode.FORMAT_UNSUPPORTED,
                            f"node id {int(snap.ids.max())} does not fit in V1's 14 bits: "
                            "subscribe to v2 or q")
        for sub in subs:
            self.subs.pop(sub.outlet.client_id, None)
            sub.outlet.send_json(ErrorMessage.of(err).to_json())

    def _deliver_q(self, latest: _Latest, velocity: bool, ready: list[Subscription],
                   at_snapshot: bool) -> None:
        snap = latest.snap
        out = latest.q.get(velocity)
        if out is None:
            enc = self._q.get(velocity)
            if enc is None:
                enc = self._q[velocity] = QStreamEncoder(velocity=velocity)
            # Rebase when a client needs a keyframe: those get one full keyframe of this seq,
            # everyone else a frame that costs what a delta costs.
            force = latest.keyframe_all or (at_snapshot and any(s.needs_key for s in ready))
            out = enc.encode(snap.seq, snap.ids, snap.pos, epoch=self.epoch(),
                             vel=snap.vel if velocity else None, settled=snap.settled,
                             force_keyframe=force)
            latest.q[velocity] = out
        n = int(snap.ids.shape[0])
        for sub in ready:
            if out.base_seq is None or (sub.q_key == out.base_seq and not sub.needs_key):
                sub.outlet.offer_frames([out.frame], "q", n if out.base_seq is None
                                        else out.moved, out.keyframe)
            else:
                if not sub.needs_key and not sub.fresh:
                    self.metrics.keyframes_instead_of_delta += 1
                frames = [out.full_keyframe()]
                if not out.keyframe:
                    frames.append(out.frame)
                sub.outlet.offer_frames(frames, "q", n, True)
            sub.q_key = out.key_seq
            sub.needs_key = False
            sub.fresh = False
