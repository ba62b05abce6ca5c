"""The gateway role: serve clients from what a simulation publishes over Redis.

A gateway holds no simulation. It mirrors the graph (the JSON document the simulation keeps in
Redis, plus the raw layout of each published snapshot), hands the published frames to its
subscribers through the same :class:`~graphwire.server.stream_hub.StreamHub` rules a single
process uses, and forwards every command (drags, topology and settings writes, SSSP source) to
the lease holder. :class:`RemoteGraph` has the interface of
:class:`~graphwire.server.graph_service.GraphService` that the routes and sessions use, so they
do not know which one they talk to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphwire.cluster import envelope
from graphwire.cluster.commands import (
    CommandClient,
    CommandFailedError,
    CommandUnavailableError,
)
from graphwire.cluster.envelope import FrameSet
from graphwire.cluster.link import Link, RedisDownError
from graphwire.graph.model import EdgeSpec, NodeSpec
from graphwire.protocol.control import GraphChanged, Rejected
from graphwire.protocol.errors import ErrorCode, ProtocolError
from graphwire.simulation import Snapshot

from .graph_service import PositionResult, state_json
from .settings_writes import command_error
from .stream_hub import StreamHub

log = logging.getLogger("graphwire.gateway")

STREAMS_REFRESH = 3.0
"""Seconds between a gateway's reminders of the streams its clients use (the simulation
encodes a stream for gateways for 10 s after the last reminder)."""


@dataclass(frozen=True, slots=True)
class SsspChoice:
    """The shortest-path source as the simulation set it."""

    source: int | None


class GraphMirror:
    """What a gateway knows of the graph: the document the simulation keeps in Redis (nodes
    without positions, edges), with the few reads of a :class:`~graphwire.graph.model.Graph`
    that the WebSocket endpoint makes."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"topologyVersion": -1, "nodes": [], "edges": []}
        self._live = np.empty(0, np.int64)

    def load(self, doc: dict[str, Any]) -> None:
        """Take a new document."""
        self.doc = doc
        self._live = np.array([int(n["id"]) for n in doc["nodes"]], np.int64)

    @property
    def topology_version(self) -> int:
        """The topology version of the mirrored graph."""
        return int(self.doc["topologyVersion"])

    @property
    def node_count(self) -> int:
        """Live nodes."""
        return int(self._live.shape[0])

    @property
    def edge_count(self) -> int:
        """Edges."""
        return len(self.doc["edges"])

    def live_ids(self) -> np.ndarray:
        """Ids of live nodes, ascending."""
        return self._live

    @staticmethod
    def edge_json(edge: Any) -> dict[str, Any]:
        """An edge as ``/api/graph/data`` shows it (the simulation sent it so)."""
        return dict(edge)


