"""A live numpy mirror of the graph: node and edge tables from REST, positions from the stream.

Arrays are indexed by node id (docs/protocol.md §3.1): ``positions[i]`` is node ``i``'s position
(float64, NaN where no node ``i`` lives), ``velocities`` and the SSSP columns likewise. They are
kept current from any position format (V1, V2 or Q, decoded by :mod:`graphwire.protocol`) and
from SSSP frames, and grow when nodes are added. The node table maps keys to ids and back.

The mirror does no I/O: the connection hands it REST bodies, ``graph_changed`` messages and
binary frames, and it answers what to do next (apply, ask for a keyframe, refetch the graph).
Reads from another thread (the blocking facade) take :meth:`snapshot`, which copies under a
lock so a frame is never seen half applied.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from graphwire.protocol.errors import ProtocolError
from graphwire.protocol.header import Kind, frame_kind, unpack_header
from graphwire.protocol.positions import decode_v1, decode_v2
from graphwire.protocol.q_decoder import KeyframeMissingError, QDecoder
from graphwire.protocol.quantized import QKeyframe
from graphwire.protocol.sssp import decode_sssp

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Applied:
    """What one binary frame did to the mirror.

    ``nodes`` is the number of node records in the frame; ``need_keyframe`` is set when a Q
    frame named a keyframe the mirror does not hold (send ``request_keyframe``); ``stale`` when
    the frame belongs to another epoch and was ignored.
    """

    kind: int
    seq: int
    keyframe: bool
    settled: bool
    nodes: int
    need_keyframe: bool = False
    stale: bool = False


@dataclass(frozen=True, slots=True)
class MirrorSnapshot:
    """A consistent copy of the mirror's arrays at one seq (see :meth:`GraphMirror.snapshot`)."""

    seq: int
    epoch: int
    settled: bool
    ids: npt.NDArray[np.int64]
    positions: F64
    velocities: npt.NDArray[np.float32]


