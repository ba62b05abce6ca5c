"""Connection events, delivered to callbacks and to async iterators.

Every event is a small frozen dataclass with a ``name`` (``connected``, ``disconnected``,
``reconnecting``, ``frame``, ``settings``, ``graph_changed``, ``rate_limit_warning``, ``error``)
and ``to_json()`` (what ``graphwire watch --json`` prints). :class:`EventHub` fans them out:
callbacks run synchronously in the event loop, in registration order; each async iterator has its
own bounded queue (a consumer that falls behind loses the oldest events, counted in
``dropped``), so a slow consumer never holds up the connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

log = logging.getLogger("graphwire.client")

EVENT_NAMES = ("connected", "disconnected", "reconnecting", "frame", "settings",
               "graph_changed", "rate_limit_warning", "error")


@dataclass(frozen=True, slots=True)
class Event:
    """Base class: every event has a ``name``."""

    name: ClassVar[str] = "event"

    def to_json(self) -> dict[str, Any]:
        """``{"event": name, ...fields}`` with camelCase keys."""
        out: dict[str, Any] = {"event": self.name}
        for key, value in asdict(self).items():
            head, *rest = key.split("_")
            out[head + "".join(w.title() for w in rest)] = value
        return out


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The connection is established (and, after a reconnect, resumed)."""

    name: ClassVar[str] = "connected"
    client_id: str
    epoch: int
    seq: int
    reconnection: bool
    resumed: bool


@dataclass(frozen=True, slots=True)
class Disconnected(Event):
    """The socket closed; ``code`` is the WebSocket close code (1006: no close frame)."""

    name: ClassVar[str] = "disconnected"
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Reconnecting(Event):
    """The client waits ``delay`` seconds before retry ``attempt`` (1 for the first retry
    after a connection was lost or the first connect failed); ``reason`` says why the last
    connection or attempt ended (a close reason, or the error of a failed attempt)."""

    name: ClassVar[str] = "reconnecting"
    attempt: int
    delay: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Frame(Event):
    """A position (or SSSP) frame was applied to the mirror."""

    name: ClassVar[str] = "frame"
    kind: int
    seq: int
    keyframe: bool
    settled: bool
    nodes: int
    size: int


@dataclass(frozen=True, slots=True)
class SettingsChanged(Event):
    """Settings changed: ``changes`` maps paths to their new values; ``origin`` is ``local``
    (this client's own write), ``remote`` (a Delta) or ``sync`` (a Sync answer or Snapshot)."""

    name: ClassVar[str] = "settings"
    revision: int
    changes: dict[str, Any]
    origin: str


@dataclass(frozen=True, slots=True)
class GraphChanged(Event):
    """The topology changed (nodes or edges added or removed), or a new epoch began; the
    mirror's tables are already updated."""

    name: ClassVar[str] = "graph_changed"
    epoch: int
    topology_version: int
    nodes_count: int
    edges_count: int
    refetched: bool
    added: tuple[str, ...] = ()
    """Keys of the nodes the change added (empty for a refetched graph)."""
    removed: tuple[str, ...] = ()
    """Keys of the nodes the change removed."""


@dataclass(frozen=True, slots=True)
class RateLimitWarning(Event):
    """A message of ``rate_class`` was dropped by the server; wait ``retry_after_ms``."""

    name: ClassVar[str] = "rate_limit_warning"
    rate_class: str
    message: str
    retry_after_ms: int


@dataclass(frozen=True, slots=True)
class ErrorEvent(Event):
    """An ``error`` from the server (docs/protocol.md §8), or a client-side failure (``code`` such
    as ``graph_load_failed`` or ``digest_mismatch``, category ``client``)."""

    name: ClassVar[str] = "error"
    code: str
    message: str
    category: str
    retryable: bool
    retry_after_ms: int | None = None


Callback = Callable[[Any], object]


@dataclass(slots=True)
class _Subscriber:
    names: frozenset[str] | None
    queue: deque[Event]
    limit: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0
    closed: bool = False


class EventHub:
    """Callbacks and async iterators over the client's events."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {}
        self._subscribers: list[_Subscriber] = []

    def on(self, name: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event ``name`` (``"*"``: every event); returns a
        function that removes the callback."""
        if name != "*" and name not in EVENT_NAMES:
            raise ValueError(f"unknown event {name!r}; events are {', '.join(EVENT_NAMES)}")
        self._callbacks.setdefault(name, []).append(callback)

        def off() -> None:
            cbs = self._callbacks.get(name, [])
            if callback in cbs:
                cbs.remove(callback)
        return off

    def emit(self, event: Event) -> None:
        """Deliver an event to callbacks and iterators."""
        for name in (event.name, "*"):
            for cb in list(self._callbacks.get(name, ())):
                try:
                    cb(event)
                except Exception:  # a user's callback must not break the connection
                    log.exception("graphwire client: %s callback failed", event.name)
        for sub in self._subscribers:
            if sub.names is None or event.name in sub.names:
                sub.queue.append(event)
                if len(sub.queue) > sub.limit:
                    sub.queue.popleft()
                    sub.dropped += 1
                sub.wake.set()

    async def stream(self, names: Iterable[str] | None = None,
                     limit: int = 10_000) -> AsyncIterator[Event]:
        """Events as they happen (only ``names`` when given) until the client closes."""
        wanted = None if names is None else frozenset(names)
        if wanted is not None and not wanted <= set(EVENT_NAMES):
            raise ValueError(f"unknown events {sorted(wanted - set(EVENT_NAMES))}")
        sub = _Subscriber(wanted, deque(), limit)
        self._subscribers.append(sub)
        try:
            while True:
                while sub.queue:
                    yield sub.queue.popleft()
                if sub.closed:
                    return
                sub.wake.clear()
                await sub.wake.wait()
        finally:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def close(self) -> None:
        """End every iterator (after the events already queued)."""
        for sub in self._subscribers:
            sub.closed = True
            sub.wake.set()
