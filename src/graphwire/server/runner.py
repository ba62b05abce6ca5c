"""The simulation thread: physics in real time, snapshots at the stream's adaptive cadence.

Physics steps at ``1/dt`` steps a second (real time; ``physics_hz`` caps it lower), never more
than ``iterations`` steps behind. Snapshots are published at the stream rate: 5 Hz by default,
rising towards 60 Hz while many nodes move fast or a user drags nodes, smoothed per 200 ms
(docs/protocol.md §10). Once the layout is settled (or physics is disabled) the thread sleeps and
publishes only a keyframe every ``settledKeyframeIntervalMs``; a parameter change, pin, drag or
topology change wakes it. ``request_snapshot`` publishes one as soon as possible (a client needs
a keyframe).

Each snapshot is handed to ``publish`` while the simulation lock is held, so a command that
changed the graph under the same lock and scheduled its ``graph_changed`` first is always
announced before the first frame that shows the change.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import numpy as np

from graphwire.simulation import Simulation, Snapshot

from .live_settings import Cadence

Publish = Callable[[Snapshot, bool], None]
"""Called with (snapshot, keyframe for everyone) in the simulation thread, lock held."""


INTERACTION_HOLD = 1.0
"""Seconds after a drag or pin during which the stream runs at the maximum rate."""


class SimulationRunner:
    """Steps a :class:`Simulation` in a thread and publishes its snapshots."""

    def __init__(self, sim: Simulation, publish: Publish, cadence: Cadence | None = None, *,
                 physics_hz: float | None = None) -> None:
        self.sim = sim
        self.publish = publish
        self.cadence = cadence or Cadence.from_settings()
        self.physics_hz = physics_hz
        self.rate = self.cadence.min_rate
        self._wake = threading.Event()
        self._stop = False
        self._request = False
        self._last_interaction = -1e9
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        sim.on_wake = self._wake.set

    # -- control (any thread) ------------------------------------------------------------
    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._run, name="graphwire-simulation",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def request_snapshot(self) -> None:
        """Publish a snapshot as soon as possible (even when settled)."""
        self._request = True
        self._wake.set()

    def interaction(self) -> None:
        """A user moved nodes: run the stream at the maximum rate for a moment."""
        self._last_interaction = time.monotonic()

    # -- the thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # surfaced by the server's health check
            self.error = exc
            raise

    def _loop(self) -> None:
        sim = self.sim
        last_publish = -1e9
        next_publish = 0.0
        next_step = time.monotonic()
        steps_since = 0
        was_idle = False
        while not self._stop:
            now = time.monotonic()
            with sim.lock:
                idle = sim.settled or not sim.params.enabled
                iterations = sim.params.iterations
                step_interval = 1.0 / (self.physics_hz or 1.0 / sim.params.dt)
            if idle:
                due = last_publish + self.cadence.settled_keyframe_interval
                if not was_idle or self._request:
                    # the moment it settles (the frame carries the settled flag), or on request
                    was_idle = True
                    last_publish = self._publish(now, last_publish, keyframe=False)
                elif now >= due:
                    last_publish = self._publish(now, last_publish, keyframe=True)
                else:
                    self._wake.wait(due - now)
                    self._wake.clear()
                    next_step = time.monotonic()
                continue
            was_idle = False
            if now < next_step and not self._request:
                self._wake.wait(next_step - now)
                self._wake.clear()
                continue
            sim.step(1)
            steps_since += 1
            now = time.monotonic()
            next_step = self._next_step(next_step, now, step_interval, iterations)
            # publish when due, or when the next step would come later than the due time
            # (physics slower than the stream must not halve the stream rate)
            due = now >= next_publish or now + 0.5 * step_interval >= next_publish
            if due or self._request or steps_since >= iterations:
                last_publish = self._publish(now, last_publish, keyframe=False)
                next_publish = self._next_publish(next_publish, now)
                steps_since = 0

    @staticmethod
    def _next_step(planned: float, now: float, interval: float, iterations: int) -> float:
        """When the step after one taken ``now`` (planned for ``planned``) is due: one interval
        on, never further behind real time than ``iterations`` steps, and never more than one
        interval ahead of it. A step taken early (a snapshot was requested: every subscriber
        asks for one) must not push the schedule on, or a burst of requests would stall the
        physics, and the stream, for as many intervals as there were requests."""
        return min(max(planned + interval, now - iterations * interval), now + interval)

    def _next_publish(self, due: float, now: float) -> float:
        """When the next snapshot is due after one published ``now`` (it was due at ``due``).

        The cadence keeps its beat: a snapshot that went out late (the thread waited for a
        core or the GIL) does not push the next one back, or each late one would cost the
        stream a frame; behind by a whole period or more, the beat starts again from now. One
        that went out early (requested) is never followed later than a period on."""
        period = 1.0 / self.rate
        following = min(due, now) + period
        return following if following > now else now + period

    def _publish(self, now: float, last: float, *, keyframe: bool) -> float:
        self._request = False
        with self.sim.lock:
            snap = self.sim.publish()
            self.publish(snap, keyframe)
        self._adapt(snap, now - last)
        return now

    def _adapt(self, snap: Snapshot, elapsed: float) -> None:
        c = self.cadence
        fast = False
        if snap.vel.shape[0]:
            speeds = np.sqrt((snap.vel.astype(np.float64) ** 2).sum(axis=1))
            fast = float((speeds > c.motion_speed).mean()) > c.motion_threshold
        dragging = time.monotonic() - self._last_interaction < INTERACTION_HOLD
        target = c.max_rate if dragging or (fast and not snap.settled) else c.min_rate
        keep = c.motion_damping ** (min(max(elapsed, 0.0), 10.0) / 0.2)
        rate = target + (self.rate - target) * keep
        self.rate = min(max(rate, min(c.min_rate, c.max_rate)), max(c.min_rate, c.max_rate))
        if not math.isfinite(self.rate):
            self.rate = c.min_rate
