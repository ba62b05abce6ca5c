"""``graphwire bench client``: what the Python client costs to follow a stream.

- Rows ``{nodes, format, framesPerSec}``: frames decoded into the client's numpy mirror per
  second of one core (CPU time of the process: other load on the machine does not count), at
  10,000 and 100,000 nodes in each format, following a stream as a client in step with it
  receives it (a keyframe, then the frames of a settling layout: ``MOTION`` of the codec bench,
  encoded by the server's own encoders, V1/V2 deltas holding the nodes past the 0.01
  deadband). The frames go through the client's receive path (``Client._on_binary``: decode,
  apply to the mirror, emit the ``frame`` event). ``cpuAt5Hz`` is the share of one core a 5 Hz
  stream costs (5 / framesPerSec). V1 cannot carry ids above 16,383, so it has no
  100,000-node row.
- A row ``{batchQueue: itemsPerSec}``: node updates through the BatchQueue (validate, coalesce,
  batch, encode kind 0x20, acknowledge) per second, 100,000 updates of 10,000 nodes.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from graphwire.client.batch_queue import BatchQueue
from graphwire.client.connection import Client
from graphwire.protocol.positions import FrameBuffer, NodeRecords, encode_v1, encode_v2
from graphwire.protocol.quantized import QStreamEncoder

from .codec import layout, settling_motion
from .report import Row, progress

FRAMES = 30
DEADBAND = 0.01


def _trace(n: int) -> list[np.ndarray]:
    pos, _ = layout(n)
    out = [pos]
    for i in range(FRAMES):
        out.append(settling_motion(out[-1], seed=100 + i))
    return out


def _v_frames(trace: list[np.ndarray], fmt: str) -> list[bytes]:
    n = trace[0].shape[0]
    ids = np.arange(n, dtype=np.uint32)
    encode = encode_v1 if fmt == "v1" else encode_v2
    scratch = FrameBuffer()
    sent = trace[0].copy()
    frames = [encode(NodeRecords.build(ids, trace[0]), seq=1, epoch=1, flags=0x02,
                     scratch=scratch)]
    for seq, pos in enumerate(trace[1:], start=2):
        d = pos - sent
        moved = np.flatnonzero((d * d).sum(axis=1) > DEADBAND ** 2)
        sent[moved] = pos[moved]
        frames.append(encode(NodeRecords.build(ids[moved], pos[moved]), seq=seq, epoch=1,
                             scratch=scratch))
    return frames


def _q_frames(trace: list[np.ndarray]) -> list[bytes]:
    n = trace[0].shape[0]
    ids = np.arange(n, dtype=np.uint32)
    enc = QStreamEncoder()
    frames: list[bytes] = []
    held: int | None = None
    for seq, pos in enumerate(trace, start=1):
        out = enc.encode(seq, ids, pos, epoch=1)
        if out.base_seq is None or out.base_seq == held:
            frames.append(out.frame)
        else:
            frames.append(out.full_keyframe())
            if not out.keyframe:
                frames.append(out.frame)
        held = out.key_seq
    return frames


def _frames_per_sec(frames: list[bytes], repeat: int = 3) -> float:
    best = 0.0
    for _ in range(repeat):
        client = Client("http://127.0.0.1:1", format=None)
        client.mirror.epoch = 1
        client._on_binary(frames[0])  # the keyframe: the start, not the steady state
        t0 = time.process_time()  # CPU time: what the stream costs the process
        for f in frames[1:]:
            client._on_binary(f)
        dt = time.process_time() - t0
        assert client.mirror.seq > 1 and client.frames == len(frames)
        best = max(best, (len(frames) - 1) / dt)
    return best


async def _batch_queue_items_per_sec(updates: int = 100_000, nodes: int = 10_000) -> float:
    queue: BatchQueue

    def send(frame: bytes, batch: int) -> bool:
        n = (len(frame) - 8) // 16
        asyncio.get_running_loop().call_soon(
            queue.on_ack, {"batch": batch, "accepted": n, "rejected": []})
        return True

    queue = BatchQueue(send, bounds=lambda: 5000.0, is_agent=lambda i: i % 10 == 0)
    rng = np.random.default_rng(1)
    coords = rng.uniform(-1000, 1000, (updates, 3)).tolist()
    t0 = time.process_time()
    for i, (x, y, z) in enumerate(coords):
        queue.enqueue(i % nodes, x, y, z)
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let acknowledgements in, as a live loop would
    queue.flush()
    await asyncio.sleep(0)
    dt = time.process_time() - t0
    assert queue.counters.queued == updates and queue.pending["inflight"] == 0
    queue.close()
    return updates / dt


def run() -> list[Row]:
    """Measure every format at 10,000 and 100,000 nodes, and the BatchQueue."""
    rows: list[Row] = []
    for n in (10_000, 100_000):
        progress(f"bench client: {n} nodes")
        trace = _trace(n)
        for fmt in ("v1", "v2", "q"):
            if fmt == "v1" and n > 16_384:
                continue  # V1 ids stop at 16,383 (the server refuses V1 on such a graph)
            frames = _q_frames(trace) if fmt == "q" else _v_frames(trace, fmt)
            fps = _frames_per_sec(frames)
            rows.append({"nodes": n, "format": fmt, "framesPerSec": round(fps, 1),
                         "cpuAt5Hz": f"{500 / fps:.1f}%",
                         "bytesPerFrame": int(np.mean([len(f) for f in frames[1:]]))})
    progress("bench client: BatchQueue")
    rows.append({"batchQueue": "100k updates of 10k nodes",
                 "itemsPerSec": round(asyncio.run(_batch_queue_items_per_sec()))})
    return rows
