"""The graph behind the server: simulation, epoch, latest snapshot, shortest paths, commands.

Every operation that needs the simulation lock runs in a worker thread, so a physics step in
progress (150 ms at 100,000 nodes) never stalls the event loop. Topology commands schedule their
``graph_changed`` on the loop while still holding the lock: the simulation thread publishes
snapshots under the same lock, so the announcement always precedes the first frame that shows
the change (docs/protocol.md §6).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from graphwire.graph.diff import TopologyDiff
from graphwire.graph.layout_file import Layout
from graphwire.graph.model import (
    Edge,
    EdgeSpec,
    Graph,
    GraphError,
    NodeSpec,
    NodeType,
    UnknownNodeError,
)
from graphwire.protocol.control import GraphChanged, Rejected
from graphwire.protocol.errors import ErrorCode, ProtocolError
from graphwire.protocol.sssp import encode_sssp
from graphwire.simulation import (
    Change,
    PhysicsParams,
    ShortestPaths,
    Simulation,
    Snapshot,
    no_paths,
    shortest_paths,
)

T = TypeVar("T")

SNAPSHOT_WAIT = 10.0
"""Seconds a read waits for a snapshot of the current topology before it answers an error."""

GRAPH_CHANGED_INLINE = 2000
"""Larger topology changes are announced with ``refetch: true`` instead of their content."""


@dataclass(frozen=True, slots=True)
class PositionResult:
    """How a batch of client positions was taken."""

    accepted: int
    rejected: tuple[Rejected, ...]


class GraphService:
    """Owns the simulation; every method is called from the event loop."""

    def __init__(self, sim: Simulation, epoch: int, loop: asyncio.AbstractEventLoop,
                 on_graph_changed: Callable[[GraphChanged], None],
                 on_sssp: Callable[[ShortestPaths], None]) -> None:
        self.sim = sim
        self.graph: Graph = sim.graph
        self.epoch = epoch
        self.loop = loop
        self.on_graph_changed = on_graph_changed
        self.on_sssp = on_sssp
        self.latest: Snapshot | None = None
        self.sssp: ShortestPaths = no_paths(self.graph)
        self.sssp_seq = 0
        # Commands run one at a time, in order (a client's drags apply in the order sent);
        # reads (the graph's JSON) run beside them.
        self._commands = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphwire-cmd")
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphwire-read")
        self._snapshot_waiters: list[asyncio.Future[Snapshot]] = []
        # Held by a topology change while it runs, and by GET /api/graph/data from its
        # snapshot to its body: the body's nodes (the snapshot's) and edges (the graph's) are
        # then of one topology, however fast changes come (FIFO: neither side starves).
        self._topology = asyncio.Lock()

    def close(self) -> None:
        """Stop the worker threads."""
        self._commands.shutdown(wait=False, cancel_futures=True)
        self._reads.shutdown(wait=False, cancel_futures=True)

    async def _locked(self, fn: Callable[[], T], *, read: bool = False,
                      topology: bool = False) -> T:
        """Run ``fn`` with the simulation lock held, off the loop: commands one at a time in
        order, reads beside them; ``topology``: a change of nodes or edges (see above)."""
        def run() -> T:
            with self.sim.lock:
                return fn()
        executor = self._reads if read else self._commands
        if not topology:
            return await self.loop.run_in_executor(executor, run)
        async with self._topology:
            return await self.loop.run_in_executor(executor, run)

    async def set_params(self, params: PhysicsParams, *, agent: bool = False) -> None:
        """New physics parameters (of agent nodes with ``agent``), in effect from the next step;
        wakes a settled layout."""
        await self._locked(lambda: self.sim.set_params(agent=agent, **params.as_dict()))

    def sssp_frame(self) -> bytes:
        """The SSSP frame (kind 0x05) of the current shortest paths."""
        result = self.sssp
        return encode_sssp(result.source, result.distance, result.parent, seq=self.sssp_seq,
                           epoch=self.epoch)

    # -- snapshots ---------------------------------------------------------------------------
    def snapshot_published(self, snap: Snapshot) -> None:
        """The latest snapshot (called on the loop, in publish order)."""
        self.latest = snap
        waiters, self._snapshot_waiters = self._snapshot_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(snap)

    async def current_snapshot(self, request: Callable[[], None]) -> Snapshot:
        """The latest snapshot that shows the current topology (waits for one if needed; no
        topology change starts meanwhile, so a stream of changes cannot keep it waiting)."""
        async with self._topology:
            return await self._matching_snapshot(request)

    async def _matching_snapshot(self, request: Callable[[], None]) -> Snapshot:
        """Wait for it at most SNAPSHOT_WAIT seconds: the caller holds the topology lock,
        and a simulation that stopped publishing must not hold up every change for long."""
        deadline = self.loop.time() + SNAPSHOT_WAIT
        while True:
            snap = self.latest
            if snap is not None and snap.topology_version == self.graph.topology_version:
                return snap
            left = deadline - self.loop.time()
            if left <= 0:
                raise ProtocolError(ErrorCode.INTERNAL, "the simulation publishes no snapshots",
                                    retry_after_ms=1000)
            fut: asyncio.Future[Snapshot] = self.loop.create_future()
            self._snapshot_waiters.append(fut)
            request()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, min(2.0, left))

    # -- REST views --------------------------------------------------------------------------
    async def data_json(self, request: Callable[[], None], settings_revision: int) -> bytes:
        """``GET /api/graph/data`` at the newest snapshot, serialized (off the event loop).

        Nodes come from the snapshot and edges from the graph, both of one topology version:
        no topology change runs from the moment the snapshot is taken to the end of the body
        (a change that came between answered edges to nodes the body did not hold)."""
        def build(snap: Snapshot) -> bytes:
            g = self.graph
            if g.topology_version != snap.topology_version:  # a change bypassed the lock
                raise RuntimeError("the topology changed under GET /api/graph/data")
            ids = snap.ids.tolist()
            pos = snap.pos.tolist()
            nodes = [
                {"id": i, "key": g.keys[i], "label": g.labels[i],
                 "type": "agent" if g.agent[i] else "knowledge",
                 "x": p[0], "y": p[1], "z": p[2], "metadata": g.metadata[i]}
                for i, p in zip(ids, pos, strict=True)
            ]
            edges = [g.edge_json(e) for e in g.edges()]
            doc = {"epoch": self.epoch, "seq": snap.seq,
                   "topologyVersion": snap.topology_version,
                   "settingsRevision": settings_revision, "nodes": nodes, "edges": edges}
            return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
        async with self._topology:
            snap = await self._matching_snapshot(request)
            return await self._locked(lambda: build(snap), read=True)

    async def graph_doc(self) -> bytes:
        """The graph without positions (what gateways mirror): ``{epoch, topologyVersion,
        nodes: [{id, key, label, type, metadata}], edges}``, serialized off the event loop."""
        def build() -> bytes:
            g = self.graph
            nodes = [{"id": i, "key": g.keys[i], "label": g.labels[i],
                      "type": "agent" if g.agent[i] else "knowledge",
                      "metadata": g.metadata[i]} for i in g.live_ids().tolist()]
            doc = {"epoch": self.epoch, "topologyVersion": g.topology_version, "nodes": nodes,
                   "edges": [g.edge_json(e) for e in g.edges()]}
            return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
        return await self._locked(build, read=True)

    async def restore_positions(self, keys: list[str], pos: np.ndarray) -> int:
        """Put live nodes where a previous simulation last published them (a takeover), by
        node key (the previous holder's ids may name other nodes here); returns how many were
        placed."""
        def apply() -> int:
            g = self.graph
            found = [(i, nid) for i, key in enumerate(keys) if (nid := g.id_of(key)) is not None]
            if found:
                rows, nids = (np.asarray(c, np.int64) for c in zip(*found, strict=True))
                self.sim.move(nids, pos[rows])
            return len(found)
        return await self._locked(apply)

    def state_json(self, snap: Snapshot, settings_revision: int,
                   positions: bool) -> dict[str, Any]:
        """``GET /api/graph/state`` at snapshot ``snap``."""
        return state_json(self.epoch, snap, snap.edge_count, settings_revision, positions)

    # -- commands -----------------------------------------------------------------------------
    async def positions(self, ids: np.ndarray, pos: np.ndarray, *, pin: bool,
                        release: bool) -> PositionResult:
        """Apply user-moved nodes (§4.8 checks: finite, inside the bounds, an existing node)."""
        def apply() -> PositionResult:
            g, sim = self.graph, self.sim
            bounds = sim.params.bounds_size
            rejected: list[Rejected] = []
            ok_ids: list[int] = []
            ok_pos: list[Sequence[float]] = []
            for nid, p in zip(ids.tolist(), pos.tolist(), strict=True):
                if not all(math.isfinite(c) for c in p):
                    rejected.append(Rejected(nid, "not_finite"))
                elif any(abs(c) > bounds for c in p):
                    rejected.append(Rejected(nid, "out_of_bounds"))
                elif not g.is_live(nid):
                    rejected.append(Rejected(nid, "unknown_node"))
                else:
                    ok_ids.append(nid)
                    ok_pos.append(p)
            if ok_ids:
                if release:
                    sim.release(ok_ids)
                else:
                    sim.move(ok_ids, np.asarray(ok_pos, np.float32), pin=pin)
            return PositionResult(len(ok_ids), tuple(rejected))
        return await self._locked(apply)

    async def add(self, nodes: list[NodeSpec], edges: list[EdgeSpec]) -> list[int]:
        """Add nodes and edges as one topology change (all or nothing)."""
        def apply() -> list[int]:
            ids, written = self.sim.add(nodes, edges)
            self._announce(added_nodes=ids, added_edges=written)
            return ids
        ids = await self._locked(apply, topology=True)
        await self._recompute_sssp()
        return ids

    async def remove_node(self, nid: int) -> None:
        """Remove a node and its edges."""
        def apply() -> None:
            gone = self.sim.remove_node(nid)
            self._announce(removed_nodes=[nid], removed_edges=gone)
        await self._locked(apply, topology=True)
        await self._recompute_sssp()

    async def add_edges(self, edges: list[EdgeSpec]) -> list[Edge]:
        """Add edges (or set the weight of existing ones)."""
        def apply() -> list[Edge]:
            _, added = self.sim.add((), edges)
            self._announce(added_edges=added)
            return added
        out = await self._locked(apply, topology=True)
        await self._recompute_sssp()
        return out

    async def remove_edges(self, specs: list[EdgeSpec]) -> list[tuple[int, int]]:
        """Remove edges (ends are ids or keys); returns those that existed."""
        def apply() -> list[tuple[int, int]]:
            pairs = [(self.graph.resolve(s.source), self.graph.resolve(s.target))
                     for s in specs]
            gone = self.sim.remove_edges(pairs)
            if gone:
                self._announce(removed_edges=gone)
            return gone
        out = await self._locked(apply, topology=True)
        if out:
            await self._recompute_sssp()
        return out

    async def apply_change(self, change: TopologyDiff) -> Change:
        """Apply a change of the source (by key) as one topology change, announced as one
        ``graph_changed``."""
        def apply() -> Change:
            done = self.sim.change(change)
            self._announce(added_nodes=done.added_nodes, added_edges=done.added_edges,
                           removed_nodes=done.removed_nodes, removed_edges=done.removed_edges,
                           updated_nodes=done.updated_nodes, updated_edges=done.updated_edges)
            return done
        done = await self._locked(apply, topology=True)
        if done:
            await self._recompute_sssp()
        return done

    async def reload(self, graph: Graph, epoch: int) -> None:
        """Serve another graph (the source read again) as a new epoch: nodes whose key is
        still there keep their place and pin, clients are told to refetch. The shortest-path
        source stays where its key is still there (and is cleared where not); either way every
        subscriber is sent the new SSSP frame after the ``graph_changed`` (§3.5)."""
        source: int | None = None

        def apply() -> None:
            nonlocal source
            old, sim = self.graph, self.sim
            if self.sssp.source is not None and old.is_live(self.sssp.source):
                source = graph.id_of(old.keys[self.sssp.source])
            settled = sim.settled
            kept = Layout.of_graph(old).apply(graph)
            graph.topology_version = old.topology_version + 1  # never a version seen before
            sim.replace_graph(graph)
            self.graph, self.epoch, self.latest = graph, epoch, None
            if settled and kept.shape[0]:
                fresh = np.setdiff1d(graph.live_ids(), kept)
                sim.rest(fresh.tolist())
            self.sssp = no_paths(graph)
            msg = GraphChanged(epoch, graph.topology_version, graph.node_count,
                               graph.edge_count, refetch=True)
            self.loop.call_soon_threadsafe(self.on_graph_changed, msg)
        had_source = self.sssp.source is not None
        await self._locked(apply, topology=True)
        if source is not None or had_source:
            await self.set_sssp_source(source)

    def _announce(self, *, added_nodes: Sequence[int] = (), added_edges: Sequence[Edge] = (),
                  removed_nodes: Sequence[int] = (),
                  removed_edges: Sequence[tuple[int, int]] = (),
                  updated_nodes: Sequence[int] = (), updated_edges: Sequence[Edge] = ()) -> None:
        """Schedule graph_changed on the loop (called with the simulation lock held)."""
        g = self.graph
        size = (len(added_nodes) + len(added_edges) + len(removed_nodes) + len(removed_edges)
                + len(updated_nodes) + len(updated_edges))
        if size == 0:
            return
        if size > GRAPH_CHANGED_INLINE:
            msg = GraphChanged(self.epoch, g.topology_version, g.node_count, g.edge_count,
                               refetch=True)
        else:
            updated = None
            if updated_nodes or updated_edges:
                updated = {"nodes": [g.node_json(i) for i in updated_nodes],
                           "edges": [g.edge_json(e) for e in updated_edges]}
            msg = GraphChanged(
                self.epoch, g.topology_version, g.node_count, g.edge_count,
                added={"nodes": [g.node_json(i) for i in added_nodes],
                       "edges": [g.edge_json(e) for e in added_edges]},
                removed={"nodes": list(removed_nodes),
                         "edges": [[a, b] for a, b in removed_edges]},
                updated=updated,
            )
        self.loop.call_soon_threadsafe(self.on_graph_changed, msg)

    # -- shortest paths ----------------------------------------------------------------------
    async def set_sssp_source(self, source: int | None) -> ShortestPaths:
        """Set (or clear) the one source of the graph and broadcast the result."""
        def compute() -> ShortestPaths:
            if source is not None and not self.graph.is_live(source):
                raise UnknownNodeError(f"unknown node id {source}")
            return shortest_paths(self.graph, source)
        result = await self._locked(compute)
        self._publish_sssp(result)
        return result

    async def _recompute_sssp(self) -> None:
        source = self.sssp.source
        if source is None:
            if self.sssp.distance.shape[0] != self.graph.id_limit:
                self._publish_sssp(no_paths(self.graph), broadcast=False)
            return
        if not self.graph.is_live(source):
            source = None
        await self.set_sssp_source(source)

    def _publish_sssp(self, result: ShortestPaths, *, broadcast: bool = True) -> None:
        self.sssp = result
        self.sssp_seq = self.latest.seq if self.latest is not None else 0
        if broadcast:
            self.on_sssp(result)

    @staticmethod
    def node_spec(item: dict[str, Any]) -> NodeSpec:
        """A node of a ``POST /api/graph/nodes`` body (validated)."""
        key = item.get("key")
        if not isinstance(key, str) or not key or len(key) > 1024:
            raise GraphError("every node needs a 'key': a non-empty string")
        label = item.get("label")
        if label is not None and not isinstance(label, str):
            raise GraphError("'label' must be a string")
        kind = item.get("type", "knowledge")
        if kind not in ("knowledge", "agent"):
            raise GraphError("'type' must be 'knowledge' or 'agent'")
        metadata = item.get("metadata", {})
        if not isinstance(metadata, dict):
            raise GraphError("'metadata' must be an object")
        coords = [item.get(a) for a in ("x", "y", "z")]
        position = None
        if any(c is not None for c in coords):
            if not all(isinstance(c, int | float) and not isinstance(c, bool)
                       and math.isfinite(c) for c in coords):
                raise GraphError("'x', 'y', 'z' must be given together, as finite numbers")
            position = (float(coords[0]), float(coords[1]), float(coords[2]))  # type: ignore[arg-type]
        return NodeSpec(key, label, NodeType(kind), metadata, position)

    @staticmethod
    def edge_spec(item: dict[str, Any]) -> EdgeSpec:
        """An edge of a request body (ends are ids or keys)."""
        ends = []
        for name in ("source", "target"):
            end = item.get(name)
            if isinstance(end, bool) or not isinstance(end, int | str):
                raise GraphError(f"each edge needs '{name}': a node id or key")
            ends.append(end)
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise GraphError("'weight' must be a number")
        kind = item.get("type")
        if kind is not None and not isinstance(kind, str):
            raise GraphError("'type' must be a string")
        return EdgeSpec(ends[0], ends[1], float(weight), kind)  # type: ignore[arg-type]


def state_json(epoch: int, snap: Snapshot, edges: int, settings_revision: int,
               positions: bool) -> dict[str, Any]:
    """``GET /api/graph/state`` at snapshot ``snap`` (``positions``: the exact positions)."""
    out: dict[str, Any] = {
        "epoch": epoch, "seq": snap.seq, "topologyVersion": snap.topology_version,
        "nodesCount": int(snap.ids.shape[0]), "edgesCount": edges,
        "settled": snap.settled, "kineticEnergy": snap.kinetic_energy,
        "settingsRevision": settings_revision,
    }
    if positions:
        out["positions"] = [{"id": i, "x": p[0], "y": p[1], "z": p[2]}
                            for i, p in zip(snap.ids.tolist(), snap.pos.tolist(), strict=True)]
    return out
