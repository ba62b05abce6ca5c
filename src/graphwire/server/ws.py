"""``GET /ws``: the WebSocket handshake and what each message asks (docs/protocol.md §2–§7).

:class:`WebSocketEndpoint` opens a :class:`~graphwire.server.session.Session` per connection:
it claims the client id (a resume keeps it, §6), registers the session with the
:class:`~graphwire.server.connections.Connections`, sends ``connection_established`` and the
settings PathTable, and runs the session until it closes. It is also the session's
:class:`~graphwire.server.session.Handlers`: control messages (§6), client positions (§4.8) and
settings frames (§5, through the settings endpoint) land here, and go on to the stream hub, the
graph service and the settings endpoint. The session's heartbeat lives in the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from aiohttp import web

from graphwire.graph.model import GraphError
from graphwire.protocol import control as ctl
from graphwire.protocol.client_positions import ClientPositions
from graphwire.protocol.control import CloseCode, GraphChanged
from graphwire.protocol.errors import ErrorCode, ProtocolError
from graphwire.protocol.positions import V1_MAX_ID
from graphwire.settings import SettingsService

from .connections import Connections
from .errors import as_protocol_error
from .gateway import RemoteGraph, RemoteRunner, ResumableIds
from .graph_service import GraphService
from .http import ADMIN, IDENTITY
from .metrics import Metrics
from .rate_limit import RateLimiter
from .runner import SimulationRunner
from .session import LiveSettingsRef, Session, SessionContext
from .settings_endpoint import SettingsEndpoint
from .stream_hub import StreamHub

MAX_INTERVAL_MS = 10_000.0
"""The slowest pace a subscription is granted (§6: ``intervalMs`` is clamped to it)."""


def granted_interval(asked: float | None, settings: LiveSettingsRef) -> float:
    """The pace granted to a subscription, in ms: ``intervalMs`` clamped to
    [1000/maxUpdateRate, 10000]; without one, the calm stream rate (1000/minUpdateRate:
    200 ms, 5 Hz, by default)."""
    live = settings.live
    fastest = 1000.0 / live.connection.max_update_rate
    wanted = 1000.0 / live.cadence.min_rate if asked is None else float(asked)
    return min(max(wanted, fastest), MAX_INTERVAL_MS)


class WebSocketEndpoint:
    """Opens sessions and answers what they receive."""

    def __init__(self, *, settings: LiveSettingsRef, metrics: Metrics, limiter: RateLimiter,
                 connections: Connections, hub: StreamHub,
                 graph_service: GraphService | RemoteGraph,
                 runner: SimulationRunner | RemoteRunner, settings_service: SettingsService,
                 settings_endpoint: SettingsEndpoint,
                 spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
                 resumable: ResumableIds | None = None) -> None:
        self.in_force = settings
        self.connections = connections
        self.hub = hub
        self.graph_service = graph_service
        self.runner = runner
        self.settings_service = settings_service
        self.settings_endpoint = settings_endpoint
        self.resumable = resumable  # scale-out: client ids that left other processes
        self.spawn = spawn
        self.context = SessionContext(metrics=metrics, limiter=limiter, connections=connections,
                                      handlers=self, settings=settings, spawn=spawn)

    # -- the handshake --------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one WebSocket until it closes."""
        cs = self.in_force.live.connection
        # aiohttp refuses a message of max_msg_size bytes or more; §2 closes only one *over*
        # the maximum, so a message of exactly maxMessageSize bytes is read
        ws = web.WebSocketResponse(compress=False, autoping=False, heartbeat=None,
                                   max_msg_size=cs.max_message_size + 1)
        await ws.prepare(request)
        resume = request.query.get("resume")
        client_id, reconnect = self.connections.claim_id(resume)
        if resume and not reconnect and self.resumable is not None \
                and await self.resumable.known(resume):
            client_id, reconnect = resume, True  # it left another gateway of the cluster
        if self.resumable is not None:
            self.spawn(self.resumable.remember([client_id]))
        session = Session(self.context, request, ws, client_id, request[IDENTITY],
                          request[ADMIN])
        old = self.connections.add(session)
        if old is not None:
            old.close(CloseCode.NORMAL, "replaced by a resumed connection")
            self.hub.unsubscribe(session)  # the old connection's stream (same client id)
        session.send_json(self._established(client_id, reconnect))
        session.send_bytes(self.settings_endpoint.path_table())
        try:
            await session.run()
        finally:
            if self.connections.remove(session, self.in_force.live.connection.resume_window):
                self.hub.unsubscribe(session)
        return ws

    def _established(self, client_id: str, reconnect: bool) -> dict[str, Any]:
        snap = self.graph_service.latest
        live = self.in_force.live
        svc = self.settings_service
        return ctl.ConnectionEstablished(
            client_id=client_id, epoch=self.graph_service.epoch, seq=snap.seq if snap else 0,
            topology_version=self.graph_service.graph.topology_version, is_reconnection=reconnect,
            settings={"revision": svc.revision, "schemaVersion": svc.schema_version,
                      "digest": svc.digest().hex()},
            heartbeat={"intervalMs": round(live.connection.heartbeat_interval * 1000),
                       "timeoutMs": round(live.connection.heartbeat_timeout * 1000)},
            rate_limits=live.limits.as_json(),
        ).to_json()

    # -- Handlers ---------------------------------------------------------------------------------
    async def control(self, session: Session, msg: ctl.ClientMessage) -> None:
        """One JSON message from a client (§6)."""
        if isinstance(msg, ctl.Subscribe):
            self._subscribe(session, msg)
        elif isinstance(msg, ctl.Unsubscribe):
            self.hub.unsubscribe(session)
        elif isinstance(msg, ctl.Ping):
            session.send_json(ctl.Pong(msg.timestamp, msg.id).to_json())
        elif isinstance(msg, ctl.RequestKeyframe):
            if not self.hub.request_keyframe(session.client_id):
                raise ProtocolError(ErrorCode.MALFORMED_FRAME,
                                    "request_keyframe needs a subscription")
        elif isinstance(msg, ctl.Resume):
            session.send_bytes(self.settings_endpoint.sync_reply(0, msg.settings_revision))
            if msg.epoch != self.graph_service.epoch:
                g = self.graph_service.graph
                session.send_json(GraphChanged(self.graph_service.epoch, g.topology_version,
                                               g.node_count, g.edge_count,
                                               refetch=True).to_json())
        elif isinstance(msg, ctl.SetSsspSource):
            try:
                await self.graph_service.set_sssp_source(msg.source)
            except GraphError as exc:
                raise as_protocol_error(exc) from None

    def _subscribe(self, session: Session, msg: ctl.Subscribe) -> None:
        if msg.format == "v1":
            live = self.graph_service.graph.live_ids()
            if live.shape[0] and int(live.max()) > V1_MAX_ID:
                raise ProtocolError(ErrorCode.FORMAT_UNSUPPORTED,
                                    f"node ids reach {int(live.max())}, above V1's 16383: "
                                    "subscribe to v2 or q")
        # whole milliseconds, as confirmed: 100.3 and 100.4 are one pace (one q lineage)
        granted = round(granted_interval(msg.interval_ms, self.in_force))
        velocity = bool(msg.velocity) and msg.format == "q"
        session.send_json(ctl.SubscriptionConfirmed(
            msg.format, granted, velocity, msg.id).to_json())
        if self.graph_service.sssp.source is not None:
            session.send_bytes(self.graph_service.sssp_frame())
        self.hub.subscribe(session, msg.format, velocity, granted / 1000.0)

    async def positions(self, session: Session, batch: ClientPositions) -> None:
        """A kind 0x20 batch: charged, checked (§4.8) and always acknowledged."""
        ids = batch.ids.astype(np.int64)
        wait = session.charge("positions")
        if wait is not None:
            self._ack(session, batch.batch, ids, "rate_limited")
            return
        if batch.header.epoch16 != self.graph_service.epoch & 0xFFFF:
            self._ack(session, batch.batch, ids, "stale_epoch")
            return
        try:
            result = await self.graph_service.positions(
                ids, batch.pos.astype(np.float64), pin=batch.pin, release=batch.release)
        except ProtocolError as exc:  # a gateway whose simulation did not answer in time
            session.send_error(exc)
            return
        if result.accepted:
            self.runner.interaction()
        session.send_json(ctl.PositionsAck(batch.batch, result.accepted,
                                               result.rejected).to_json())

    @staticmethod
    def _ack(session: Session, batch: int, ids: np.ndarray, reason: str) -> None:
        rejected = tuple(ctl.Rejected(int(i), reason) for i in ids.tolist())
        session.send_json(ctl.PositionsAck(batch, 0, rejected).to_json())

    async def settings(self, session: Session, data: bytes) -> None:
        """A kind 0x10 frame: the settings endpoint answers it."""
        await self.settings_endpoint.handle(session, data)

    def drained(self, client_id: str) -> None:
        """A connection wrote its position frames: the hub may catch it up."""
        self.hub.drained(client_id)
