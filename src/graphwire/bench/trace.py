"""``graphwire bench trace``: bytes on the wire for the standard trace, as a 5 Hz stream sends it.

The standard trace: a Barabási–Albert graph of 10,000 nodes (m = 3, seed 1) from the default
start, 12 physics steps per snapshot (60 Hz physics behind a 5 Hz stream), 600 snapshots. Each
snapshot is encoded with the real codecs for a client that receives every frame:

- ``v2``: a keyframe first, then each snapshot the nodes that moved more than the position
  deadband (0.01) since they were last sent (the stream's V2 delta frames, §4.7);
- ``q``: the compact stream with its default keyframe policy (rebases included).

Rows ``{trace, format, bytesPerNodePerSnapshot, bytesPerMovedNode}`` (moved nodes: the records
in V2 frames, the entries of Q frames, every node of a keyframe).

The paced rows: the bundled demo graph from its default start, published as a stream moving at
60 Hz (one physics step a snapshot, 600 snapshots: ten seconds of layout), fanned out by the
server's own :class:`~graphwire.server.stream_hub.StreamHub` on a simulated clock to ``q``
clients at ``intervalMs`` 17 (every snapshot), 50, 200 and 1000. Rows ``{trace: "demo-60hz",
format: "q", intervalMs, frames, bytesPerNodePerFrame, timesEveryFrame, afterJoinTimesEveryFrame,
kBytesPerSec, residualEntropy, residualEntropyTimesEveryFrame}``: a *frame* is one update a
client applies (a full keyframe and the frame sent behind it count as one), its bytes are every
position byte the client was sent; ``timesEveryFrame`` divides by the first row's (the
every-frame client), and ``afterJoinTimesEveryFrame`` does the same leaving out each client's
first frame (its join keyframe, paid once, which a client of few frames cannot spread).

``residualEntropy`` is what the motion itself costs at that pace, whatever the coding: the
positions every ``k`` snapshots (``k`` the pace in snapshots) on a 16-bit grid of each frame's
own extent, predicted by the last interval's motion times a least-squares factor per axis, and
the order-0 entropy of the residuals (per frame and axis), in bytes a node a frame, over the
frames that have two before them (no ids, header or keyframe counted). A coder that sends each
residual on its own with one distribution per frame and axis cannot go below it.

``--paced-warmup N`` runs the layout N snapshots before the clients join (the trace is then
``demo-60hz@N``); ``--paced-hot`` keeps it at full heat (no cooling, no settling: a layout kept
moving, ``demo-60hz-hot``).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from graphwire.bench.graphs import barabasi_albert
from graphwire.bench.report import Row, progress
from graphwire.protocol.header import Flags
from graphwire.protocol.positions import FrameBuffer, NodeRecords, encode_v2
from graphwire.protocol.q_encoder import QStreamEncoder
from graphwire.protocol.quantized import fit_factor, fresh_grid, predict_fitted
from graphwire.simulation import PhysicsParams, Simulation, Snapshot

TRACE = "ba10k"
NODES, STEPS_PER_SNAPSHOT, SNAPSHOTS = 10_000, 12, 600
DEADBAND = 0.01


def standard_trace(snapshots: int = SNAPSHOTS, nodes: int = NODES) -> Iterator[Snapshot]:
    """The snapshots of the standard trace."""
    sim = Simulation(barabasi_albert(nodes), PhysicsParams())
    for k in range(snapshots):
        sim.step(STEPS_PER_SNAPSHOT)
        if k % 100 == 0:
            progress(f"trace: snapshot {k}, kinetic energy {sim.kinetic_energy:.4f}")
        yield sim.publish()


class V2Stream:
    """The V2 frames a client in step with the stream receives (keyframe, then moved nodes)."""

    def __init__(self, deadband: float = DEADBAND) -> None:
        self.deadband = deadband
        self.sent: np.ndarray | None = None
        self.scratch = FrameBuffer()

    def encode(self, snap: Snapshot) -> tuple[bytes, int]:
        """The frame for a snapshot and how many node records it holds."""
        flags = Flags.SETTLED if snap.settled else 0
        if self.sent is None:
            self.sent = snap.pos.copy()
            nodes = NodeRecords.build(snap.ids, snap.pos, agent=snap.agent, vel=snap.vel)
            return encode_v2(nodes, seq=snap.seq, epoch=1, flags=flags | Flags.KEYFRAME,
                             scratch=self.scratch), len(nodes)
        moved = np.linalg.norm(snap.pos - self.sent, axis=1) > self.deadband
        self.sent[moved] = snap.pos[moved]
        nodes = NodeRecords.build(snap.ids[moved], snap.pos[moved], agent=snap.agent[moved],
                                  vel=snap.vel[moved])
        return encode_v2(nodes, seq=snap.seq, epoch=1, flags=flags,
                         scratch=self.scratch), len(nodes)


def run(argv: Sequence[str] | None = None) -> list[Row]:
    """Every row of the trace bench (``argv``: the options after ``bench trace``)."""
    parser = argparse.ArgumentParser(prog="graphwire bench trace")
    parser.add_argument("--snapshots", type=int, default=SNAPSHOTS,
                        help=f"snapshots of the standard trace (default {SNAPSHOTS})")
    parser.add_argument("--paced-snapshots", type=int, default=PACED_SNAPSHOTS,
                        help=f"snapshots of the 60 Hz demo stream (default {PACED_SNAPSHOTS})")
    parser.add_argument("--paced-warmup", type=int, default=0,
                        help="snapshots the demo layout runs before the paced clients join")
    parser.add_argument("--paced-hot", action="store_true",
                        help="keep the demo layout at full heat (never cools nor settles)")
    parser.add_argument("--paced-only", action="store_true", help="only the paced rows")
    args = parser.parse_args(list(argv or []))
    paced = paced_rows(args.paced_snapshots, warmup=args.paced_warmup, hot=args.paced_hot)
    return paced if args.paced_only else standard_rows(args.snapshots) + paced


def standard_rows(snapshots: int = SNAPSHOTS, nodes: int = NODES) -> list[Row]:
    """The standard trace, encoded for a client that receives every frame (v2 and q)."""
    v2, q = V2Stream(), QStreamEncoder()
    totals = {"v2": [0, 0], "q": [0, 0]}
    for snap in standard_trace(snapshots, nodes):
        frame, count = v2.encode(snap)
        totals["v2"][0] += len(frame)
        totals["v2"][1] += count
        out = q.encode(snap.seq, snap.ids, snap.pos, epoch=1, settled=snap.settled)
        totals["q"][0] += len(out.frame)
        totals["q"][1] += out.moved
    return [
        {"trace": TRACE, "format": fmt, "bytesPerNodePerSnapshot": round(b / snapshots / nodes, 3),
         "bytesPerMovedNode": round(b / max(m, 1), 3)}
        for fmt, (b, m) in totals.items()
    ]


PACED_SNAPSHOTS = 600
PACED_RATE_HZ = 60.0
PACED_INTERVALS_MS = (17, 50, 200, 1000)


class _Viewer:
    """A q client of the hub: counts what it is sent (both the hub's outlet interfaces)."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.updates = 0
        self.nbytes = 0
        self.join_bytes = 0  # the first update: the join keyframe

    def position_pending(self) -> bool:
        return False

    def write_frames(self, frames: Sequence[Any]) -> bool:
        self.updates += 1
        size = sum(len(f) for f in frames)
        self.nbytes += size
        if self.updates == 1:
            self.join_bytes = size
        return True

    def send_json(self, message: dict[str, object]) -> None:
        pass

    def send_bytes(self, data: bytes) -> None:
        pass

    def close_slow(self) -> None:
        raise AssertionError("a viewer of the trace is never slow")


def paced_rows(snapshots: int = PACED_SNAPSHOTS,
               intervals_ms: Sequence[int] = PACED_INTERVALS_MS, *, warmup: int = 0,
               hot: bool = False) -> list[Row]:
    """q clients at several paces on the demo graph streamed at 60 Hz (one stream hub), the
    first pace taken as the every-frame client. ``warmup``: snapshots run before the clients
    join; ``hot``: the layout never cools nor settles."""
    import asyncio

    return asyncio.run(_paced(snapshots, intervals_ms, warmup, hot))


async def _paced(snapshots: int, intervals_ms: Sequence[int], warmup: int,
                 hot: bool) -> list[Row]:
    from graphwire.graph.model import Graph
    from graphwire.graph.sources import load_source
    from graphwire.server.metrics import Metrics
    from graphwire.server.stream_hub import StreamHub
    from graphwire.simulation.sssp import no_paths

    params = PhysicsParams()
    if hot:
        params = dataclasses.replace(params, cooling_rate=0.0, settle_energy=0.0)
    sim = Simulation(Graph.from_data(load_source(None, progress=False)), params)
    if warmup:
        sim.step(warmup)
    clock = [0.0]
    period = 1.0 / PACED_RATE_HZ
    paths = no_paths(sim.graph)
    hub = StreamHub(Metrics(), lambda: 1, lambda: paths, lambda: None, lambda: period,
                    clock=lambda: clock[0])
    viewers = [_Viewer(f"c{ms}") for ms in intervals_ms]
    for viewer, ms in zip(viewers, intervals_ms, strict=True):
        hub.subscribe(viewer, "q", False, ms / 1000.0)
    nodes = 0
    trail = []
    for k in range(snapshots):
        sim.step(1)
        snap = sim.publish()
        nodes = int(snap.ids.shape[0])
        trail.append(np.asarray(snap.pos, np.float64))
        clock[0] = k * period
        hub.on_snapshot(snap, False)
        if k % 100 == 0:
            progress(f"paced: snapshot {k}, kinetic energy {sim.kinetic_energy:.4f}")
    seconds = snapshots * period
    name = "demo-60hz" + ("-hot" if hot else "") + (f"@{warmup}" if warmup else "")
    per_frame = [v.nbytes / max(v.updates, 1) / max(nodes, 1) for v in viewers]
    after_join = [(v.nbytes - v.join_bytes) / max(v.updates - 1, 1) / max(nodes, 1)
                  for v in viewers]
    entropy = [residual_entropy(trail, max(1, round(ms / 1000 * PACED_RATE_HZ)))
               for ms in intervals_ms]
    return [
        {"trace": name, "format": "q", "intervalMs": ms, "frames": v.updates,
         "bytesPerNodePerFrame": round(b, 3), "timesEveryFrame": round(b / per_frame[0], 2),
         "afterJoinTimesEveryFrame": round(a / after_join[0], 2) if after_join[0] else None,
         "kBytesPerSec": round(v.nbytes / seconds / 1000, 1),
         "residualEntropy": None if h is None else round(h, 3),
         "residualEntropyTimesEveryFrame":
             round(h / entropy[0], 2) if h is not None and entropy[0] else None}
        for v, ms, b, a, h in zip(viewers, intervals_ms, per_frame, after_join, entropy,
                                  strict=True)
    ]


def residual_entropy(trail: Sequence[np.ndarray], pace: int) -> float | None:
    """Bytes a node a frame that the motion costs at a pace of ``pace`` snapshots (the module
    docstring): order-0 entropy of the residuals against a fitted linear prediction; None when
    the trail holds fewer than three frames at that pace."""
    frames = trail[::pace]
    costs = []
    for a, b, c in zip(frames, frames[1:], frames[2:], strict=False):
        grid = fresh_grid(c)  # the 16-bit grid of the frame's own extent
        qa, qb, qc = (grid.quantise(x) for x in (a, b, c))
        motion = qb - qa
        residual = qc - predict_fitted(qb, motion, fit_factor(qc, qb, motion))
        costs.append(sum(_entropy_bits(residual[:, axis]) for axis in range(3)) / 8)
    return float(np.mean(costs)) if costs else None


def _entropy_bits(values: np.ndarray) -> float:
    """Order-0 entropy of an integer column, in bits a value."""
    counts = np.unique(values, return_counts=True)[1]
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())