class RemoteGraph:
    """The graph as a gateway sees it: a mirror for reads, commands for writes."""


    def __init__(self, link: Link, commands: CommandClient) -> None:
        self.link = link
        self.commands = commands
        self.epoch = 0
        self.latest: Snapshot | None = None
        self.sssp_seq = 0
        self.published_sssp = b""  # the SSSP frame the simulation published last
        self.sssp = SsspChoice(None)
        self.graph = GraphMirror()
        self._waiters: list[asyncio.Future[Snapshot]] = []
        self._topology_waiters: list[tuple[int, asyncio.Future[None]]] = []

    def sssp_frame(self) -> bytes:
        """The SSSP frame (kind 0x05) the simulation published last (empty before one)."""
        return self.published_sssp

    # -- the mirror ----------------------------------------------------------------------------
    async def reload(self) -> None:
        """Read the graph document the simulation keeps in Redis."""
        raw = await self.link.call(lambda: self.link.redis.get(self.link.keys.graph))
        if raw is not None:
            doc = await asyncio.get_running_loop().run_in_executor(None, json.loads, raw)
            self.graph.load(doc)
            version, keep = self.graph.topology_version, []
            for want, fut in self._topology_waiters:
                if want <= version and not fut.done():
                    fut.set_result(None)
                elif not fut.done():
                    keep.append((want, fut))
            self._topology_waiters = keep

    def snapshot_published(self, snap: Snapshot) -> None:
        """The newest layout (from a published frame set)."""
        self.latest = snap
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(snap)

    async def current_snapshot(self, request: Callable[[], None]) -> Snapshot:
        """The newest snapshot that shows the mirrored topology (waits for one if needed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while True:
            snap = self.latest
            if snap is not None and snap.topology_version == self.graph.topology_version:
                return snap
            if loop.time() > deadline:
                raise ProtocolError(ErrorCode.INTERNAL, "no snapshot from the simulation yet",
                                    retry_after_ms=1000)
            fut: asyncio.Future[Snapshot] = loop.create_future()
            self._waiters.append(fut)
            request()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, 2.0)

    async def data_json(self, request: Callable[[], None], settings_revision: int) -> bytes:
        """``GET /api/graph/data`` from the mirror at the newest snapshot (the mirror changes
        only on the loop, so the snapshot and the document taken together agree)."""
        snap = await self.current_snapshot(request)
        doc, epoch = self.graph.doc, self.epoch

        def build() -> bytes:
            where = {int(i): p for i, p in zip(snap.ids.tolist(), snap.pos.tolist(),
                                               strict=True)}
            nodes = []
            for node in doc["nodes"]:
                p = where.get(int(node["id"]))
                if p is not None:
                    nodes.append({**node, "x": p[0], "y": p[1], "z": p[2]})
            out = {"epoch": epoch, "seq": snap.seq, "topologyVersion": snap.topology_version,
                   "settingsRevision": settings_revision, "nodes": nodes,
                   "edges": doc["edges"]}
            return json.dumps(out, separators=(",", ":"), allow_nan=False).encode()
        return await asyncio.get_running_loop().run_in_executor(None, build)

    def state_json(self, snap: Snapshot, settings_revision: int,
                   positions: bool) -> dict[str, Any]:
        """``GET /api/graph/state`` from the mirror."""
        return state_json(self.epoch, snap, self.graph.edge_count, settings_revision, positions)

    # -- commands ------------------------------------------------------------------------------
    async def _call(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            out = await self.commands.call(op, body)
        except (CommandUnavailableError, CommandFailedError) as exc:
            raise command_error(exc) from None
        version = out.get("topologyVersion")
        if version is not None and self.graph.topology_version < int(version):
            # the change's graph_changed is on its way: answer once the mirror shows it
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._topology_waiters.append((int(version), fut))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, self.commands.timeout)
        return out

    async def positions(self, ids: np.ndarray, pos: np.ndarray, *, pin: bool,
                        release: bool) -> PositionResult:
        """Forward user-moved nodes; the simulation checks and applies them."""
        coords = [[c if math.isfinite(c) else None for c in p] for p in pos.tolist()]
        out = await self._call("positions", {"ids": ids.tolist(), "pos": coords, "pin": pin,
                                             "release": release})
        return PositionResult(int(out["accepted"]),
                              tuple(Rejected(int(i), str(r)) for i, r in out["rejected"]))

    async def add(self, nodes: list[NodeSpec], edges: list[EdgeSpec]) -> list[int]:
        """Add nodes and edges (one topology change on the simulation)."""
        out = await self._call("add", {"nodes": [_node_json(n) for n in nodes],
                                       "edges": [_edge_json(e) for e in edges]})
        return [int(i) for i in out["ids"]]

    async def remove_node(self, nid: int) -> None:
        """Remove a node and its edges."""
        await self._call("remove_node", {"id": nid})

    async def add_edges(self, edges: list[EdgeSpec]) -> list[dict[str, Any]]:
        """Add edges; the edges written, as JSON."""
        out = await self._call("add_edges", {"edges": [_edge_json(e) for e in edges]})
        return list(out["edges"])

    async def remove_edges(self, specs: list[EdgeSpec]) -> list[tuple[int, int]]:
        """Remove edges; those that existed."""
        out = await self._call("remove_edges", {"edges": [_edge_json(e) for e in specs]})
        return [(int(a), int(b)) for a, b in out["removed"]]

    async def set_sssp_source(self, source: int | None) -> SsspChoice:
        """Set (or clear) the shortest-path source for everyone."""
        out = await self._call("sssp", {"source": source})
        self.sssp_seq = int(out["seq"])
        return SsspChoice(out["source"])

    async def reload_source(self) -> dict[str, Any]:
        """Have the simulation read its source again as a new epoch."""
        return await self._call("reload", {})

    def close(self) -> None:
        """Nothing to stop (the link is closed by its owner)."""


class RemoteSource:
    """A gateway's stand-in for the source follower: the simulation reloads the source."""

    def __init__(self, graph: RemoteGraph) -> None:
        self.graph = graph

    async def reload(self) -> dict[str, Any]:
        """Read the whole source again as a new epoch (on the simulation)."""
        return await self.graph.reload_source()


