"""``graphwire bench codec``: bytes and time per frame for every position format.

Rows ``{nodes, format, bytesPerNode, encodeMs, decodeMs}`` for 10,000 and 100,000 nodes and the
formats ``v1`` (where ids fit), ``v2``, ``q-key`` (a full keyframe), ``q-delta`` (a delta of a
synthetic settling motion, named in the row) and ``json`` (a list of node objects with id, x, y,
z, vx, vy, vz, as a typical app sends it, with the standard library's json).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphwire.protocol.positions import (
    FrameBuffer,
    NodeRecords,
    decode_v1,
    decode_v2,
    encode_v1,
    encode_v2,
)
from graphwire.protocol.q_decoder import QDecoder
from graphwire.protocol.q_encoder import QPolicy, QStreamEncoder
from graphwire.protocol.quantized import decode_q

from .report import Row, best_ms, int_list, progress

MOTION = "settling: 70% of nodes step N(0, 0.3) units/axis in a 1000-unit layout"


def layout(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A layout-like cloud: clustered positions in a ±500 box, small velocities."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-350, 350, (max(1, n // 300), 3))
    pos = centres[rng.integers(0, centres.shape[0], n)] + rng.normal(0, 60, (n, 3))
    pos = np.clip(pos, -500, 500).astype(np.float32)
    vel = rng.normal(0, 2, (n, 3)).astype(np.float32)
    return pos, vel


def settling_motion(pos: np.ndarray, seed: int = 2) -> np.ndarray:
    """The next snapshot of a settling layout (see ``MOTION``)."""
    rng = np.random.default_rng(seed)
    moving = rng.random((pos.shape[0], 1)) < 0.7
    return (pos + rng.normal(0, 0.3, pos.shape) * moving).astype(np.float32)


def rows_for(n: int, *, repeat: int = 20) -> list[Row]:
    """Measure every format at ``n`` nodes."""
    pos, vel = layout(n)
    ids = np.arange(n, dtype=np.uint32)
    nodes = NodeRecords.build(ids, pos, vel=vel, agent=np.zeros(n, bool))
    rows: list[Row] = []

    def row(fmt: str, frame_bytes: int, enc_ms: float, dec_ms: float, **extra: Any) -> None:
        rows.append({"nodes": n, "format": fmt, "bytesPerNode": round(frame_bytes / n, 3),
                     "encodeMs": enc_ms, "decodeMs": dec_ms, **extra})

    # As the stream hub does: records are built in a reused scratch buffer, and the newest
    # frames stay referenced (the hub caches them) while the next one is encoded.
    scratch, kept = FrameBuffer(), list[bytes]()

    def v1() -> bytes:
        kept[:] = [*kept[-1:], encode_v1(nodes, seq=1, epoch=1, flags=2, scratch=scratch)]
        return kept[-1]

    def v2() -> bytes:
        kept[:] = [*kept[-1:], encode_v2(nodes, seq=1, epoch=1, flags=2, scratch=scratch)]
        return kept[-1]

    if n <= 0x4000:
        f1 = v1()
        row("v1", len(f1), best_ms(v1, repeat=repeat), best_ms(lambda: decode_v1(f1),
                                                                 repeat=repeat))
    f2 = v2()
    row("v2", len(f2), best_ms(v2, repeat=repeat), best_ms(lambda: decode_v2(f2), repeat=repeat))

    def keyframe() -> bytes:
        return QStreamEncoder().encode(1, ids, pos, epoch=1).frame

    key = keyframe()
    row("q-key", len(key), best_ms(keyframe, repeat=repeat),
        best_ms(lambda: QDecoder().apply(key), repeat=repeat))

    nxt = settling_motion(pos)
    enc = QStreamEncoder(policy=QPolicy(min_age=2))  # the timed frame is always a delta
    enc.encode(1, ids, pos, epoch=1)
    state = enc._lin  # the encoder state after the keyframe, reused for every timed delta
    assert state is not None

    def delta() -> bytes:
        enc._lin = state
        state.age, state.prev_q = 0, state.base
        return enc.encode(2, ids, nxt, epoch=1).frame

    d = delta()
    assert not decode_q(d).header.keyframe
    dec = QDecoder()
    dec.apply(key)
    row("q-delta", len(d), best_ms(delta, repeat=repeat), best_ms(lambda: dec.apply(d),
                                                                  repeat=repeat),
        motion=MOTION)

    objs = [{"id": i, "x": p[0], "y": p[1], "z": p[2], "vx": v[0], "vy": v[1], "vz": v[2]}
            for i, p, v in zip(ids.tolist(), pos.tolist(), vel.tolist(), strict=True)]
    text = json.dumps(objs).encode()
    row("json", len(text), best_ms(lambda: json.dumps(objs).encode(), repeat=max(3, repeat // 4)),
        best_ms(lambda: json.loads(text), repeat=max(3, repeat // 4)))
    return rows


SIZES = (10_000, 100_000)


def run(argv: Sequence[str] | None = None) -> list[Row]:
    """All rows of the codec bench (``argv``: the options after ``bench codec``)."""
    parser = argparse.ArgumentParser(prog="graphwire bench codec")
    parser.add_argument("--sizes", type=int_list, default=list(SIZES),
                        help=f"node counts (default {','.join(map(str, SIZES))})")
    args = parser.parse_args(list(argv or []))
    out: list[Row] = []
    for n in args.sizes:
        progress(f"codec: {n} nodes")
        out += rows_for(n)
    return out
