"""The graphwire server: one aiohttp app serving REST, the WebSocket stream and the client.

``GraphwireServer`` wires the parts together: the settings service (SQLite), the graph service
(simulation + worker threads), the simulation runner (its own thread), the stream hub, the rate
limiter and one :class:`~graphwire.server.session.Session` per WebSocket. The protocol codecs and
the simulation know nothing of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time
from collections import deque
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
from aiohttp import web

from graphwire.graph.layout_file import Layout, read_layout
from graphwire.graph.live import LiveSource, SourceUpdate
from graphwire.graph.model import Graph, GraphError
from graphwire.graph.watch import watch_source
from graphwire.protocol import control
from graphwire.protocol.control import CloseCode, GraphChanged
from graphwire.protocol.errors import ErrorCode, ProtocolError
from graphwire.protocol.positions import V1_MAX_ID
from graphwire.protocol.sssp import encode_sssp
from graphwire.settings import ChangeSet, SettingsService, SettingsStore
from graphwire.settings.layout_store import LayoutSaver, LayoutStore
from graphwire.settings.schema import AGENT_PHYSICS, KNOWLEDGE_PHYSICS
from graphwire.settings.store import LOG_REVISIONS
from graphwire.simulation import PhysicsParams, ShortestPaths, Simulation, Snapshot

from .graph_service import GraphService
from .http import ADMIN, IDENTITY, make_middlewares
from .metrics import Metrics
from .rate_limit import Limits, RateLimiter
from .routes import add_routes
from .runner import Cadence, SimulationRunner
from .session import Session
from .settings_endpoint import SettingsEndpoint
from .stream_hub import HubSettings, StreamHub
from .warmup import warm_up

log = logging.getLogger("graphwire.server")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def default_db() -> Path:
    """Where the settings database lives by default: the user's data directory."""
    return Path(platformdirs.user_data_dir("graphwire")) / "settings.db"


@dataclass(slots=True)
class ServerConfig:
    """Everything ``graphwire serve`` takes on its command line."""

    source: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    db: str | None = None
    token: str | None = None
    admin_token: str | None = None
    allow_origins: list[str] = field(default_factory=list)
    trusted_proxy: bool = False
    physics_hz: float | None = None
    seed: int = 1
    static_dir: Path | None = WEB_DIR
    overrides: dict[str, Any] = field(default_factory=dict)  # settings applied at start
    max_body: int = 16 * 1024 * 1024
    settings_log: int = LOG_REVISIONS  # revisions a Sync can catch up from
    watch: bool = True  # follow changes of the source's files
    layout: str | None = None  # a positions file to start from (else the remembered layout)


@dataclass(slots=True)
class WsSettings:
    """``system.websocket.*`` as the server reads them."""

    heartbeat_interval: float = 30.0
    heartbeat_timeout: float = 45.0
    max_message_size: int = 10 * 1024 * 1024
    outbox_limit: int = 1000
    error_replies_per_second: int = 10
    resume_window: float = 600.0
    max_update_rate: float = 60.0