def _node_json(n: NodeSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"key": n.key, "type": n.type.value, "metadata": dict(n.metadata)}
    if n.label is not None:
        out["label"] = n.label
    if n.position is not None:
        out["x"], out["y"], out["z"] = n.position
    return out


def _edge_json(e: EdgeSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"source": e.source, "target": e.target, "weight": e.weight}
    if e.type is not None:
        out["type"] = e.type
    return out


class RemoteRunner:
    """What a gateway knows of the simulation's pace, and how it asks for a snapshot."""

    def __init__(self, commands: CommandClient, streams: Callable[[], set[str]]) -> None:
        self.commands = commands
        self.streams = streams  # the streams this gateway's subscribers use
        self.rate = 5.0  # the simulation's stream rate, from its latest frame set
        self.error: BaseException | None = None
        self.cadence: object = None
        self.asking = False  # a request is in flight (it names every stream in use)
        self._again = False
        self._task: asyncio.Future[None] | None = None

    def request_snapshot(self) -> None:
        """Ask the simulation to publish a snapshot at once (coalesced: one request in
        flight)."""
        if self.asking:
            self._again = True
            return
        self.asking = True
        self._task = asyncio.ensure_future(self._ask())

    async def _ask(self) -> None:
        try:
            while True:
                self._again = False
                with contextlib.suppress(CommandUnavailableError, CommandFailedError):
                    await self.commands.call("request_snapshot",
                                             {"streams": sorted(self.streams())})
                if not self._again:
                    return
        finally:
            self.asking = False

    def interaction(self) -> None:
        """The simulation raises its rate itself when it applies a drag."""

    def start(self) -> None:
        """Nothing runs here."""

    def stop(self) -> None:
        """Nothing runs here."""