class GraphMirror:
    """Node/edge tables and position, velocity and SSSP arrays indexed by node id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.epoch: int | None = None
        self.topology_version = 0
        self.seq = -1  # seq of the newest frame applied (or of the REST data)
        self.settled = False
        self.keys: dict[int, str] = {}
        self.ids_by_key: dict[str, int] = {}
        self.nodes: dict[int, dict[str, Any]] = {}
        self.edges: dict[tuple[int, int], dict[str, Any]] = {}
        self.positions: F64 = np.full((0, 3), np.nan)
        self.velocities: npt.NDArray[np.float32] = np.zeros((0, 3), np.float32)
        self.sssp_distance: npt.NDArray[np.float32] = np.full(0, np.inf, np.float32)
        self.sssp_parent: npt.NDArray[np.int32] = np.full(0, -1, np.int32)
        self.sssp_source: int | None = None
        # an SSSP frame of another epoch than the graph held: after a reload it comes before
        # the new graph's body, and is applied once that body is loaded
        self._sssp_ahead: tuple[int, bytes] | None = None
        self.live: npt.NDArray[np.bool_] = np.zeros(0, bool)
        self.q = QDecoder()
        self.frames = 0  # position frames applied
        # the 16-bit epoch of the frames applied before the first graph body (the stream may
        # overtake the REST call): a body of that epoch keeps them
        self._early_epoch16: int | None = None
        self.keyframes = 0  # of those, full keyframes (not deltas, not Q rebases)

    # -- tables ------------------------------------------------------------------------------
    def node_id(self, key: str) -> int:
        """The id of the node with ``key`` (KeyError if none)."""
        return self.ids_by_key[key]

    def key_of(self, node_id: int) -> str:
        """The key of node ``node_id`` (KeyError if none)."""
        return self.keys[node_id]

    def position(self, key_or_id: str | int) -> F64:
        """One node's position (a copy), by key or id."""
        nid = self.ids_by_key[key_or_id] if isinstance(key_or_id, str) else key_or_id
        out: F64 = self.positions[nid].copy()
        return out

    def is_agent(self, node_id: int) -> bool:
        """Whether the node is an agent (live actor) rather than knowledge."""
        node = self.nodes.get(node_id)
        return node is not None and node.get("type") == "agent"

    def is_known(self, node_id: int) -> bool:
        """Whether a node with this id lives in the current epoch."""
        return node_id in self.nodes

    @property
    def live_ids(self) -> npt.NDArray[np.int64]:
        """Ids of the nodes that live, ascending."""
        return np.flatnonzero(self.live)

    def _grow(self, size: int) -> None:
        have = self.positions.shape[0]
        if size <= have:
            return
        size = max(size, have + have // 4)
        pos = np.full((size, 3), np.nan)
        pos[:have] = self.positions
        vel = np.zeros((size, 3), np.float32)
        vel[:have] = self.velocities
        dist = np.full(size, np.inf, np.float32)
        dist[:have] = self.sssp_distance
        par = np.full(size, -1, np.int32)
        par[:have] = self.sssp_parent
        live = np.zeros(size, bool)
        live[:have] = self.live
        self.positions, self.velocities = pos, vel
        self.sssp_distance, self.sssp_parent, self.live = dist, par, live

    def _add_nodes(self, nodes: list[dict[str, Any]], *, set_positions: bool) -> None:
        if not nodes:
            return
        ids = np.fromiter((int(n["id"]) for n in nodes), np.int64, len(nodes))
        self._grow(int(ids.max()) + 1)
        for n in nodes:
            nid = int(n["id"])
            self.nodes[nid] = n
            self.keys[nid] = str(n["key"])
            self.ids_by_key[str(n["key"])] = nid
        self.live[ids] = True
        if set_positions:
            self.positions[ids] = np.array([[n["x"], n["y"], n["z"]] for n in nodes], np.float64)

    def _remove_nodes(self, ids: list[int]) -> None:
        for nid in ids:
            node = self.nodes.pop(nid, None)
            if node is not None:
                self.ids_by_key.pop(str(node["key"]), None)
                self.keys.pop(nid, None)
            if nid < self.live.shape[0]:
                self.live[nid] = False
                self.positions[nid] = np.nan
        gone = set(ids)
        for pair in [p for p in self.edges if p[0] in gone or p[1] in gone]:
            del self.edges[pair]

    @staticmethod
    def _pair(edge: dict[str, Any] | list[int]) -> tuple[int, int]:
        a, b = (edge["source"], edge["target"]) if isinstance(edge, dict) else edge
        return (int(a), int(b)) if int(a) <= int(b) else (int(b), int(a))

    def load(self, data: dict[str, Any], during: Sequence[dict[str, Any]] = ()) -> bool:
        """Replace the tables with a ``GET /api/graph/data`` body (§1); True when the graph
        must be fetched again.

        ``during``: the ``graph_changed`` messages that arrived while the body was on its way
        (the WebSocket and the REST call are two connections, so a change may overtake a body
        built before it). Those of the body's epoch and newer than its topology are applied
        over it; a newer epoch announced among them, or a change that asks for a refetch,
        means the body is already out of date.

        Positions from REST are taken only when no newer frame has been applied: the keyframe
        the server sends after the REST call (§7) brings the exact positions.
        """
        self._load(data)
        ahead, self._sssp_ahead = self._sssp_ahead, None
        if ahead is not None and ahead[0] == (self.epoch or 0) & 0xFFFF:
            with contextlib.suppress(ProtocolError):  # as a frame that does not decode
                self._apply_sssp(ahead[1])
        if during and during[-1]["epoch"] != self.epoch:
            return True
        newer = [m for m in during if m["epoch"] == self.epoch
                 and int(m["topologyVersion"]) > self.topology_version]
        return any(self.graph_changed(m) for m in newer)

    def _load(self, data: dict[str, Any]) -> None:
        with self.lock:
            early = self.epoch is None and self._early_epoch16 == int(data["epoch"]) & 0xFFFF
            new_epoch = data["epoch"] != self.epoch and not early
            self.epoch = int(data["epoch"])
            self.topology_version = int(data["topologyVersion"])
            self.nodes, self.keys, self.ids_by_key, self.edges = {}, {}, {}, {}
            self.live[:] = False
            if new_epoch:
                self.positions[:] = np.nan
                self.velocities[:] = 0
                self.q = QDecoder()
                self.seq = -1
                # ids of another epoch may mean other nodes: no shortest paths until the
                # server sends this epoch's
                self.sssp_distance[:] = np.inf
                self.sssp_parent[:] = -1
                self.sssp_source = None
            take = new_epoch or int(data["seq"]) > self.seq
            self._add_nodes(data["nodes"], set_positions=take)
            dead = ~self.live
            self.positions[dead] = np.nan
            for e in data["edges"]:
                self.edges[self._pair(e)] = e
            if take:
                self.seq = max(self.seq, int(data["seq"]))

    def graph_changed(self, msg: dict[str, Any]) -> bool:
        """Apply a ``graph_changed`` message; True when the graph must be refetched instead."""
        if msg.get("refetch") or msg["epoch"] != self.epoch:
            return True
        with self.lock:
            added, removed = msg.get("added") or {}, msg.get("removed") or {}
            self._remove_nodes([int(i) for i in removed.get("nodes", [])])
            for e in removed.get("edges", []):
                self.edges.pop(self._pair(e), None)
            self._add_nodes(list(added.get("nodes", [])), set_positions=True)
            for e in added.get("edges", []):
                self.edges[self._pair(e)] = e
            # graphwire's extension: label, type, metadata or weight changed in place
            updated = msg.get("updated") or {}
            for n in updated.get("nodes", []):
                if int(n["id"]) in self.nodes:
                    self.nodes[int(n["id"])] = n
            for e in updated.get("edges", []):
                self.edges[self._pair(e)] = e
            self.topology_version = int(msg["topologyVersion"])
        return False

    # -- frames ------------------------------------------------------------------------------
    def apply(self, data: bytes) -> Applied:
        """Apply one binary frame of kind 0x01, 0x02, 0x03 or 0x05.

        Raises :class:`~graphwire.protocol.errors.ProtocolError` for a frame that does not
        decode; the mirror is unchanged then.
        """
        kind = frame_kind(data)
        header = unpack_header(data)
        if self.epoch is not None and header.epoch16 != self.epoch & 0xFFFF:
            if kind == Kind.SSSP:
                self._sssp_ahead = (header.epoch16, bytes(data))
            return Applied(kind, header.seq, header.keyframe, header.settled, 0, stale=True)
        if self.epoch is None:
            if self._early_epoch16 not in (None, header.epoch16):  # epochs before any body:
                self.q = QDecoder()  # only the newest one's frames can be kept
                self.seq = -1
            self._early_epoch16 = header.epoch16
        if kind == Kind.SSSP:
            return self._apply_sssp(data)
        with self.lock:
            if kind in (Kind.POSITIONS_V1, Kind.POSITIONS_V2):
                frame = (decode_v1 if kind == Kind.POSITIONS_V1 else decode_v2)(data)
                nodes = frame.nodes
                ids = nodes.ids
                at: slice | npt.NDArray[np.int64] = slice(0, 0)
                if ids.shape[0]:
                    first, last = int(ids[0]), int(ids[-1])
                    dense = last - first + 1 == ids.shape[0] and bool(np.all(np.diff(ids) == 1))
                    at = slice(first, last + 1) if dense else ids.astype(np.int64)
                    self._grow(int(ids.max()) + 1)
                self.positions[at] = nodes.pos
                self.velocities[at] = nodes.vel
                self.sssp_distance[at] = nodes.dist
                self.sssp_parent[at] = nodes.parent
                count = len(nodes)
                full = header.keyframe
            elif kind == Kind.POSITIONS_Q:
                try:
                    q = self.q.apply(data)
                except KeyframeMissingError:
                    return Applied(kind, header.seq, header.keyframe, header.settled, 0,
                                   need_keyframe=True)
                qids = self.q.ids
                n = int(qids.shape[0])
                if n:
                    self._grow(int(qids[-1]) + 1)  # ascending: the last id is the largest
                # dense ids 0 … n-1 (the usual case) are a slice, not a gather
                where: slice | npt.NDArray[np.int64] = (
                    slice(0, n) if n == 0 or int(qids[-1]) == n - 1 else qids.astype(np.int64))
                grid = self.q.grid
                assert grid is not None
                out = self.positions[where]
                np.multiply(self.q.q, grid.step, out=out, casting="unsafe")
                out += grid.origin
                if isinstance(where, np.ndarray):
                    self.positions[where] = out
                if self.q.vel is not None:
                    self.velocities[where] = self.q.vel
                full = isinstance(q, QKeyframe)
                count = int(q.ids.shape[0] if isinstance(q, QKeyframe) else q.idx.shape[0])
            else:
                raise ValueError(f"kind 0x{kind:02x} is not a stream frame")
            self.seq = header.seq
            self.settled = header.settled
            self.frames += 1
            self.keyframes += int(full)
        return Applied(kind, header.seq, header.keyframe, header.settled, count)

    def _apply_sssp(self, data: bytes) -> Applied:
        frame = decode_sssp(data)
        n = int(frame.distance.shape[0])
        with self.lock:
            self._grow(n)
            self.sssp_distance[:n] = frame.distance
            self.sssp_distance[n:] = np.inf
            self.sssp_parent[:n] = frame.parent
            self.sssp_parent[n:] = -1
            self.sssp_source = frame.source
        h = frame.header
        return Applied(Kind.SSSP, h.seq, h.keyframe, h.settled, n)

    # -- reading -----------------------------------------------------------------------------
    def snapshot(self) -> MirrorSnapshot:
        """Copies of the live nodes' ids, positions and velocities at one seq (thread-safe)."""
        with self.lock:
            ids = np.flatnonzero(self.live)
            return MirrorSnapshot(self.seq, self.epoch or 0, self.settled, ids,
                                  self.positions[ids].copy(), self.velocities[ids].copy())

    def grid_step(self) -> F64 | None:
        """The Q stream's grid step per axis (the decoded error is at most half of it)."""
        grid = self.q.grid
        return None if grid is None else np.asarray(grid.step, np.float64).copy()
