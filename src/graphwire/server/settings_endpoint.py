"""The binary settings protocol over ``/ws`` (kind 0x10, PROTOCOL.md §4).

Every request gets exactly one reply, a Response or an Error, carrying its ``req``. Requests are
charged to the ``settings`` rate class (over the limit: Error 5). Committed change sets reach
every other connection as one Delta each, in revision order, encoded once for all of them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from graphwire.protocol import settings_codec as sc
from graphwire.protocol.errors import ProtocolError
from graphwire.settings import ChangeSet, SettingsError, SettingsService

if TYPE_CHECKING:
    from .app import GraphwireServer
    from .session import Session

log = logging.getLogger("graphwire.settings")


class SettingsEndpoint:
    """Answers kind 0x10 messages and broadcasts Deltas."""

    def __init__(self, server: GraphwireServer, service: SettingsService) -> None:
        self.server = server
        self.service = service
        service.subscribe(self._broadcast)

    def frame(self, msg: sc.SettingsMessage) -> bytes:
        """Encode a message (gzip above 256 bytes when it shrinks), counting compression."""
        body = sc.encode_body(msg)
        data = sc.encode_settings(msg)
        if data[1] == sc.GZIP:
            self.server.metrics.compressed(len(body), len(data) - 2)
        return data

    def path_table(self) -> bytes:
        """The PathTable sent right after ``connection_established``."""
        return self.frame(self.service.path_table())

    def _broadcast(self, change: ChangeSet) -> None:
        data = self.frame(sc.Delta(change.revision, change.entries))
        for session in self.server.sessions_list():
            if session is not change.origin:
                session.send_bytes(data)
                self.server.metrics.delta_messages += 1

    def sync_reply(self, req: int, since: int) -> bytes:
        """A Response with the paths changed after ``since``, or a Snapshot (§4 Sync)."""
        result = self.service.sync(since)
        if len(result) == 3:
            revision, digest, entries = result
            self.server.metrics.full_sync_messages += 1
            return self.frame(sc.Snapshot(req, revision, digest, entries))
        revision, entries = result
        return self.frame(sc.Response(req, revision, entries))

    async def handle(self, session: Session, data: bytes) -> None:
        """One kind 0x10 message from a connection."""
        try:
            body = sc.settings_body(data)
        except ProtocolError as exc:
            session.send_bytes(self.frame(sc.Error(0, sc.SettingsErrorCode.MALFORMED,
                                                   exc.message)))
            return
        try:
            msg = sc.decode_body(body)
        except ProtocolError as exc:
            session.send_bytes(self.frame(sc.Error(sc.request_id(body),
                                                   sc.SettingsErrorCode.MALFORMED, exc.message)))
            return
        if isinstance(msg, sc.Pong):
            return
        if isinstance(msg, sc.Ping):
            session.send_bytes(self.frame(sc.Pong(msg.timestamp_ms)))
            return
        if not isinstance(msg, sc.REQUESTS):
            session.send_bytes(self.frame(sc.Error(0, sc.SettingsErrorCode.MALFORMED,
                                                   f"{type(msg).__name__} is sent by the "
                                                   "server only")))
            return
        wait = session.charge("settings")
        if wait is not None:
            session.send_bytes(self.frame(sc.Error(
                msg.req, sc.SettingsErrorCode.RATE_LIMITED,
                f"too many settings requests: retry in {max(1, int(wait * 1000))} ms")))
            return
        try:
            reply = await self._answer(session, msg)
        except SettingsError as exc:
            reply = self.frame(sc.Error(msg.req, exc.code, exc.message))
        except ProtocolError as exc:  # a gateway whose simulation did not answer
            reply = self.frame(sc.Error(msg.req, sc.SettingsErrorCode.INTERNAL, exc.message))
        except Exception:  # one reply, whatever happens
            log.exception("settings request failed")
            reply = self.frame(sc.Error(msg.req, sc.SettingsErrorCode.INTERNAL,
                                        "internal error"))
        session.send_bytes(reply)

    async def _answer(self, session: Session, msg: sc.SettingsMessage) -> bytes:
        svc = self.service
        if isinstance(msg, sc.Get):
            return self.frame(sc.Response(msg.req, svc.revision, svc.get([msg.path_id])))
        if isinstance(msg, sc.BatchGet):
            return self.frame(sc.Response(msg.req, svc.revision, svc.get(msg.path_ids)))
        if isinstance(msg, sc.Set):
            revision, written = await self.server.settings_writes.apply(
                [(msg.path_id, msg.value)], admin=session.admin, origin=session)
            return self.frame(sc.Response(msg.req, revision, written))
        if isinstance(msg, sc.BatchSet):
            revision, written = await self.server.settings_writes.apply(
                msg.entries, admin=session.admin, origin=session)
            return self.frame(sc.Response(msg.req, revision, written))
        if isinstance(msg, sc.Sync):
            return self.sync_reply(msg.req, msg.since_revision)
        raise AssertionError(f"not a request: {msg!r}")
