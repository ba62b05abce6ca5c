"""Compile every numba kernel before the server accepts connections.

numba compiles on first call (seconds when its on-disk cache is cold: a fresh install, or a new
version of a kernel). Doing that on a tiny throwaway graph at start keeps the first subscriber
from stalling the event loop and the first physics steps from lagging the stream.
"""

from __future__ import annotations

import numpy as np

from graphwire.graph.model import EdgeSpec, Graph, GraphData, NodeSpec
from graphwire.protocol.q_decoder import QDecoder
from graphwire.protocol.q_encoder import QPolicy, QStreamEncoder
from graphwire.simulation import Simulation, compile_kernels


def warm_up() -> None:
    """Run each kernel once with the argument types the server uses."""
    compile_kernels()
    g = Graph.from_data(GraphData([NodeSpec(f"w{i:02d}") for i in range(40)],
                                  [EdgeSpec(f"w{i:02d}", f"w{(i + 1) % 40:02d}")
                                   for i in range(40)]))
    sim = Simulation(g)
    sim.step(2)
    snap = sim.publish()
    for velocity in (False, True):
        enc = QStreamEncoder(velocity=velocity, policy=QPolicy(rebase_ratio=1e9))
        dec = QDecoder()
        for k, shift in enumerate((0.0, 0.5, 200.0)):  # keyframe, delta, rebase
            out = enc.encode(k + 1, snap.ids, snap.pos + np.float32(shift), epoch=1,
                             vel=snap.vel if velocity else None, force_keyframe=k == 2)
            dec.apply(out.full_keyframe() if k == 0 else out.frame)
