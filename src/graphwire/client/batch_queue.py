"""The BatchQueue: node positions sent to the server as CLIENT_POSITIONS batches (kind 0x20).

docs/protocol.md §4.8 and §10, as the browser client's ``net/batch_queue.js`` does it:

- batches of at most ``batch_size`` (50), flushed every ``flush_interval`` (200 ms), or at once
  when a whole batch is waiting;
- at most ``max_queued`` (1000) updates queued: the newest update of a node replaces its older
  one (keeping its place); past the bound the oldest is dropped and counted;
- agent nodes go first;
- invalid items (not finite, outside ±bounds, unknown node) are rejected before queuing and
  reported (the return value, the ``rejected`` counter and ``on_reject``);
- every batch must be answered by ``positions_ack``: a batch that is not (``ack_timeout``, or the
  send function refused it) or is refused as a whole for ``rate_limited`` is retried with
  exponential backoff (``retry_base`` 0.25 s doubling to ``retry_max`` 8 s, ``max_attempts`` 6
  sends of each update), unless a newer update of the same node was made since (queued, sent or
  answered: an old position never overwrites a newer one); ``stale_epoch`` is not retried.
- a batch holds one kind of update (move, pin or release), as its header flags say.

It needs only a send function ``send(frame: bytes, batch: int) -> bool`` (False: cannot send
now) and the asyncio loop it runs in; the client wires it to its connection and feeds it every
``positions_ack`` through :meth:`on_ack`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from graphwire.protocol.client_positions import encode_client_positions

Mode = Literal["move", "pin", "release"]
MODES: tuple[Mode, ...] = ("move", "pin", "release")


@dataclass(slots=True)
class _Item:
    id: int
    pos: tuple[float, float, float]
    mode: Mode
    attempts: int = 0


@dataclass(slots=True)
class _Inflight:
    items: list[_Item]
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class Counters:
    """What the queue did. ``queued``: updates accepted into the queue (replacements too);
    ``replaced``: of those, ones that replaced an older update of the same node; ``sent``:
    updates handed to the send function (retries too); ``acked``: updates in batches the server
    answered (``accepted`` of them taken, ``rejected_by_server`` not); ``rejected``: refused
    before queuing; ``retried``: updates queued again after a failed batch; ``dropped``: pushed
    out by the bound; ``failed``: given up after ``max_attempts``."""

    queued: int = 0
    replaced: int = 0
    sent: int = 0
    batches: int = 0
    acked: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_by_server: int = 0
    retried: int = 0
    dropped: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(slots=True)
class BatchQueue:
    """Coalescing, prioritising, validating, retrying sender of node positions."""

    send: Callable[[bytes, int], bool]
    epoch: Callable[[], int] = lambda: 0
    is_agent: Callable[[int], bool] = lambda _id: False
    is_known: Callable[[int], bool] = lambda _id: True
    bounds: Callable[[], float] = lambda: math.inf
    batch_size: int = 50
    flush_interval: float = 0.2
    max_queued: int = 1000
    ack_timeout: float = 3.0
    retry_base: float = 0.25
    retry_max: float = 8.0
    max_attempts: int = 6
    on_reject: Callable[[int, str], object] | None = None
    counters: Counters = field(default_factory=Counters)
    _queued: dict[int, _Item] = field(default_factory=dict)
    _inflight: dict[int, _Inflight] = field(default_factory=dict)
    _next_batch: int = 1
    _newest: dict[int, _Item] = field(default_factory=dict)  # node -> its newest update
    _flush_timer: asyncio.TimerHandle | None = None
    _retry_timers: set[asyncio.TimerHandle] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_queued < 1 or self.max_attempts < 1:
            raise ValueError("batch_size, max_queued and max_attempts must be at least 1")

    # -- adding ------------------------------------------------------------------------------
    def enqueue(self, node_id: int, x: float, y: float, z: float,
                mode: Mode = "move") -> str | None:
        """Queue an update of one node; None when queued, else why it was rejected
        (``not_finite``, ``out_of_bounds``, ``unknown_node``, ``invalid_id``)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        try:
            item = _Item(int(node_id), (float(x), float(y), float(z)), mode)
        except (TypeError, ValueError):
            return self._reject(-1, "not_finite")
        reason = self._add(item, fresh=True)
        if reason is None:
            self._newest[item.id] = item
        return reason

    def _reject(self, node_id: int, reason: str) -> str:
        self.counters.rejected += 1
        if self.on_reject is not None:
            self.on_reject(node_id, reason)
        return reason

    def validate(self, node_id: int, pos: tuple[float, float, float]) -> str | None:
        """Why an update would be rejected (§4.8 checks), or None."""
        if not 0 <= node_id < 2**30:
            return "invalid_id"
        if not all(math.isfinite(c) for c in pos):
            return "not_finite"
        b = self.bounds()
        if any(abs(c) > b for c in pos):
            return "out_of_bounds"
        if not self.is_known(node_id):
            return "unknown_node"
        return None

    def _add(self, item: _Item, *, fresh: bool) -> str | None:
        reason = self.validate(item.id, item.pos)
        if reason is not None:
            return self._reject(item.id, reason)
        if fresh:
            self.counters.queued += 1
        if item.id in self._queued:
            self.counters.replaced += 1
            self._queued[item.id] = item  # an existing key keeps its place
        else:
            self._queued[item.id] = item
            if len(self._queued) > self.max_queued:
                del self._queued[next(iter(self._queued))]
                self.counters.dropped += 1
        if len(self._queued) >= self.batch_size:
            self.flush()
        else:
            self._schedule_flush()
        return None

    def _schedule_flush(self) -> None:
        if self._flush_timer is not None or not self._queued:
            return
        loop = asyncio.get_running_loop()
        self._flush_timer = loop.call_later(self.flush_interval, self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_timer = None
        self.flush()

    # -- sending -----------------------------------------------------------------------------
    def flush(self) -> None:
        """Send everything queued now, in batches."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        while self._queued:
            self._send_batch(self._take_batch())

    def _take_batch(self) -> list[_Item]:
        ordered = list(self._queued.values())
        agents = [it for it in ordered if self.is_agent(it.id)]
        others = [it for it in ordered if not self.is_agent(it.id)]
        first = (agents + others)[0].mode
        batch: list[_Item] = []
        for it in agents + others:
            if it.mode != first:
                continue
            batch.append(it)
            del self._queued[it.id]
            if len(batch) == self.batch_size:
                break
        return batch

    def _send_batch(self, items: list[_Item]) -> None:
        batch = self._next_batch
        self._next_batch = (self._next_batch + 1) & 0xFFFFFFFF or 1
        mode = items[0].mode
        frame = encode_client_positions([it.id for it in items], [it.pos for it in items],
                                        batch=batch, epoch=self.epoch(), pin=mode == "pin",
                                        release=mode == "release")
        for it in items:
            it.attempts += 1
        entry = _Inflight(items)
        self._inflight[batch] = entry
        self.counters.batches += 1
        self.counters.sent += len(items)
        try:
            sent = bool(self.send(frame, batch))
        except Exception:
            sent = False
        if not sent:
            self._fail(batch)
            return
        loop = asyncio.get_running_loop()
        entry.timer = loop.call_later(self.ack_timeout, self._fail, batch)

    def on_ack(self, ack: dict[str, Any]) -> None:
        """Handle a ``positions_ack`` message (§4.8)."""
        batch = int(ack.get("batch", -1))
        entry = self._inflight.get(batch)
        if entry is None:
            return
        rejected = ack.get("rejected") or []
        whole = len(rejected) == len(entry.items) and len(rejected) > 0
        if whole and all(r.get("reason") == "rate_limited" for r in rejected):
            self._fail(batch)
            return
        self._settle(batch)
        self.counters.acked += len(entry.items)
        self.counters.accepted += int(ack.get("accepted", 0))
        self.counters.rejected_by_server += len(rejected)

    def _settle(self, batch: int) -> _Inflight | None:
        entry = self._inflight.pop(batch, None)
        if entry is not None and entry.timer is not None:
            entry.timer.cancel()
        return entry

    def _fail(self, batch: int) -> None:
        entry = self._settle(batch)
        if entry is None:
            return
        again = [it for it in entry.items if it.attempts < self.max_attempts]
        self.counters.failed += len(entry.items) - len(again)
        if not again:
            return
        attempts = max(it.attempts for it in again)
        delay = min(self.retry_max, self.retry_base * 2.0 ** (attempts - 1))
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def retry() -> None:
            if handle is not None:
                self._retry_timers.discard(handle)
            for it in again:
                if self._newest.get(it.id) is not it:
                    continue  # a newer update of the node (queued, sent or answered) supersedes it
                self.counters.retried += 1
                self._add(it, fresh=False)

        handle = loop.call_later(delay, retry)
        self._retry_timers.add(handle)

    def close(self) -> None:
        """Cancel every timer (queued updates are dropped)."""
        for h in [self._flush_timer, *self._retry_timers,
                  *(e.timer for e in self._inflight.values())]:
            if h is not None:
                h.cancel()
        self._flush_timer = None
        self._retry_timers.clear()
        self._inflight.clear()
        self._queued.clear()
        self._newest.clear()

    @property
    def pending(self) -> dict[str, int]:
        """Updates queued and batches waiting for an answer."""
        return {"queued": len(self._queued), "inflight": len(self._inflight)}
