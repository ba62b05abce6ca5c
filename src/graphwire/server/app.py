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
import secrets
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from aiohttp import web

from graphwire.cluster.commands import CommandClient
from graphwire.cluster.keys import Keys
from graphwire.cluster.lease import Lease
from graphwire.cluster.link import Link, RedisDownError, settle_tasks
from graphwire.cluster.settings_sync import SettingsReplica, load_paths, load_state
from graphwire.graph.layout_file import Layout, read_layout
from graphwire.graph.live import LiveSource
from graphwire.graph.model import Graph
from graphwire.protocol.control import CloseCode, GraphChanged
from graphwire.settings import ChangeSet, SettingsService, SettingsStore, StoreError
from graphwire.settings.layout_store import LayoutSaver, LayoutStore
from graphwire.settings.schema import AGENT_PHYSICS, KNOWLEDGE_PHYSICS
from graphwire.simulation import PhysicsParams, ShortestPaths, Simulation, Snapshot

from .access import AccessPolicy
from .cluster_sim import ClusterSimulation
from .config import ServerConfig, default_db
from .connections import Connections
from .gateway import (
    GatewayFeed,
    RemoteGraph,
    RemoteRunner,
    RemoteSource,
    ResumableIds,
)
from .graph_service import GraphService
from .handover import SnapshotHandover
from .http import make_middlewares
from .keys import (
    ACCESS,
    CLUSTER,
    CONFIG,
    CONNECTIONS,
    GRAPH_SERVICE,
    HUB,
    LIMITER,
    METRICS,
    RUNNER,
    SETTINGS,
    SETTINGS_WRITES,
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
from .settings_writes import LocalSettingsWrites, RemoteSettingsWrites
from .source import SourceFollower, report_skipped
from .stream_hub import StreamHub
from .warmup import warm_up
from .ws import WebSocketEndpoint

log = logging.getLogger("graphwire.server")
T = TypeVar("T")

HOUSEKEEPING_INTERVAL = 10.0
"""Seconds between sweeps of idle rate-limit state and expired resume ids."""
SHUTDOWN_GRACE = 3.0
"""Seconds connections get to take their 1001 close at shutdown."""
LEFTOVER_GRACE = 3.0
"""Seconds the tasks still running when the server has stopped get to end, once cancelled."""
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


def _remembered(layouts: LayoutStore) -> Layout | None:
    """The stored layout, or None (laid out afresh) when it cannot be read: a damaged copy
    of positions must not keep the server from starting."""
    try:
        return layouts.load()
    except StoreError as exc:
        log.warning("%s; laying the graph out afresh", exc)
        return None


def open_settings(config: ServerConfig) -> SettingsService:
    """The settings service on the configured database, with the ``--set`` overrides applied
    and the epoch raised (§7). The epoch lives in that database, so it must be a file."""
    db = config.db or str(default_db())
    if db.strip() in ("", ":memory:") or db.startswith("file::memory:"):
        raise StoreError(f"--db {db!r}: the settings database also keeps the epoch "
                         "(docs/protocol.md §7), which "
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
    """Load the graph and build every part of a server, as an aiohttp application (a gateway
    of a cluster builds no simulation: :func:`create_gateway_app`)."""
    if config.role not in ("all", "simulation", "gateway"):
        raise ValueError(f"unknown role {config.role!r}: all, simulation or gateway")
    if config.role != "all" and not config.redis:
        raise ValueError(f"--role {config.role} needs --redis URL")
    if config.redis:  # a URL that can never work fails now, not after a long load
        probe = Link(config.redis)
        try:
            await probe.check()
        finally:
            await probe.close()
    if config.role == "gateway":
        return await create_gateway_app(config)
    loop = asyncio.get_running_loop()
    settings = open_settings(config)  # first: a bad database fails before a long load
    source = LiveSource(config.source)
    layouts = LayoutStore(settings.store.path, source.identity)
    try:
        data = await loop.run_in_executor(None, source.load)
        layout = read_layout(config.layout) if config.layout else _remembered(layouts)
        await loop.run_in_executor(None, warm_up)
    except BaseException:
        layouts.close()
        settings.store.close()
        raise
    in_force = SettingsInForce(LiveSettings.from_settings(settings.value))
    live = in_force.live
    tasks = BackgroundTasks()
    metrics = Metrics()
    report_skipped(data, metrics)
    limiter = RateLimiter(live.limits, auth=config.token is not None)
    connections = Connections(metrics)
    sim = start_simulation(Graph.from_data(data), layout, physics_params(settings.value),
                           physics_params(settings.value, agent=True), config.seed)

    cluster: ClusterSimulation | None = None

    def broadcast_sssp(result: ShortestPaths) -> None:
        frame = graph_service.sssp_frame()
        connections.send_to(hub.subs, frame)
        hub.paths_changed()
        if cluster is not None:
            cluster.sssp_changed(frame, graph_service.sssp_seq, result.source)

    def graph_changed(change: GraphChanged) -> None:
        connections.broadcast_json(change.to_json())
        if cluster is not None:
            cluster.graph_changed(change)

    graph_service = GraphService(sim, settings.epoch, loop, graph_changed, broadcast_sssp)

    def on_snapshot(snap: Snapshot, keyframe_all: bool) -> None:
        if cluster is not None and cluster.fresh:
            keyframe_all, cluster.fresh = True, False  # the first frames of an epoch
        graph_service.snapshot_published(snap)
        if cluster is not None:
            cluster.streams_due()
        hub.on_snapshot(snap, keyframe_all)
        if cluster is not None:
            cluster.snapshot()

    handover = SnapshotHandover(loop, on_snapshot, metrics)

    def publish(snap: Snapshot, keyframe_all: bool) -> None:
        # the simulation thread, its lock held: hand the snapshot over to the loop in order
        metrics.snapshot_published(snap.seq)
        handover.publish(snap, keyframe_all)

    runner = SimulationRunner(sim, publish, live.cadence, physics_hz=config.physics_hz)
    hub = StreamHub(metrics, lambda: graph_service.epoch, lambda: graph_service.sssp,
                    runner.request_snapshot, lambda: 1.0 / runner.rate, live.hub)
    writes = LocalSettingsWrites(settings)
    link: Link | None = None
    if config.redis:
        link = Link(config.redis, Keys(config.redis_namespace))
        holder = config.node_id or f"sim-{secrets.token_hex(4)}"
        lease = Lease(link.redis, link.keys, holder, ttl=config.lease_ttl)
        cluster = ClusterSimulation(link, lease, graph_service, hub, runner, settings,
                                    lambda epoch: _set_epoch(graph_service, settings, epoch))
        writes = LocalSettingsWrites(settings, lambda: cluster is not None and cluster.holding)
    parts = _Parts(config, metrics, limiter, connections, settings, in_force, tasks, hub,
                   graph_service, runner, writes, link)
    settings.subscribe(_settings_follower(settings, in_force, graph_service, runner, hub,
                                          limiter, tasks.spawn))
    app = _assemble(parts, cluster.health if cluster is not None else None)

    follower = SourceFollower(source, graph_service, settings, metrics,
                              interaction=runner.interaction,
                              request_snapshot=runner.request_snapshot,
                              keyframes=hub.request_keyframes)
    app[SOURCE] = follower
    if cluster is not None:
        cluster.reload_source = follower.reload

    async def settings_store(_: web.Application) -> AsyncIterator[None]:
        yield
        settings.store.close()

    async def graph_workers(_: web.Application) -> AsyncIterator[None]:
        yield
        graph_service.close()

    async def simulation_thread(_: web.Application) -> AsyncIterator[None]:
        if cluster is not None:
            cluster.start()  # the runner starts once this process holds the lease
        else:
            runner.start()
        yield
        if cluster is not None:
            await cluster.stop()
        await loop.run_in_executor(None, runner.stop)
        if link is not None:
            await link.close()

    async def layout_memory(_: web.Application) -> AsyncIterator[None]:
        # saves while the layout moves; once more at the end, after the simulation stopped
        def saved() -> None:  # in the saver's thread: one increment needs no lock
            metrics.layout_saves += 1
        saver = LayoutSaver(layouts, lambda: graph_service.latest,
                            lambda: in_force.live.layout_save_interval, on_save=saved)
        saver.start()
        yield
        # a standby that never held the lease has no layout of its own to remember
        final = sim.publish() if cluster is None or cluster.takeovers else None
        await loop.run_in_executor(None, lambda: saver.stop(final=final))
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

    # cleanup contexts end in reverse order: loops, then the thread, workers, the database
    app.cleanup_ctx[:0] = [settings_store, layout_memory, graph_workers, simulation_thread]
    app.cleanup_ctx.append(source_watch)
    return app


def _set_epoch(graph: GraphService, settings: SettingsService, epoch: int) -> None:
    """The cluster chose this simulation's epoch (it took the lease)."""
    graph.epoch = epoch
    settings.epoch = epoch


@dataclass(slots=True)
class _Parts:
    """What every role's app holds (a simulation's or a gateway's graph and runner)."""

    config: ServerConfig
    metrics: Metrics
    limiter: RateLimiter
    connections: Connections
    settings: SettingsService
    in_force: SettingsInForce
    tasks: BackgroundTasks
    hub: StreamHub
    graph_service: GraphService | RemoteGraph
    runner: SimulationRunner | RemoteRunner
    writes: LocalSettingsWrites | RemoteSettingsWrites
    link: Link | None


def _assemble(p: _Parts, cluster_state: Callable[[], dict[str, Any]] | None
              ) -> web.Application:
    """The app of any role: the endpoints, the keys the routes read, housekeeping, shutdown."""
    config, connections, hub, runner = p.config, p.connections, p.hub, p.runner
    graph_service = p.graph_service
    settings_endpoint = SettingsEndpoint(p.settings, p.metrics, connections, p.writes)
    resumable = None
    if p.link is not None:
        resumable = ResumableIds(p.link, lambda: p.in_force.live.connection.resume_window)
    websockets = WebSocketEndpoint(
        settings=p.in_force, metrics=p.metrics, limiter=p.limiter, connections=connections,
        hub=hub, graph_service=graph_service, runner=runner, settings_service=p.settings,
        settings_endpoint=settings_endpoint, spawn=p.tasks.spawn, resumable=resumable)

    def health() -> dict[str, Any]:
        out: dict[str, Any] = {"role": config.role}
        if p.link is not None:
            out["redis"] = p.link.health()
        if cluster_state is not None:
            out.update(cluster_state())
        return out

    def stream_state() -> dict[str, object]:
        snap = graph_service.latest
        out: dict[str, object] = {
            "stream": {"rateHz": round(runner.rate, 2), "seq": snap.seq if snap else 0,
                       "settled": snap.settled if snap else False,
                       "subscribers": len(hub.subs), "epoch": graph_service.epoch},
            "rateLimitState": len(p.limiter)}
        if p.link is not None:
            out["cluster"] = health()
        return out

    access = AccessPolicy(bind=config.host, port=config.port, token=config.token,
                          admin_token=config.admin_token, allow_origins=config.allow_origins,
                          server_names=config.server_names, trusted_proxy=config.trusted_proxy)
    app = web.Application(middlewares=make_middlewares(access, p.limiter, connections,
                                                       p.metrics),
                          client_max_size=config.max_body)
    app[CONFIG], app[METRICS], app[SETTINGS] = config, p.metrics, p.settings
    app[GRAPH_SERVICE] = graph_service
    app[RUNNER], app[HUB], app[WEBSOCKETS] = runner, hub, websockets
    app[STREAM_STATE], app[ACCESS] = stream_state, access
    app[LIMITER], app[CONNECTIONS] = p.limiter, connections
    app[SETTINGS_WRITES] = p.writes
    if p.link is not None:
        app[CLUSTER] = health
    add_routes(app, config.static_dir)

    async def housekeeping(_: web.Application) -> AsyncIterator[None]:
        async def sweep() -> None:
            while True:
                await asyncio.sleep(HOUSEKEEPING_INTERVAL)
                p.limiter.cleanup()
                connections.expire()
                if resumable is not None and connections.open:
                    await resumable.remember(list(connections.open))
        task = asyncio.create_task(sweep())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close_connections(_: web.Application) -> None:
        connections.close_all(CloseCode.GOING_AWAY, "server shutting down")
        await asyncio.sleep(0)
        await p.tasks.drain(SHUTDOWN_GRACE)

    app.cleanup_ctx.append(housekeeping)
    app.on_shutdown.append(close_connections)
    return app


async def create_gateway_app(config: ServerConfig) -> web.Application:
    """A gateway: no simulation; mirror what the lease holder publishes over Redis, serve it
    to clients, forward their commands (docs/deploy.md)."""
    assert config.redis is not None
    link = Link(config.redis, Keys(config.redis_namespace))
    name = config.node_id or f"gw-{secrets.token_hex(4)}"
    try:
        paths = await _wait_for_simulation(link)
        # a mirror (the writer's disk holds the settings) that answers a Sync from its own log
        store = SettingsStore(":memory:", log_revisions=config.settings_log)
        store.path_ids(list(paths), paths)
        settings = SettingsService(store, admin_required=config.admin_token is not None)
        state = await load_state(link)
    except BaseException:
        await link.close()
        raise
    if state is not None:
        settings.adopt(*state)
    if config.overrides:
        log.warning("gateway: settings given with --set are ignored: set them on the "
                    "simulation, or through the API")
    in_force = SettingsInForce(LiveSettings.from_settings(settings.value))
    live = in_force.live
    metrics = Metrics()
    limiter = RateLimiter(live.limits, auth=config.token is not None)
    connections = Connections(metrics)
    commands = CommandClient(link, name)
    commands.start()
    graph = RemoteGraph(link, commands)
    runner = RemoteRunner(commands, lambda: hub.streams_in_use())  # noqa: PLW0108 (hub: below)
    hub = StreamHub(metrics, lambda: graph.epoch, _no_local_encoding, runner.request_snapshot,
                    lambda: 1.0 / runner.rate, live.hub)
    replica = SettingsReplica(link, settings)
    writes = RemoteSettingsWrites(settings, commands, replica.reached, name)
    replica.origin_of = writes.origin_of
    tasks = BackgroundTasks()
    parts = _Parts(config, metrics, limiter, connections, settings, in_force, tasks, hub,
                   graph, runner, writes, link)
    settings.subscribe(_settings_follower(settings, in_force, None, runner, hub, limiter,
                                          tasks.spawn))
    feed = GatewayFeed(link, graph, hub, runner, commands, connections.broadcast_json,
                       lambda frame: connections.send_to(hub.subs, frame))
    app = _assemble(parts, feed.health)
    app[SOURCE] = RemoteSource(graph)

    async def mirror(_: web.Application) -> AsyncIterator[None]:
        replica.start()
        await feed.start()
        yield
        await link.close()
        store.close()

    app.cleanup_ctx.insert(0, mirror)
    return app


async def _wait_for_simulation(link: Link) -> dict[str, int]:
    """The settings path ids a simulation wrote, waiting (logged once) until one has."""
    told = False
    while True:
        try:
            paths = await load_paths(link)
            if paths and await link.call(lambda: link.redis.exists(link.keys.graph)):
                return paths
        except RedisDownError:
            pass
        if not told:
            log.warning("gateway: waiting for a simulation to publish on %s (namespace %r); "
                        "the port opens once one has", link.url, link.keys.namespace)
            told = True
        await asyncio.sleep(0.2)


def _no_local_encoding() -> ShortestPaths:
    """A gateway's hub never encodes: the simulation publishes every frame."""
    raise RuntimeError("a gateway encodes no frames; the simulation publishes them")


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
                       graph_service: GraphService | None,
                       runner: SimulationRunner | RemoteRunner,
                       hub: StreamHub,
                       limiter: RateLimiter,
                       spawn: Callable[[Coroutine[Any, Any, Any]], Any]
                       ) -> Callable[[ChangeSet], None]:
    """The listener that gives a committed change its live effect: physics parameters to the
    simulation, ``system.*`` settings to the runner, the hub, the limiter and the sessions."""
    def follow(change: ChangeSet) -> None:
        paths = [settings.path_of(pid) for pid, _ in change.entries]
        for prefix, agent in ((KNOWLEDGE_PHYSICS, False), (AGENT_PHYSICS, True)):
            if graph_service is not None and any(p.startswith(prefix) for p in paths):
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
        try:
            await site.start()
        except BaseException:  # the port is taken, say: stop what setup started, then say so
            await self._runner.cleanup()
            self._runner = None
            raise
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
        role = "" if config.role == "all" else f" as {config.role}"
        what = f"{nodes} node{'' if nodes == 1 else 's'}"
        source = ("the cluster's graph" if config.role == "gateway"
                  else config.source or "the demo graph")
        print(f"graphwire: serving {source} ({what}) on {server.url}{role}", flush=True)
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


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` in a new event loop to its end, as ``asyncio.run`` does, except that the
    tasks it leaves behind get :data:`LEFTOVER_GRACE` seconds to end once cancelled, not for
    ever: a server asked to stop must exit (a redis-py read can outlive its cancellation,
    docs/deploy.md)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main)
    finally:
        try:
            left = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in left:
                task.cancel()
            if left:
                pending = loop.run_until_complete(settle_tasks(left, LEFTOVER_GRACE))
                if pending:
                    log.warning("%d tasks did not end %.0f s after the server stopped; exiting "
                                "without them: %s", len(pending), LEFTOVER_GRACE,
                                ", ".join(t.get_name() for t in pending))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
