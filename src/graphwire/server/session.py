"""One WebSocket connection: its reader, its bounded outbox, its handlers (PROTOCOL.md §2–§5).

The reader parses every message, charges its rate class (only messages that parse consume
tokens) and dispatches it. Everything the server sends goes through the outbox, which one sender
task drains: the broadcast path only appends, never awaits a client. The outbox is bounded (at
most two position frames, handed over by the hub only when the previous ones are written, and
``outboxLimit`` other messages; a client that lets more pile up is closed with 1013), so memory
per client is bounded whatever the client does. Position frames skip the outbox when it is
empty: their prebuilt WebSocket bytes go straight to the transport (:mod:`.fanout`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import WSMsgType, web

from graphwire.protocol import control
from graphwire.protocol.client_positions import decode_client_positions
from graphwire.protocol.control import CloseCode, ErrorMessage, MessageId
from graphwire.protocol.errors import ErrorCode, ErrorInfo, ProtocolError
from graphwire.protocol.header import Kind, frame_kind

from .fanout import WireFrame
from .rate_limit import CLASSES, TokenBucket

if TYPE_CHECKING:
    from .app import GraphwireServer

log = logging.getLogger("graphwire.session")

_POSITION, _OTHER, _CLOSE = 0, 1, 2


class Session:
    """The server side of one WebSocket."""

    def __init__(self, server: GraphwireServer, request: web.Request,
                 ws: web.WebSocketResponse, client_id: str, identity: str, admin: bool) -> None:
        self.server = server
        self.request = request
        self.ws = ws
        self.client_id = client_id
        self.identity = identity
        self.admin = admin
        self.closed = False
        self._transport = request.transport  # the connection's, for the whole WebSocket
        self.last_received = time.monotonic()
        self.last_ping = time.monotonic()
        self._outbox: deque[tuple[int, bytes | str | WireFrame]] = deque()
        self._positions_queued = 0
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        limits = server.limiter.limits
        self.buckets: dict[str, TokenBucket] = {c: limits.bucket(c) for c in CLASSES}
        self._errors = TokenBucket(float(server.ws_settings.error_replies_per_second),
                                   float(server.ws_settings.error_replies_per_second))
        self._last_warning: dict[str, float] = {}
        self._close_code = int(CloseCode.NORMAL)

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

    def write_frames(self, frames: Sequence[WireFrame]) -> None:
        """Send shared position frames: their prebuilt WebSocket bytes straight to the transport
        when nothing else of this connection waits to be sent, else behind what waits."""
        if self.closed:
            return
        transport = self._transport
        if not self._outbox and transport is not None and not self.ws.closed \
                and not transport.is_closing():
            for frame in frames:
                transport.write(frame.wire)
            return
        for frame in frames:
            self._outbox.append((_POSITION, frame))
            self._positions_queued += 1
        self._wake.set()

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
        limit = self.server.ws_settings.outbox_limit
        # Over the limit with the socket backed up, the client is not reading: close it.
        # Over the limit while the socket drains is a burst the sender is still writing out,
        # allowed up to ten times the limit (the hard bound on memory per client).
        if waiting >= limit and (self.write_buffer() > self.server.hub.settings.high_water
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
        self.server.spawn(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), 2.0)
        except (TimeoutError, ConnectionError, RuntimeError):
            # a peer that does not read cannot take the close frame: drop the connection
            transport = self.request.transport
            if transport is not None:
                transport.abort()

    async def _send_loop(self) -> None:
        metrics = self.server.metrics
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
                        transport = self.request.transport
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
                    self.server.hub.drained(self.client_id)  # it may have missed a snapshot

    # -- errors and warnings ---------------------------------------------------------------------
    def send_error(self, exc: ProtocolError | ErrorInfo, msg_id: MessageId = None) -> None:
        """Answer with an ``error`` message, at most ``errorRepliesPerSecond`` a second."""
        if not self._errors.take(time.monotonic()):
            self.server.metrics.errors_suppressed += 1
            return
        info = exc.info if isinstance(exc, ProtocolError) else exc
        self.server.metrics.errors_sent += 1
        self.send_json(ErrorMessage(info, msg_id).to_json())

    def charge(self, cls: str) -> float | None:
        """Take a token of a class; None if allowed, else the wait in seconds (and a violation
        is recorded for the identity)."""
        now = time.monotonic()
        bucket = self.buckets[cls]
        if bucket.take(now):
            return None
        wait = bucket.retry_after(now)
        self.server.metrics.rate_limited += 1
        verdict = self.server.limiter.violation(self.identity, cls, wait)
        if verdict.banned_now:
            self.server.ban(self.identity)
        return wait

    def warn(self, cls: str, wait: float) -> None:
        """``rate_limit_warning`` for a dropped message, at most one a second per class."""
        now = time.monotonic()
        if now - self._last_warning.get(cls, -1e9) < 1.0:
            return
        self._last_warning[cls] = now
        self.server.metrics.rate_limit_warnings += 1
        self.send_json(control.RateLimitWarning(
            cls, f"too many {cls} messages: dropped; slow down",
            max(1, int(wait * 1000 + 0.999))).to_json())

    # -- the connection ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the connection until it closes."""
        self._sender = asyncio.create_task(self._send_loop())
        try:
            async for msg in self.ws:
                self.last_received = time.monotonic()
                if msg.type == WSMsgType.TEXT:
                    self.server.metrics.received(len(msg.data))
                    await self._on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self.server.metrics.received(len(msg.data))
                    await self._on_binary(msg.data)
                elif msg.type == WSMsgType.PING:
                    await self.ws.pong(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
                if self.closed:
                    break
        finally:
            self.closed = True
            self._wake.set()
            if self._sender is not None:
                self._sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._sender

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
            await self.server.handle_control(self, msg)
        except ProtocolError as exc:
            self.send_error(exc, getattr(msg, "id", None))

    async def _on_binary(self, data: bytes) -> None:
        try:
            kind = frame_kind(data)
        except ProtocolError as exc:
            self.send_error(exc)
            return
        if kind == Kind.CLIENT_POSITIONS:
            await self._on_positions(data)
        elif kind == Kind.SETTINGS:
            await self.server.settings_endpoint.handle(self, data)
        else:
            self.send_error(ProtocolError(ErrorCode.UNKNOWN_KIND,
                                          f"kind 0x{kind:02x} is sent by the server only"))

    async def _on_positions(self, data: bytes) -> None:
        try:
            batch = decode_client_positions(data)
        except ProtocolError as exc:
            self.send_error(exc)
            return
        ids = batch.ids.astype(np.int64)
        wait = self.charge("positions")
        if wait is not None:
            self._ack(batch.batch, 0, ids, "rate_limited")
            return
        if batch.header.epoch16 != self.server.graph.epoch & 0xFFFF:
            self._ack(batch.batch, 0, ids, "stale_epoch")
            return
        result = await self.server.graph.positions(
            ids, batch.pos.astype(np.float64), pin=batch.pin, release=batch.release)
        if result.accepted:
            self.server.runner.interaction()
        self.send_json(control.PositionsAck(batch.batch, result.accepted,
                                            result.rejected).to_json())

    def _ack(self, batch: int, accepted: int, ids: np.ndarray, reason: str) -> None:
        rejected = tuple(control.Rejected(int(i), reason) for i in ids.tolist())
        self.send_json(control.PositionsAck(batch, accepted, rejected).to_json())
