"""``graphwire bench trace``: bytes on the wire for the standard trace, as a 5 Hz stream sends it.

The standard trace: a Barabási–Albert graph of 10,000 nodes (m = 3, seed 1) from the default
start, 12 physics steps per snapshot (60 Hz physics behind a 5 Hz stream), 600 snapshots. Each
snapshot is encoded with the real codecs for a client that receives every frame:

- ``v2``: a keyframe first, then each snapshot the nodes that moved more than the position
  deadband (0.01) since they were last sent (the stream's V2 delta frames, §3.3);
- ``q``: the compact stream with its default keyframe policy (rebases included).

Rows ``{trace, format, bytesPerNodePerSnapshot, bytesPerMovedNode}`` (moved nodes: the records
in V2 frames, the entries of Q frames, every node of a keyframe).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from graphwire.protocol.header import Flags
from graphwire.protocol.positions import FrameBuffer, NodeRecords, encode_v2
from graphwire.protocol.q_encoder import QStreamEncoder
from graphwire.simulation import PhysicsParams, Simulation, Snapshot

from .graphs import barabasi_albert
from .report import Row, progress

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


def run(snapshots: int = SNAPSHOTS, nodes: int = NODES) -> list[Row]:
    """Both rows of the trace bench."""
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
