"""One WebSocket connection: its reader, its bounded outbox, its heartbeat (docs/protocol.md §2–§6).

The reader parses every message, charges its rate class (only messages that parse consume
tokens) and hands it to the :class:`Handlers` (``server.ws``). Everything the server sends goes
through the outbox, which one sender task drains: the broadcast path only appends, never awaits
a client. The outbox is bounded (at most two position frames, handed over by the hub only when
the previous ones are written, and ``outboxLimit`` other messages; a client that lets more pile
up is closed with 1013), so memory per client is bounded whatever the client does. Position
frames skip the outbox when it is empty: their prebuilt WebSocket bytes go straight to the
transport (:mod:`.fanout`).

A session knows the rest of the server only through its :class:`SessionContext`: the parts it
needs, built once and shared by every session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from graphwire.protocol import control
from graphwire.protocol.client_positions import ClientPositions, decode_client_positions
from graphwire.protocol.control import CloseCode, ErrorMessage, MessageId
from graphwire.protocol.errors import ErrorCode, ProtocolError
from graphwire.protocol.header import Kind, frame_kind

from .connections import Connections
from .fanout import WireFrame
from .live_settings import RATE_CLASSES, Limits, LiveSettings
from .metrics import Metrics
from .rate_limit import RateLimiter, TokenBucket, new_bucket

log = logging.getLogger("graphwire.session")

_POSITION, _OTHER, _CLOSE = 0, 1, 2


class Handlers(Protocol):
    """What a session hands its parsed messages to (``server.ws.Dispatcher``)."""

    async def control(self, session: Session, msg: control.ClientMessage) -> None:
        """A JSON control message (§6); raises ProtocolError for an error reply."""

    async def positions(self, session: Session, batch: ClientPositions) -> None:
        """A kind 0x20 batch (§4.8), already charged; answers it with ``positions_ack``."""

    async def settings(self, session: Session, data: bytes) -> None:
        """A kind 0x10 frame (§5): exactly one reply per request."""

    def drained(self, client_id: str) -> None:
        """A connection wrote its queued position frames: it may be behind the stream."""


class LiveSettingsRef(Protocol):
    """Where the current ``system.*`` settings are read (replaced when they change)."""

    live: LiveSettings


@dataclass(eq=False, slots=True)
class SessionContext:
    """The parts every session needs, built once by the app."""

    metrics: Metrics
    limiter: RateLimiter
    connections: Connections
    handlers: Handlers
    settings: LiveSettingsRef
    spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]


class Session:
    """The server side of one WebSocket."""

    def __init__(self, ctx: SessionContext, request: web.Request, ws: web.WebSocketResponse,
                 client_id: str, identity: str, admin: bool) -> None:
        self.ctx = ctx
        self.request = request
        self.ws = ws
        self.client_id = client_id
        self.identity = identity
        self.admin = admin
        self.closed = False
        self._transport = request.transport  # the connection's, for the whole WebSocket
        self.last_received = time.monotonic()  # what the peer sent; the server's pings never
        self.last_ping = time.monotonic()  # count as the peer's activity
        self._outbox: deque[tuple[int, bytes | str | WireFrame]] = deque()
        self._positions_queued = 0
        self._wake = asyncio.Event()
        self._limits: Limits | None = None
        self.buckets: dict[str, TokenBucket] = {}
        self._errors = TokenBucket(1.0, 1.0)
        self._follow_settings()
        self._last_warning: dict[str, float] = {}
        self._close_code = int(CloseCode.NORMAL)
        self._ban_due = False
        self._closing: asyncio.Task[None] | None = None

    def _follow_settings(self) -> None:
        """Take new rate limits when the settings changed (tokens already there are kept)."""
        live = self.ctx.settings.live
        if live.limits is self._limits:
            return
        limits = self._limits = live.limits
        for cls in RATE_CLASSES:
            bucket = self.buckets.get(cls)
            if bucket is None:
                self.buckets[cls] = new_bucket(limits, cls)
            else:
                bucket.reconfigure(limits.rate(cls), float(limits.burst[cls]))
        per_second = float(live.connection.error_replies_per_second)
        self._errors.reconfigure(per_second, per_second)

    # -- the outbox (the hub's Outlet) ---------------------------------------------------------
    def position_pending(self) -> bool:
        """A position frame is not yet written to the socket (queued, or in the transport)."""
        if self._positions_queued > 0:
            return True
        transport = self._transport
        return transport is not None and transport.get_write_buffer_size() > 0

    def write_buffer(self) -> int:
        """Bytes in the socket's write buffer."""
        transport = self._transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def write_frames(self, frames: Sequence[WireFrame]) -> bool:
        """Send shared position frames: their prebuilt WebSocket bytes straight to the transport
        when nothing else of this connection waits to be sent, else behind what waits. False
        (nothing taken) once the session is closed."""
        if self.closed:
            return False
        transport = self._transport
        if not self._outbox and transport is not None and not self.ws.closed \
                and not transport.is_closing():
            for frame in frames:
                transport.write(frame.wire)
            return True
        for frame in frames:
            self._outbox.append((_POSITION, frame))
            self._positions_queued += 1
        self._wake.set()
        return True

    def send_json(self, message: dict[str, Any]) -> None:
        """Queue a control message."""
        self._queue(json.dumps(message, separators=(",", ":"), allow_nan=False))

    def send_bytes(self, data: bytes) -> None:
        """Queue a binary message that is not a position frame."""
        self._queue(data)

    def _queue(self, item: bytes | str) -> None:
        if self.closed:
            return
        waiting = len(self._outbox) - self._positions_queued
        live = self.ctx.settings.live
        limit = live.connection.outbox_limit
        # Over the limit with the socket backed up, the client is not reading: close it.
        # Over the limit while the socket drains is a burst the sender is still writing out,
        # allowed up to ten times the limit (the hard bound on memory per client).
        if waiting >= limit and (self.write_buffer() > live.hub.high_water
                                 or waiting >= 10 * limit):
            self.close_slow()
            return
        self._outbox.append((_OTHER, item))
        self._wake.set()

    def finish(self, code: int, reason: str = "") -> None:
        """Close once everything queued so far is written (an error, then 1008)."""
        if not self.closed:
            self._outbox.append((_CLOSE, reason))
            self._close_code = code
            self._wake.set()

    def close_slow(self) -> None:
        """Close with 1013 (too slow or overloaded: reconnect with backoff)."""
        self.close(CloseCode.TRY_AGAIN_LATER, "too slow")

    def close(self, code: int, reason: str = "") -> None:
        """Close the connection (without waiting); the outbox is dropped."""
        if self.closed:
            return
        self.closed = True
        self._outbox.clear()
        self._positions_queued = 0
        self._wake.set()
        self._closing = self.ctx.spawn(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), 2.0)
        except (TimeoutError, ConnectionError, RuntimeError):
            # a peer that does not read cannot take the close frame: drop the connection
            transport = self.request.transport
            if transport is not None:
                transport.abort()

    async def _send_loop(self) -> None:
        metrics = self.ctx.metrics
        while not self.closed:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox and not self.closed:
                kind, item = self._outbox.popleft()
                if kind == _CLOSE:
                    self.close(self._close_code, str(item))
                    return
                try:
                    if isinstance(item, WireFrame):  # counted when it was handed over
                        transport = self._transport
                        if transport is None or self.ws.closed or transport.is_closing():
                            raise ConnectionError("the connection is closing")
                        transport.write(item.wire)
                    elif isinstance(item, str):
                        await self.ws.send_str(item)
                        metrics.sent(len(item))
                    else:
                        await self.ws.send_bytes(item)
                        metrics.sent(len(item))
                except (ConnectionError, RuntimeError):
                    self.closed = True
                    return
                finally:
                    if kind == _POSITION:
                        self._positions_queued -= 1
                if kind == _POSITION and self._positions_queued == 0:
                    self.ctx.handlers.drained(self.client_id)  # it may have missed a snapshot

    # -- errors, warnings, rate limits --------------------------------------------------------
    def error_reply_allowed(self) -> bool:
        """Take one of the ``errorRepliesPerSecond`` error replies (False: over the cap, and
        counted as suppressed). Every answer to bad input, JSON or settings, goes through it."""
        if self._errors.take(time.monotonic()):
            self.ctx.metrics.errors_sent += 1
            return True
        self.ctx.metrics.errors_suppressed += 1
        return False

    def send_error(self, exc: ProtocolError, msg_id: MessageId = None) -> None:
        """Answer with an ``error`` message, at most ``errorRepliesPerSecond`` a second."""
        if self.error_reply_allowed():
            self.send_json(ErrorMessage(exc.info, msg_id).to_json())

    def charge(self, cls: str) -> float | None:
        """Take a token of a class; None if allowed, else the wait in seconds (a violation is
        recorded for the identity; a ban it causes takes effect after this message's reply)."""
        self._follow_settings()
        now = time.monotonic()
        bucket = self.buckets[cls]
        if bucket.take(now):
            return None
        wait = bucket.retry_after(now)
        self.ctx.metrics.rate_limited += 1
        if self.ctx.limiter.violation(self.identity, cls, wait).banned_now:
            self._ban_due = True
        return wait

    def warn(self, cls: str, wait: float) -> None:
        """``rate_limit_warning`` for a dropped message, at most one a second per class."""
        now = time.monotonic()
        if now - self._last_warning.get(cls, -1e9) < 1.0:
            return
        self._last_warning[cls] = now
        self.ctx.metrics.rate_limit_warnings += 1
        self.send_json(control.RateLimitWarning(
            cls, f"too many {cls} messages: dropped; slow down",
            max(1, int(wait * 1000 + 0.999))).to_json())

    # -- the connection ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the connection until it closes. An unexpected failure closes it with 1011."""
        sender = asyncio.create_task(self._send_loop())
        heartbeat = asyncio.create_task(self._heartbeat())
        metrics = self.ctx.metrics
        try:
            async for msg in self.ws:
                self.last_received = time.monotonic()
                if msg.type == WSMsgType.TEXT:
                    metrics.received(len(msg.data))
                    await self._on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    metrics.received(len(msg.data))
                    await self._on_binary(msg.data)
                elif msg.type == WSMsgType.PING:
                    await self.ws.pong(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
                if self._ban_due:
                    self._ban_due = False
                    wait = self.ctx.limiter.banned_for(self.identity)
                    self.ctx.connections.ban(self.identity, int(wait * 1000))
                if self.closed:
                    break
        except Exception:
            log.exception("connection %s failed", self.client_id)
            self.close(CloseCode.SERVER_ERROR, "internal error")
        finally:
            self.closed = True
            self._wake.set()
            if self._closing is not None:
                # the close frame with its code (1008, 1013, …) goes out before the handler
                # returns; returning first lets aiohttp close with 1000
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._closing), 3.0)
            for task in (sender, heartbeat):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _heartbeat(self) -> None:
        """A WebSocket ping every ``heartbeatIntervalMs``; a peer that sent nothing (no
        message, no pong) for ``heartbeatTimeoutMs`` is closed with 1001 (§10).

        Not aiohttp's ``heartbeat``: it waits a fixed half interval for the pong, cannot follow
        a live change of either setting, and aborts with 1006 instead of closing with 1001."""
        while not self.closed:
            cs = self.ctx.settings.live.connection
            now = time.monotonic()
            silent_until = self.last_received + cs.heartbeat_timeout
            if now >= silent_until:
                self.close(CloseCode.GOING_AWAY, "no sign of life")
                return
            if now - self.last_ping >= cs.heartbeat_interval:
                self.last_ping = now
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.ws.ping()
            wake = min(self.last_ping + cs.heartbeat_interval, silent_until)
            # wake at least every 5 s, so a shorter interval set live takes effect soon
            await asyncio.sleep(min(max(wake - time.monotonic(), 0.005), 5.0))

    async def _on_text(self, text: str) -> None:
        try:
            msg = control.parse_client_message(text)
        except ProtocolError as exc:
            self.send_error(exc, control.message_id_of(text))
            return
        wait = self.charge("control")
        if wait is not None:
            self.warn("control", wait)
            return
        try:
            await self.ctx.handlers.control(self, msg)
        except ProtocolError as exc:
            self.send_error(exc, getattr(msg, "id", None))

    async def _on_binary(self, data: bytes) -> None:
        try:
            kind = frame_kind(data)
        except ProtocolError as exc:
            self.send_error(exc)
            return
        if kind == Kind.CLIENT_POSITIONS:
            try:
                batch = decode_client_positions(data)
            except ProtocolError as exc:
                self.send_error(exc)
                return
            await self.ctx.handlers.positions(self, batch)
        elif kind == Kind.SETTINGS:
            await self.ctx.handlers.settings(self, data)
        else:
            self.send_error(ProtocolError(ErrorCode.UNKNOWN_KIND,
                                          f"kind 0x{kind:02x} is sent by the server only"))
