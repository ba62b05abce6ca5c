"""Snapshots from the simulation thread to the event loop, newest first.

The simulation publishes at the stream rate whatever the loop is doing. When one snapshot's
fan-out takes the loop longer than the interval between snapshots (thousands of clients on a
loaded machine), handing every snapshot over would queue them behind one another: each client
would be sent every stale snapshot in turn, later and later. Instead a snapshot still waiting
for the loop is replaced by a newer one of the same topology, so the loop always sends the
newest layout and its latency stays one fan-out at most. Skipping snapshots is safe: every
position frame is coded against what its client holds (a keyframe, or the last state sent), not
against the previous snapshot.

A snapshot is never merged across a topology change: the ``graph_changed`` that announces a
change is scheduled on the loop before the first snapshot showing it (docs/protocol.md §6), and
the snapshots on either side of it keep their order around it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

from graphwire.simulation import Snapshot

from .metrics import Metrics

Deliver = Callable[[Snapshot, bool], None]
"""Called on the loop with (snapshot, keyframe for everyone), in publish order."""


class SnapshotHandover:
    """Hands snapshots to ``deliver`` on ``loop``, replacing one not yet taken by a newer one."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Deliver,
                 metrics: Metrics) -> None:
        self.loop = loop
        self.deliver = deliver
        self.metrics = metrics
        self._lock = threading.Lock()
        self._waiting: deque[tuple[Snapshot, bool]] = deque()

    def publish(self, snap: Snapshot, keyframe_all: bool) -> None:
        """Hand ``snap`` over (any thread). A waiting snapshot of the same topology is replaced
        (a keyframe it asked for is kept); otherwise the loop is asked to take this one."""
        with self._lock:
            if self._waiting and self._waiting[-1][0].topology_version == snap.topology_version:
                keyframe_all = keyframe_all or self._waiting[-1][1]
                self._waiting[-1] = (snap, keyframe_all)
                self.metrics.snapshots_coalesced += 1
                return
            self._waiting.append((snap, keyframe_all))
        self.loop.call_soon_threadsafe(self._take)

    def _take(self) -> None:
        # one call per appended entry, scheduled in the same order: FIFO
        with self._lock:
            snap, keyframe_all = self._waiting.popleft()
        self.deliver(snap, keyframe_all)
