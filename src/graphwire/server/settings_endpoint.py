"""The binary settings protocol over ``/ws`` (kind 0x10, docs/protocol.md §5).

Every request gets exactly one reply, a Response or an Error, carrying its ``req``. Requests and
Pings are charged to the ``settings`` rate class (a request over the limit: Error 5). A frame
that does not decode is bad input like any other: its answer counts against the connection's
``errorRepliesPerSecond``; it is a settings Error 4 with the frame's ``req`` when that can be
read, and a JSON ``error`` ``too_large`` when the body inflates past 10 MiB (its ``req`` is
inside the compressed body). Committed change sets reach every other connection as one Delta
each, in revision order, encoded once for all of them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from graphwire.protocol import settings_codec as sc
from graphwire.protocol.errors import ErrorCode, ProtocolError
from graphwire.settings import ChangeSet, SettingsError, SettingsService

from .connections import Connections
from .metrics import Metrics
from .settings_writes import LocalSettingsWrites, RemoteSettingsWrites

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("graphwire.settings")


class SettingsEndpoint:
    """Answers kind 0x10 messages and broadcasts Deltas."""

    def __init__(self, service: SettingsService, metrics: Metrics,
                 connections: Connections,
                 writes: LocalSettingsWrites | RemoteSettingsWrites | None = None) -> None:
        self.service = service
        self.metrics = metrics
        self.connections = connections
        # where Set and BatchSet go: this process's settings, or (a gateway) the one writer
        self.writes = writes or LocalSettingsWrites(service)
        self._table: tuple[int, bytes] | None = None  # (paths in it, the encoded PathTable)
        service.subscribe(self._broadcast)

    def path_table(self) -> bytes:
        """The PathTable sent right after ``connection_established``: encoded once (again only
        when a path is added) and the same bytes for every connection."""
        paths = len(self.service.by_id)
        if self._table is None or self._table[0] != paths:
            self._table = (paths, sc.encode_settings(self.service.path_table()))
        return self._table[1]

    def _broadcast(self, change: ChangeSet) -> None:
        data = sc.encode_settings(sc.Delta(change.revision, change.entries))
        self.metrics.delta_messages += self.connections.broadcast_bytes(data,
                                                                        exclude=change.origin)

    def sync_reply(self, req: int, since: int) -> bytes:
        """A Response with the paths changed after ``since``, or a Snapshot (§5 Sync)."""
        result = self.service.sync(since)
        if len(result) == 3:
            revision, digest, entries = result
            self.metrics.full_sync_messages += 1
            return sc.encode_settings(sc.Snapshot(req, revision, digest, entries))
        revision, entries = result
        return sc.encode_settings(sc.Response(req, revision, entries))

    def _bad_frame(self, session: Session, req: int, exc: ProtocolError) -> None:
        if exc.code == ErrorCode.TOO_LARGE:
            session.send_error(exc)  # §8 too_large (capped inside)
        elif session.error_reply_allowed():
            session.send_bytes(sc.encode_settings(
                sc.Error(req, sc.SettingsErrorCode.MALFORMED, exc.message)))

    async def handle(self, session: Session, data: bytes) -> None:
        """One kind 0x10 message from a connection."""
        try:
            body = sc.settings_body(data)
        except ProtocolError as exc:
            plain = len(data) > 2 and data[1] != sc.GZIP
            self._bad_frame(session, sc.request_id(data[2:]) if plain else 0, exc)
            return
        try:
            msg = sc.decode_body(body)
        except ProtocolError as exc:
            self._bad_frame(session, sc.request_id(body), exc)
            return
        if isinstance(msg, sc.Pong):
            return
        if not isinstance(msg, (*sc.REQUESTS, sc.Ping)):
            if session.error_reply_allowed():
                session.send_bytes(sc.encode_settings(sc.Error(
                    0, sc.SettingsErrorCode.MALFORMED,
                    f"{type(msg).__name__} is sent by the server only")))
            return
        wait = session.charge("settings")
        if isinstance(msg, sc.Ping):
            if wait is None:
                session.send_bytes(sc.encode_settings(sc.Pong(msg.timestamp_ms)))
            else:
                session.warn("settings", wait)
            return
        if wait is not None:
            session.send_bytes(sc.encode_settings(sc.Error(
                msg.req, sc.SettingsErrorCode.RATE_LIMITED,
                f"too many settings requests: retry in {max(1, int(wait * 1000))} ms")))
            return
        try:
            reply = await self._answer(session, msg)
        except SettingsError as exc:
            reply = sc.encode_settings(sc.Error(msg.req, exc.code, exc.message))
        except ProtocolError as exc:  # a gateway whose simulation did not answer in time
            reply = sc.encode_settings(sc.Error(msg.req, sc.SettingsErrorCode.INTERNAL,
                                                exc.message))
        except Exception:  # one reply, whatever happens
            log.exception("settings request failed")
            reply = sc.encode_settings(sc.Error(msg.req, sc.SettingsErrorCode.INTERNAL,
                                                "internal error"))
        session.send_bytes(reply)

    async def _answer(self, session: Session, msg: sc.SettingsMessage) -> bytes:
        svc = self.service
        if isinstance(msg, sc.Get):
            return sc.encode_settings(sc.Response(msg.req, svc.revision, svc.get([msg.path_id])))
        if isinstance(msg, sc.BatchGet):
            return sc.encode_settings(sc.Response(msg.req, svc.revision, svc.get(msg.path_ids)))
        if isinstance(msg, sc.Set):
            revision, written = await self.writes.apply(
                [(msg.path_id, msg.value)], admin=session.admin, origin=session)
            return sc.encode_settings(sc.Response(msg.req, revision, written))
        if isinstance(msg, sc.BatchSet):
            revision, written = await self.writes.apply(msg.entries, admin=session.admin,
                                                        origin=session)
            return sc.encode_settings(sc.Response(msg.req, revision, written))
        if isinstance(msg, sc.Sync):
            return self.sync_reply(msg.req, msg.since_revision)
        raise AssertionError(f"not a request: {msg!r}")