class GraphwireServer:
    """The running server. ``await start()``, then ``await stop()``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.sessions: dict[str, Session] = {}
        self.known: dict[str, float] = {}  # client ids that may resume, until when
        self.ws_settings = WsSettings()
        self.limiter = RateLimiter(auth=config.token is not None)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner_site: tuple[web.AppRunner, web.TCPSite] | None = None
        self._loops: list[asyncio.Task[Any]] = []
        # when each recent snapshot was published (wall clock): stream latency measurements
        self.publish_times: deque[tuple[int, float]] = deque(maxlen=4096)
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the graph, open the settings, start the simulation and the HTTP server."""
        cfg = self.config
        self.loop = asyncio.get_running_loop()
        self.source = LiveSource(cfg.source)
        data = await self.loop.run_in_executor(None, self.source.load)
        layout = read_layout(cfg.layout) if cfg.layout else None
        await self.loop.run_in_executor(None, warm_up)
        graph = Graph.from_data(data)
        self.store = SettingsStore(cfg.db or default_db(), log_revisions=cfg.settings_log)
        self.settings = SettingsService(self.store, admin_required=cfg.admin_token is not None)
        if cfg.overrides:
            self.settings.apply_paths(cfg.overrides, admin=True)
        epoch = self.settings.start_epoch()
        self.layout_store = LayoutStore(self.store.path, self.source.identity)
        if layout is None:
            layout = self.layout_store.load()
        self.sim = self._simulation(graph, layout)
        self.graph = GraphService(self.sim, epoch, self.loop, self._graph_changed,
                                  self._sssp_changed)
        self.runner = SimulationRunner(self.sim, self._publish, physics_hz=cfg.physics_hz)
        self.hub = StreamHub(self.metrics, lambda: self.graph.epoch, lambda: self.graph.sssp,
                             self.runner.request_snapshot, lambda: 1.0 / self.runner.rate)
        self.settings_endpoint = SettingsEndpoint(self, self.settings)
        self._load_live_settings()
        self.settings.subscribe(self._settings_changed)
        app = web.Application(middlewares=make_middlewares(self), client_max_size=cfg.max_body)
        add_routes(app, self)
        self.app = app
        self.runner.start()
        self.saver = LayoutSaver(self.layout_store, lambda: self.graph.latest,
                                 lambda: self._save_interval, on_save=self._layout_saved)
        self.saver.start()
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, cfg.host, cfg.port)
        await site.start()
        self._runner_site = (runner, site)
        self.port = cfg.port
        for addr in runner.addresses:  # the real port when cfg.port is 0 (tests)
            if isinstance(addr, tuple) and len(addr) >= 2:
                self.port = int(addr[1])
                break
        self.config.port = self.port
        host = cfg.host if ":" not in cfg.host else f"[{cfg.host}]"
        self.url = f"http://{host}:{self.port}/"
        self._loops = [self.spawn(self._heartbeats()), self.spawn(self._housekeeping())]
        self.source_lock = asyncio.Lock()
        if cfg.watch and self.source.watchable:
            ready = asyncio.Event()
            self._loops.append(self.spawn(self._follow_source(ready)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 5.0)

    def _simulation(self, graph: Graph, layout: Layout | None) -> Simulation:
        """The simulation, starting from a remembered layout where it has the node: a layout
        that had settled comes back settled (only nodes placed anew move)."""
        restored = layout.apply(graph) if layout is not None else None
        sim = Simulation(graph, self._physics_params(KNOWLEDGE_PHYSICS), seed=self.config.seed,
                         agent_params=self._physics_params(AGENT_PHYSICS))
        if layout is not None and restored is not None and restored.shape[0]:
            log.info("layout restored for %d of %d nodes", restored.shape[0], graph.node_count)
            if layout.settled:
                sim.rest(np.setdiff1d(graph.live_ids(), restored).tolist())
        return sim

    async def stop(self) -> None:
        """Close every client with 1001 (going away) and stop cleanly."""
        for task in self._loops:
            task.cancel()
        for session in list(self.sessions.values()):
            session.close(CloseCode.GOING_AWAY, "server shutting down")
        await asyncio.sleep(0)
        pending = [t for t in self._tasks if not t.done()]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 3.0)
        for task in self._tasks:
            task.cancel()
        self.runner.stop()
        self.saver.stop(final=self.sim.publish())
        self.layout_store.close()
        if self._runner_site is not None:
            await self._runner_site[0].cleanup()
        self.graph.close()
        self.store.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task owned by the server."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the simulation's output -----------------------------------------------------------------
    def _publish(self, snap: Snapshot, keyframe_all: bool) -> None:
        """Called in the simulation thread with its lock held: hand over to the loop."""
        self.publish_times.append((snap.seq, time.time()))
        self.loop.call_soon_threadsafe(self._on_snapshot, snap, keyframe_all)

    def _on_snapshot(self, snap: Snapshot, keyframe_all: bool) -> None:
        self.graph.snapshot_published(snap)
        self.hub.on_snapshot(snap, keyframe_all)

    def _graph_changed(self, msg: GraphChanged) -> None:
        data = msg.to_json()
        for session in self.sessions.values():
            session.send_json(data)

    def _sssp_frame(self, result: ShortestPaths) -> bytes:
        return encode_sssp(result.source, result.distance, result.parent,
                           seq=self.graph.sssp_seq, epoch=self.graph.epoch)

    def _sssp_changed(self, result: ShortestPaths) -> None:
        frame = self._sssp_frame(result)
        for client_id in self.hub.subs:
            session = self.sessions.get(client_id)
            if session is not None:
                session.send_bytes(frame)

    def _layout_saved(self) -> None:
        """Called in the saver's thread after each save (one increment: no lock needed)."""
        self.metrics.layout_saves += 1

    # -- the source -----------------------------------------------------------------------------
    async def _follow_source(self, ready: asyncio.Event) -> None:
        """Apply every change of the watched source (one topology change per burst)."""
        v = self.settings.value
        async for update in watch_source(
                self.source, quiet_ms=v("system.source.watchQuietMs"),
                max_wait_ms=v("system.source.watchMaxWaitMs"), ready=ready,
                lock=self.source_lock):
            await self._apply_update(update)

    async def _apply_update(self, update: SourceUpdate) -> None:
        for err in update.errors:
            self.metrics.source_errors += 1
            log.warning("%s (the graph keeps its last good version)", err)
        if update.diff:
            done = await self.graph.apply_change(update.diff)
            self.metrics.source_changes += 1
            log.info("source changed: %s", update.diff.summary())
            if done.added_nodes:
                self.runner.interaction()  # stream fast while newcomers find their place

    async def reload_source(self) -> dict[str, Any]:
        """Read the whole source again and serve it as a new epoch (clients refetch)."""
        async with self.source_lock:
            data = await self.loop.run_in_executor(None, self.source.reload)
            graph = Graph.from_data(data)
            epoch = self.settings.start_epoch()
            await self.graph.reload(graph, epoch)
        self.metrics.source_reloads += 1
        self.runner.request_snapshot()
        return {"epoch": epoch, "nodesCount": graph.node_count, "edgesCount": graph.edge_count}

    # -- identities and bans ----------------------------------------------------------------------
    def identity_of(self, request: web.Request, token: str | None) -> str:
        """Who is behind a request: the token with auth, else the address (§8)."""
        if self.config.token is not None and token is not None:
            return "token:" + token
        if self.config.trusted_proxy:
            forwarded = request.headers.get("X-Forwarded-For")
            if forwarded:
                return forwarded.split(",")[0].strip()
        return request.remote or "unknown"

    def ban(self, identity: str) -> None:
        """An identity was just banned: tell its connections, then close them with 1008."""
        self.metrics.bans += 1
        wait_ms = int(self.limiter.banned_for(identity) * 1000)
        err = ProtocolError(ErrorCode.BANNED, "banned for too many rate-limit violations",
                            retry_after_ms=wait_ms)
        for session in list(self.sessions.values()):
            if session.identity == identity:
                session.send_json(control.ErrorMessage.of(err).to_json())
                session.finish(CloseCode.POLICY, "banned")

    def sessions_list(self) -> Iterable[Session]:
        """Open sessions."""
        return list(self.sessions.values())

    # -- the WebSocket ------------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """``GET /ws``: the stream and the control channel (§2–§6)."""
        ws = web.WebSocketResponse(compress=False, autoping=False, heartbeat=None,
                                   max_msg_size=self.ws_settings.max_message_size)
        await ws.prepare(request)
        resume = request.query.get("resume")
        now = time.monotonic()
        reconnect = resume is not None and (resume in self.sessions
                                            or self.known.get(resume, 0) > now)
        client_id = resume if reconnect and resume is not None else secrets.token_urlsafe(12)
        old = self.sessions.get(client_id)
        if old is not None:
            old.close(CloseCode.NORMAL, "replaced by a resumed connection")
            self.hub.unsubscribe(old)
        self.known.pop(client_id, None)
        session = Session(self, request, ws, client_id, request[IDENTITY], request[ADMIN])
        self.sessions[client_id] = session
        self.metrics.connections += 1
        self.metrics.connections_total += 1
        session.send_json(self._established(client_id, reconnect))
        session.send_bytes(self.settings_endpoint.path_table())
        try:
            await session.run()
        finally:
            if self.sessions.get(client_id) is session:
                del self.sessions[client_id]
                self.hub.unsubscribe(session)
                self.known[client_id] = time.monotonic() + self.ws_settings.resume_window
            self.metrics.connections -= 1
        return ws

    def _established(self, client_id: str, reconnect: bool) -> dict[str, Any]:
        snap = self.graph.latest
        ws = self.ws_settings
        return control.ConnectionEstablished(
            client_id=client_id, epoch=self.graph.epoch, seq=snap.seq if snap else 0,
            topology_version=self.sim.graph.topology_version, is_reconnection=reconnect,
            settings={"revision": self.settings.revision,
                      "schemaVersion": self.settings.schema_version,
                      "digest": self.settings.digest().hex()},
            heartbeat={"intervalMs": int(ws.heartbeat_interval * 1000),
                       "timeoutMs": int(ws.heartbeat_timeout * 1000)},
            rate_limits=self.limiter.limits.as_json(),
        ).to_json()

    async def handle_control(self, session: Session, msg: control.ClientMessage) -> None:
        """One JSON message from a client (§5)."""
        if isinstance(msg, control.Subscribe):
            self._subscribe(session, msg)
        elif isinstance(msg, control.Unsubscribe):
            self.hub.unsubscribe(session)
        elif isinstance(msg, control.Ping):
            session.send_json(control.Pong(msg.timestamp, msg.id).to_json())
        elif isinstance(msg, control.RequestKeyframe):
            if not self.hub.request_keyframe(session.client_id):
                raise ProtocolError(ErrorCode.MALFORMED_FRAME,
                                    "request_keyframe needs a subscription")
        elif isinstance(msg, control.Resume):
            session.send_bytes(self.settings_endpoint.sync_reply(0, msg.settings_revision))
            if msg.epoch != self.graph.epoch:
                g = self.sim.graph
                session.send_json(GraphChanged(self.graph.epoch, g.topology_version,
                                               g.node_count, g.edge_count,
                                               refetch=True).to_json())
        elif isinstance(msg, control.SetSsspSource):
            try:
                await self.graph.set_sssp_source(msg.source)
            except GraphError as exc:
                raise ProtocolError(ErrorCode.UNKNOWN_NODE, str(exc)) from None

    def _subscribe(self, session: Session, msg: control.Subscribe) -> None:
        if msg.format == "v1":
            live = self.sim.graph.live_ids()
            if live.shape[0] and int(live.max()) > V1_MAX_ID:
                raise ProtocolError(ErrorCode.FORMAT_UNSUPPORTED,
                                    f"node ids reach {int(live.max())}, above V1's 16383: "
                                    "subscribe to v2 or q")
        fastest = 1000.0 / self.ws_settings.max_update_rate
        wanted = msg.interval_ms if msg.interval_ms is not None else fastest
        granted = min(max(float(wanted), fastest), 10_000.0)
        velocity = bool(msg.velocity) and msg.format == "q"
        session.send_json(control.SubscriptionConfirmed(
            msg.format, round(granted), velocity, msg.id).to_json())
        self.hub.subscribe(session, msg.format, velocity, granted / 1000.0)
        if self.graph.sssp.source is not None:
            session.send_bytes(self._sssp_frame(self.graph.sssp))

    # -- heartbeats and housekeeping ---------------------------------------------------------------
    async def _heartbeats(self) -> None:
        """WebSocket pings every interval; a peer silent for the timeout is dropped (§8)."""
        while True:
            ws = self.ws_settings
            await asyncio.sleep(min(1.0, ws.heartbeat_interval / 4, ws.heartbeat_timeout / 4))
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if session.closed:
                    continue
                if now - session.last_received > ws.heartbeat_timeout:
                    session.close(CloseCode.GOING_AWAY, "no sign of life")
                elif now - session.last_ping >= ws.heartbeat_interval:
                    session.last_ping = now
                    self.spawn(self._ping(session))

    @staticmethod
    async def _ping(session: Session) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await session.ws.ping()

    async def _housekeeping(self) -> None:
        """Drop idle rate-limit state and expired resume ids."""
        while True:
            await asyncio.sleep(10.0)
            self.limiter.cleanup()
            now = time.monotonic()
            for cid in [c for c, until in self.known.items() if until < now]:
                del self.known[cid]

    # -- settings with a live effect ----------------------------------------------------------
    def _physics_params(self, prefix: str) -> PhysicsParams:
        names = PhysicsParams.__dataclass_fields__
        values = {name: self.settings.value(prefix + name) for name in names}
        return PhysicsParams(**values)

    def _settings_changed(self, change: ChangeSet) -> None:
        paths = [self.settings.path_of(pid) for pid, _ in change.entries]
        for prefix, agent in ((KNOWLEDGE_PHYSICS, False), (AGENT_PHYSICS, True)):
            if any(p.startswith(prefix) for p in paths):
                self.spawn(self.graph.set_params(self._physics_params(prefix), agent=agent))
        if any(p.startswith("system.") for p in paths):
            self._load_live_settings()

    def _load_live_settings(self) -> None:
        v = self.settings.value
        w = "system.websocket."
        self.ws_settings = WsSettings(
            heartbeat_interval=v(w + "heartbeatIntervalMs") / 1000,
            heartbeat_timeout=v(w + "heartbeatTimeoutMs") / 1000,
            max_message_size=v(w + "maxMessageSize"),
            outbox_limit=v(w + "outboxLimit"),
            error_replies_per_second=v(w + "errorRepliesPerSecond"),
            resume_window=v(w + "resumeWindowMs") / 1000,
            max_update_rate=v(w + "maxUpdateRate"),
        )
        self.runner.cadence = Cadence(
            min_rate=v(w + "minUpdateRate"), max_rate=v(w + "maxUpdateRate"),
            motion_threshold=v(w + "motionThreshold"), motion_speed=v(w + "motionSpeed"),
            motion_damping=v(w + "motionDamping"),
            settled_keyframe_interval=v(w + "settledKeyframeIntervalMs") / 1000)
        self.hub.settings = HubSettings(
            deadband=v(w + "positionDeadband"), high_water=v(w + "slowClientHighWaterBytes"),
            slow_timeout=v(w + "slowClientTimeoutMs") / 1000)
        r = "system.rateLimits."
        limits = Limits(
            per_minute={c: v(f"{r}{c}.perMinute") for c in ("positions", "settings", "control")},
            burst={c: v(f"{r}{c}.burst") for c in ("positions", "settings", "control")},
            ban_threshold=v(r + "banThreshold"), violation_window=v(r + "violationWindowMs") / 1000,
            ban_duration=v(r + "banDurationMs") / 1000, idle_timeout=v(r + "idleTimeoutMs") / 1000)
        self.limiter.reconfigure(limits)
        self._save_interval = v("system.layout.saveIntervalMs") / 1000
        for session in self.sessions.values():
            for cls, bucket in session.buckets.items():
                bucket.reconfigure(limits.per_minute[cls] / 60.0, float(limits.burst[cls]))

    def metrics_json(self, snapshots: bool = False) -> dict[str, Any]:
        """``/api/metrics``: the counters and the stream's state (``snapshots``: when each of
        the last 4,096 snapshots was published, as ``[seq, unix time]``)."""
        out = self.metrics.as_json()
        snap = self.graph.latest
        out["stream"] = {
            "rateHz": round(self.runner.rate, 2), "seq": snap.seq if snap else 0,
            "settled": snap.settled if snap else False, "subscribers": len(self.hub.subs),
            "epoch": self.graph.epoch,
        }
        out["rateLimitState"] = len(self.limiter)
        if snapshots:
            out["snapshotTimes"] = [list(pair) for pair in list(self.publish_times)]
        return out


async def serve(config: ServerConfig, *, announce: bool = True) -> None:
    """Run the server until Ctrl-C or SIGTERM, then close clients with 1001 and stop."""
    server = GraphwireServer(config)
    await server.start()
    if announce:
        print(f"graphwire: serving {config.source or 'the demo graph'} "
              f"({server.sim.graph.node_count} nodes) on {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
        if announce:
            print("graphwire: stopped", flush=True)