class GatewayFeed:
    """Takes what the simulation publishes and hands it to the mirror, the hub and clients."""

    def __init__(self, link: Link, graph: RemoteGraph, hub: StreamHub, runner: RemoteRunner,
                 commands: CommandClient, broadcast_json: Callable[[dict[str, Any]], None],
                 send_to_subscribers: Callable[[bytes], None]) -> None:
        self.link = link
        self.graph = graph
        self.hub = hub
        self.runner = runner
        self.commands = commands
        self.broadcast_json = broadcast_json
        self.send_to_subscribers = send_to_subscribers
        self.token = 0  # the newest publisher's fencing token: older ones are ignored
        self.received = 0
        self.stale = 0
        self.gaps = 0
        self.last_frame_at: float | None = None
        self._n = -1
        self._streams_sent: set[str] = set()
        self._asked: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Load the mirror and the last frames, then follow the stream channel."""
        await self.graph.reload()
        await self._catch_up()
        self.link.on_reconnect.append(self._catch_up)
        self.link.subscribe([self.link.keys.stream], self.on_message)
        self.link.spawn(self._remind_streams())

    async def _catch_up(self) -> None:
        """After (re)connecting: the last published frames and SSSP frame, kept in keys.

        The token floor starts over: Redis may have restarted empty (its fencing counter
        too), and no message of a deposed holder can still be in flight on a new connection
        (the lease script fences what is published)."""
        self.token = 0
        keys = self.link.keys
        for key in (keys.last_sssp, keys.last_frames):
            raw = await self.link.call(lambda k=key: self.link.redis.get(k))  # type: ignore[misc]
            if raw is not None:
                await self.on_message(bytes(raw), catch_up=True)

    async def on_message(self, data: bytes, *, catch_up: bool = False) -> None:
        """One envelope from the simulation, in publish order."""
        env = envelope.decode(data)
        if env.token < self.token:
            self.stale += 1  # a deposed holder's message that was in flight
            return
        if env.token > self.token:
            # a new lease holder: it knows nothing of the streams this gateway's clients use
            self.token, self._n, self._streams_sent = env.token, -1, set()
        n = int(env.header.get("n", 0))
        if not catch_up:
            if self._n >= 0 and n != self._n + 1:
                self.gaps += 1
            self._n = n
        self.received += 1
        announced = env.kind == envelope.Kind.GRAPH_CHANGED  # brings its own graph_changed
        if env.epoch != self.graph.epoch:
            await self._new_epoch(env.epoch, announce=not announced)
        elif announced:
            await self.graph.reload()
        if env.kind == envelope.Kind.FRAMES:
            self._frames(FrameSet.from_envelope(env))
        elif announced:
            self.broadcast_json(env.header["message"])
        elif env.kind == envelope.Kind.SSSP:
            self.graph.published_sssp = env.blobs[0]
            self.graph.sssp_seq = int(env.header["seq"])
            source = env.header.get("source")
            self.graph.sssp = SsspChoice(None if source is None else int(source))
            if not catch_up:
                self.send_to_subscribers(env.blobs[0])

    async def _new_epoch(self, epoch: int, *, announce: bool) -> None:
        """Another simulation took over, or the source was reloaded (or the first frames): ids
        may mean other nodes. Clients are told to refetch unless the message that brought the
        epoch is a ``graph_changed`` of its own (a reload): then they get that one, once."""
        first = self.graph.epoch == 0
        self.graph.epoch = epoch
        await self.graph.reload()
        self.hub.restart()
        if announce and not first:
            g = self.graph
            log.warning("gateway: the simulation changed (epoch %d): clients refetch", epoch)
            m = g.graph
            self.broadcast_json(GraphChanged(epoch, m.topology_version, m.node_count,
                                             m.edge_count, refetch=True).to_json())

    def _frames(self, fs: FrameSet) -> None:
        n = int(fs.ids.shape[0])
        snap = Snapshot(fs.seq, fs.ids, fs.agent, fs.pos, np.zeros((n, 3), np.float32),
                        fs.settled, fs.kinetic_energy, fs.topology_version, 0)
        self.runner.rate = fs.rate_hz
        self.last_frame_at = time.monotonic()
        self.graph.snapshot_published(snap)
        self.hub.on_frames(fs, snap)
        missing = self.hub.missing_streams()
        # a snapshot request in flight names the streams already (asking twice would make
        # the simulation publish twice: an empty frame for every subscriber)
        if missing and not missing <= self._streams_sent and not self.runner.asking:
            self._ask_streams()

    def _ask_streams(self) -> None:
        self._streams_sent = self.hub.streams_in_use()
        self._asked = asyncio.ensure_future(self._send_streams(self._streams_sent))

    async def _send_streams(self, streams: set[str]) -> None:
        with contextlib.suppress(CommandUnavailableError, CommandFailedError, RedisDownError):
            await self.commands.call("streams", {"streams": sorted(streams)})

    async def _remind_streams(self) -> None:
        """Tell the simulation, now and then, which streams this gateway's clients use."""
        while True:
            await asyncio.sleep(STREAMS_REFRESH)
            streams = self.hub.streams_in_use()
            if streams:
                await self._send_streams(streams)

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` and the metrics say about the feed."""
        age = None if self.last_frame_at is None else time.monotonic() - self.last_frame_at
        return {"token": self.token, "received": self.received, "gaps": self.gaps,
                "stale": self.stale,
                "lastFrameAgoMs": None if age is None else int(age * 1000)}


class ResumableIds:
    """Client ids any process of the cluster may resume (``/ws?resume=``): a client that
    reconnects through another gateway, even after its own gateway crashed, keeps its id.
    Each open connection's id is written when it connects and every housekeeping sweep, and
    expires ``resume_window`` after the last write."""

    def __init__(self, link: Link, resume_window: Callable[[], float]) -> None:
        self.link = link
        self.resume_window = resume_window

    async def remember(self, client_ids: list[str]) -> None:
        """Let every process resume these ids for the resume window."""
        link = self.link
        window = max(1, int(self.resume_window() * 1000))

        async def write() -> None:
            async with link.redis.pipeline(transaction=False) as pipe:
                for cid in client_ids:
                    pipe.set(link.keys.client(cid), 1, px=window)
                await pipe.execute()
        with contextlib.suppress(RedisDownError):
            await link.call(write)

    async def known(self, client_id: str) -> bool:
        """Did a connection with this id leave a process of the cluster recently?"""
        link = self.link
        try:
            return bool(await link.call(lambda: link.redis.exists(link.keys.client(client_id))))
        except RedisDownError:
            return False
