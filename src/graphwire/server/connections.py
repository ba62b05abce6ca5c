"""The open WebSocket connections: who is connected, who may resume, bans and broadcast.

The registry is the one place that knows every connection. The WebSocket handshake adds and
removes them; a connection closed within ``resumeWindowMs`` may come back under its id
(``/ws?resume=``, docs/protocol.md §6); a ban reaches every connection of the identity; broadcasts
(``graph_changed``, settings Deltas, SSSP frames) hand one encoded message to each connection's
outbox. It knows a connection only through :class:`Connection`, so it imports no session.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from graphwire.protocol.control import CloseCode, ErrorMessage
from graphwire.protocol.errors import ErrorCode, ProtocolError

from .metrics import Metrics


class Connection(Protocol):
    """What the registry needs of a connection."""

    client_id: str
    identity: str

    def send_json(self, message: dict[str, Any]) -> None:
        """Queue a control message."""

    def send_bytes(self, data: bytes) -> None:
        """Queue a binary message."""

    def finish(self, code: int, reason: str = "") -> None:
        """Close once everything queued so far is written."""

    def close(self, code: int, reason: str = "") -> None:
        """Close now, dropping what is queued."""


class Connections:
    """Open connections by client id, resume deadlines, bans and broadcast."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.clock = clock
        self.open: dict[str, Connection] = {}
        self.resume_deadlines: dict[str, float] = {}  # closed client ids: resumable until

    def __len__(self) -> int:
        return len(self.open)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self.open.values()))

    # -- joining and leaving ---------------------------------------------------------------
    def claim_id(self, resume: str | None) -> tuple[str, bool]:
        """The client id of a new connection and whether it resumes one: ``resume`` when it
        names an open connection or one closed less than the resume window ago, else a fresh
        id."""
        known = resume is not None and (resume in self.open or
                                        self.resume_deadlines.get(resume, 0.0) > self.clock())
        if known and resume is not None:
            return resume, True
        return secrets.token_urlsafe(12), False

    def add(self, conn: Connection) -> Connection | None:
        """Register a connection; returns the one it replaces (same id, still open), which the
        caller closes."""
        old = self.open.get(conn.client_id)
        self.resume_deadlines.pop(conn.client_id, None)
        self.open[conn.client_id] = conn
        self.metrics.connections += 1
        self.metrics.connections_total += 1
        return old

    def remove(self, conn: Connection, resume_window: float) -> bool:
        """A connection closed: it may resume for ``resume_window`` seconds. False when a
        newer connection had already taken its id."""
        self.metrics.connections -= 1
        if self.open.get(conn.client_id) is not conn:
            return False
        del self.open[conn.client_id]
        self.resume_deadlines[conn.client_id] = self.clock() + resume_window
        return True

    def expire(self) -> int:
        """Forget closed ids past their resume window; returns how many."""
        now = self.clock()
        gone = [cid for cid, until in self.resume_deadlines.items() if until < now]
        for cid in gone:
            del self.resume_deadlines[cid]
        return len(gone)

    # -- bans and broadcast -------------------------------------------------------------------
    def ban(self, identity: str, retry_after_ms: int) -> int:
        """An identity was just banned: count it, send its connections ``banned`` after what
        they already have queued, then close them with 1008. Returns how many were closed."""
        self.metrics.bans += 1
        err = ProtocolError(ErrorCode.BANNED, "banned for too many rate-limit violations",
                            retry_after_ms=retry_after_ms)
        message = ErrorMessage.of(err).to_json()
        closed = 0
        for conn in self:
            if conn.identity == identity:
                conn.send_json(message)
                conn.finish(CloseCode.POLICY, "banned")
                closed += 1
        return closed

    def broadcast_json(self, message: dict[str, Any]) -> None:
        """Queue a control message for every connection."""
        for conn in self:
            conn.send_json(message)

    def broadcast_bytes(self, data: bytes, *, exclude: object | None = None) -> int:
        """Queue one encoded binary message for every connection but ``exclude``; returns how
        many it went to."""
        sent = 0
        for conn in self:
            if conn is not exclude:
                conn.send_bytes(data)
                sent += 1
        return sent

    def send_to(self, client_ids: Iterable[str], data: bytes) -> None:
        """Queue one encoded binary message for the open connections of some client ids."""
        for cid in list(client_ids):
            conn = self.open.get(cid)
            if conn is not None:
                conn.send_bytes(data)

    def close_all(self, code: int, reason: str) -> None:
        """Close every connection (shutdown)."""
        for conn in self:
            conn.close(code, reason)
