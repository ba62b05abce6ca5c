"""The graphwire server: builds every part once, wires them, and runs their lifecycle.

``create_app`` loads the graph, opens the settings, and builds the parts, each given exactly
what it needs (no part knows this module): the settings service (SQLite), the live settings
derived from it, the metrics, the rate limiter, the connections registry, the graph service
(simulation + worker threads), the simulation runner (its own thread), the stream hub, the
settings endpoint and the WebSocket endpoint. It stores them under the keys of ``server.keys``
for the route handlers and registers their lifecycle as aiohttp cleanup contexts.
``GraphwireServer`` runs such an app on a socket; ``serve`` runs it until a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import numpy as np
from aiohttp import web

from graphwire.graph.layout_file import Layout, read_layout
from graphwire.graph.live import LiveSource
from graphwire.graph.model import Graph
from graphwire.protocol.control import CloseCode
from graphwire.settings import ChangeSet, SettingsService, SettingsStore, StoreError
from graphwire.settings.layout_store import LayoutSaver, LayoutStore
from graphwire.settings.schema import AGENT_PHYSICS, KNOWLEDGE_PHYSICS
from graphwire.simulation import PhysicsParams, Simulation, Snapshot

from .access import AccessPolicy
from .config import ServerConfig, default_db
from .connections import Connections
from .graph_service import GraphService
from .http import make_middlewares
from .keys import (
    ACCESS,
    CONFIG,
    CONNECTIONS,
    GRAPH_SERVICE,
    HUB,
    LIMITER,
    METRICS,
    RUNNER,
    SETTINGS,
    SOURCE,
    STREAM_STATE,
    WEBSOCKETS,
)
from .live_settings import LiveSettings, SettingsInForce, physics_params
from .metrics import Metrics
from .rate_limit import RateLimiter
from .routes import add_routes
from .runner import SimulationRunner
from .settings_endpoint import SettingsEndpoint
from .source import SourceFollower
from .stream_hub import StreamHub
from .warmup import warm_up
from .ws import WebSocketEndpoint, sssp_frame

log = logging.getLogger("graphwire.server")
T = TypeVar("T")

HOUSEKEEPING_INTERVAL = 10.0
"""Seconds between sweeps of idle rate-limit state and expired resume ids."""
SHUTDOWN_GRACE = 3.0
"""Seconds connections get to take their 1001 close at shutdown."""
WATCH_START_TIMEOUT = 5.0
"""Seconds the start waits for the source's file watch to be in place."""


class BackgroundTasks:
    """Tasks the server owns (closing handshakes, live physics changes): kept referenced until
    done, awaited at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run a coroutine in the background."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the tasks, then cancel what is left."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), grace)
        for task in list(self._tasks):
            task.cancel()


def open_settings(config: ServerConfig) -> SettingsService:
    """The settings service on the configured database, with the ``--set`` overrides applied
    and the epoch raised (§6). The epoch lives in that database, so it must be a file."""
    db = config.db or str(default_db())
    if db.strip() in ("", ":memory:") or db.startswith("file::memory:"):
        raise StoreError(f"--db {db!r}: the settings database also keeps the epoch (§6), which "
                         "must grow across restarts; give a file")
    store = SettingsStore(db, log_revisions=config.settings_log)
    try:
        settings = SettingsService(store, admin_required=config.admin_token is not None)
        if config.overrides:
            settings.apply_paths(config.overrides, admin=True)
        settings.start_epoch()
    except BaseException:
        store.close()
        raise
    return settings


async def create_app(config: ServerConfig) -> web.Application:
    """Load the graph and build every part of a server, as an aiohttp application."""
    loop = asyncio.get_running_loop()
    settings = open_settings(config)  # first: a bad database fails before a long load
    source = LiveSource(config.source)
    layouts = LayoutStore(settings.store.path, source.identity)
    try:
        data = await loop.run_in_executor(None, source.load)
        layout = read_layout(config.layout) if config.layout else layouts.load()
        await loop.run_in_executor(None, warm_up)
    except BaseException:
        layouts.close()
        settings.store.close()
        raise
    in_force = SettingsInForce(LiveSettings.from_settings(settings.value))
    live = in_force.live
    tasks = BackgroundTasks()
    metrics = Metrics()
    limiter = RateLimiter(live.limits, auth=config.token is not None)
    connections = Connections(metrics)
    sim = start_simulation(Graph.from_data(data), layout, physics_params(settings.value),
                           physics_params(settings.value, agent=True), config.seed)

    def broadcast_sssp(_: object) -> None:
        connections.send_to(hub.subs, sssp_frame(graph_service))

    graph_service = GraphService(sim, settings.epoch, loop,
                         lambda change: connections.broadcast_json(change.to_json()),
                         broadcast_sssp)

    def on_snapshot(snap: Snapshot, keyframe_all: bool) -> None:
        graph_service.snapshot_published(snap)
        hub.on_snapshot(snap, keyframe_all)

    def publish(snap: Snapshot, keyframe_all: bool) -> None:
        # the simulation thread, its lock held: hand the snapshot over to the loop in order
        metrics.snapshot_published(snap.seq)
        loop.call_soon_threadsafe(on_snapshot, snap, keyframe_all)

    runner = SimulationRunner(sim, publish, live.cadence, physics_hz=config.physics_hz)
    hub = StreamHub(metrics, lambda: graph_service.epoch, lambda: graph_service.sssp,
                    runner.request_snapshot, lambda: 1.0 / runner.rate, live.hub)
    settings_endpoint = SettingsEndpoint(settings, metrics, connections)
    websockets = WebSocketEndpoint(
        settings=in_force, metrics=metrics, limiter=limiter, connections=connections, hub=hub,
        graph_service=graph_service, runner=runner, settings_service=settings,
        settings_endpoint=settings_endpoint, spawn=tasks.spawn)
    settings.subscribe(_settings_follower(settings, in_force, graph_service, runner, hub, limiter,
                                          tasks.spawn))

    def stream_state() -> dict[str, object]:
        snap = graph_service.latest
        return {"stream": {"rateHz": round(runner.rate, 2), "seq": snap.seq if snap else 0,
                           "settled": snap.settled if snap else False,
                           "subscribers": len(hub.subs), "epoch": graph_service.epoch},
                "rateLimitState": len(limiter)}

    access = AccessPolicy(bind=config.host, port=config.port, token=config.token,
                          admin_token=config.admin_token, allow_origins=config.allow_origins,
                          server_names=config.server_names, trusted_proxy=config.trusted_proxy)
    app = web.Application(middlewares=make_middlewares(access, limiter, connections, metrics),
                          client_max_size=config.max_body)
    app[CONFIG], app[METRICS], app[SETTINGS] = config, metrics, settings
    app[GRAPH_SERVICE] = graph_service
    app[RUNNER], app[HUB], app[WEBSOCKETS] = runner, hub, websockets
    app[STREAM_STATE], app[ACCESS] = stream_state, access
    app[LIMITER], app[CONNECTIONS] = limiter, connections
    def keyframes_for_all() -> None:
        for client_id in list(hub.subs):
            hub.request_keyframe(client_id)

    follower = SourceFollower(source, graph_service, settings, metrics,
                              interaction=runner.interaction,
                              request_snapshot=runner.request_snapshot,
                              keyframes=keyframes_for_all)
    app[SOURCE] = follower
    add_routes(app, config.static_dir)

    async def settings_store(_: web.Application) -> AsyncIterator[None]:
        yield
        settings.store.close()

    async def graph_workers(_: web.Application) -> AsyncIterator[None]:
        yield
        graph_service.close()

    async def simulation_thread(_: web.Application) -> AsyncIterator[None]:
        runner.start()
        yield
        await loop.run_in_executor(None, runner.stop)

    async def layout_memory(_: web.Application) -> AsyncIterator[None]:
        # saves while the layout moves; once more at the end, after the simulation stopped
        def saved() -> None:  # in the saver's thread: one increment needs no lock
            metrics.layout_saves += 1
        saver = LayoutSaver(layouts, lambda: graph_service.latest,
                            lambda: in_force.live.layout_save_interval, on_save=saved)
        saver.start()
        yield
        await loop.run_in_executor(None, lambda: saver.stop(final=sim.publish()))
        layouts.close()

    async def source_watch(_: web.Application) -> AsyncIterator[None]:
        if not (config.watch and source.watchable):
            yield
            return
        ready = asyncio.Event()
        task = asyncio.create_task(follower.follow(ready))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ready.wait()), WATCH_START_TIMEOUT)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def housekeeping(_: web.Application) -> AsyncIterator[None]:
        async def sweep() -> None:
            while True:
                await asyncio.sleep(HOUSEKEEPING_INTERVAL)
                limiter.cleanup()
                connections.expire()
        task = asyncio.create_task(sweep())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close_connections(_: web.Application) -> None:
        connections.close_all(CloseCode.GOING_AWAY, "server shutting down")
        await asyncio.sleep(0)
        await tasks.drain(SHUTDOWN_GRACE)

    # cleanup contexts end in reverse order: loops, then the thread, workers, the database
    app.cleanup_ctx.extend([settings_store, layout_memory, graph_workers, simulation_thread,
                            housekeeping, source_watch])
    app.on_shutdown.append(close_connections)
    return app


def start_simulation(graph: Graph, layout: Layout | None, params: PhysicsParams,
                     agent_params: PhysicsParams, seed: int) -> Simulation:
    """The simulation, starting from a remembered layout where it has the node (so no
    multilevel start runs); a layout that had settled comes back settled, only the nodes
    placed anew (and their neighbourhoods) moving."""
    restored = layout.apply(graph) if layout is not None else np.empty(0, np.int64)
    sim = Simulation(graph, params, seed=seed, agent_params=agent_params)
    if layout is not None and restored.shape[0]:
        log.info("layout restored for %d of %d nodes", restored.shape[0], graph.node_count)
        if layout.settled:
            sim.rest(np.setdiff1d(graph.live_ids(), restored).tolist())
    return sim


def _settings_follower(settings: SettingsService, in_force: SettingsInForce,
                       graph_service: GraphService, runner: SimulationRunner, hub: StreamHub,
                       limiter: RateLimiter,
                       spawn: Callable[[Coroutine[Any, Any, Any]], Any]
                       ) -> Callable[[ChangeSet], None]:
    """The listener that gives a committed change its live effect: physics parameters to the
    simulation, ``system.*`` settings to the runner, the hub, the limiter and the sessions."""
    def follow(change: ChangeSet) -> None:
        paths = [settings.path_of(pid) for pid, _ in change.entries]
        for prefix, agent in ((KNOWLEDGE_PHYSICS, False), (AGENT_PHYSICS, True)):
            if any(p.startswith(prefix) for p in paths):
                spawn(graph_service.set_params(physics_params(settings.value, agent=agent),
                                       agent=agent))
        if any(p.startswith("system.") for p in paths):
            live = in_force.live = LiveSettings.from_settings(settings.value)
            runner.cadence = live.cadence
            hub.settings = live.hub
            limiter.reconfigure(live.limits)
    return follow


class GraphwireServer:
    """A server on a socket: ``await start()``, then ``await stop()`` (the app's parts are
    ``server[KEY]``)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.url = ""
        self.port = config.port
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None

    def __getitem__(self, key: web.AppKey[T]) -> T:
        assert self.app is not None, "the server is not started"
        return self.app[key]

    async def start(self) -> None:
        """Build the app and serve it (port 0: a free port, then ``port`` is the real one)."""
        cfg = self.config
        self.app = await create_app(cfg)
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None,
                                     shutdown_timeout=SHUTDOWN_GRACE)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port)
        await site.start()
        for addr in self._runner.addresses:
            if isinstance(addr, tuple) and len(addr) >= 2:
                self.port = int(addr[1])
                break
        cfg.port = self.app[ACCESS].port = self.port  # the Origin check needs the real port
        host = cfg.host if ":" not in cfg.host else f"[{cfg.host}]"
        self.url = f"http://{host}:{self.port}/"

    async def stop(self) -> None:
        """Close every client with 1001 (going away) and stop cleanly."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def serve(config: ServerConfig, *, announce: bool = True) -> None:
    """Run the server until Ctrl-C or SIGTERM, then close clients with 1001 and stop."""
    server = GraphwireServer(config)
    await server.start()
    if announce:
        nodes = server[GRAPH_SERVICE].graph.node_count
        print(f"graphwire: serving {config.source or 'the demo graph'} ({nodes} nodes) on "
              f"{server.url}", flush=True)
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
