"""``graphwire bench settings``: how fast a settings change reaches everyone, and what it costs.

- Rows ``{clients, p50Ms, p99Ms}``: a real server in its own process; one client sends a Set and
  the clock runs until the Delta has reached *all* of 10 (100) other clients (the clients share
  one process, so one clock measures the whole trip); 200 Sets, one after another.
- A row ``{commitsPerSec}``: change sets committed by the settings service to a SQLite file on
  disk (WAL, ``synchronous=FULL``: each one on disk before it would be acknowledged).
- A row ``{snapshotGzipRatio}``: the plain size of a Snapshot of every setting over its gzip'd
  size on the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from graphwire.protocol import settings_codec as sc

from .report import Row, int_list, progress

PATH = "visualisation.rendering.nodes.size"
SETS = 200


def _start_server(work: Path) -> tuple[subprocess.Popen[str], int]:
    from .fanout import wait_ready
    from .redis_server import free_port

    csv = work / "ring.csv"
    csv.write_text("source,target\n" + "".join(f"n{i:03d},n{(i + 1) % 300:03d}\n"
                                               for i in range(300)))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphwire.cli", "serve", str(csv), "--port", str(port),
         "--db", str(work / "bench.db"),
         "--set", "system.rateLimits.control.perMinute=10000000",
         "--set", "system.rateLimits.control.burst=10000000",
         "--set", "system.rateLimits.settings.perMinute=10000000",
         "--set", "system.rateLimits.settings.burst=10000000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_ready(proc, "graphwire serve")
    return proc, port


async def _delta_latency(port: int, others: int, sets: int = SETS) -> Row:
    import websockets

    url = f"ws://127.0.0.1:{port}/ws"

    ids: dict[str, int] = {}

    async def connect() -> websockets.ClientConnection:
        ws = await websockets.connect(url, max_queue=None, compression=None, ping_interval=None)
        await ws.recv()  # connection_established
        raw = await ws.recv()
        assert isinstance(raw, bytes)
        table = sc.decode_settings(raw)
        assert isinstance(table, sc.PathTable)
        ids.update({row.path: row.path_id for row in table.paths})
        return ws

    writer = await connect()
    receivers = await asyncio.gather(*(connect() for _ in range(others)))
    pid = ids[PATH]
    arrived: dict[int, list[float]] = {}
    done: dict[int, asyncio.Event] = {}

    async def listen(ws: websockets.ClientConnection) -> None:
        async for msg in ws:
            if isinstance(msg, bytes) and msg[0] == 0x10:
                m = sc.decode_settings(msg)
                if isinstance(m, sc.Delta):
                    t = time.perf_counter()
                    times = arrived.setdefault(m.revision, [])
                    times.append(t)
                    if len(times) == others and m.revision in done:
                        done[m.revision].set()

    tasks = [asyncio.create_task(listen(ws)) for ws in receivers]
    latencies = []
    for j in range(sets):
        value = sc.Value(sc.Tag.F64, 1.0 + j / 10)  # a new value each time: each commits
        t0 = time.perf_counter()
        await writer.send(sc.encode_settings(sc.Set(j + 10, pid, value)))
        raw = await writer.recv()
        assert isinstance(raw, bytes)
        reply = sc.decode_settings(raw)
        assert isinstance(reply, sc.Response), reply
        rev = reply.revision
        ev = done.setdefault(rev, asyncio.Event())
        if len(arrived.get(rev, [])) == others:
            ev.set()
        await asyncio.wait_for(ev.wait(), 30)
        latencies.append((max(arrived[rev]) - t0) * 1000)
    for t in tasks:
        t.cancel()
    for ws in (writer, *receivers):
        ws.transport.abort()
    return {"clients": others, "p50Ms": round(float(np.percentile(latencies, 50)), 2),
            "p99Ms": round(float(np.percentile(latencies, 99)), 2)}


def commits_per_sec(work: Path, count: int = 500) -> float:
    """Durable change sets a second through the settings service (one path each)."""
    from graphwire.settings import SettingsService, SettingsStore

    store = SettingsStore(work / "commits.db")
    svc = SettingsService(store)
    pid = svc.path_id(PATH)
    t0 = time.perf_counter()
    for j in range(count):
        svc.apply([(pid, sc.Value(sc.Tag.F64, 1.0 + j / 1000))])
    elapsed = time.perf_counter() - t0
    store.close()
    return count / elapsed


def snapshot_gzip_ratio(work: Path) -> float:
    """Plain over gzip'd size of a Snapshot of every setting."""
    from graphwire.settings import SettingsService, SettingsStore

    svc = SettingsService(SettingsStore(work / "ratio.db"))
    revision, digest, entries = svc.snapshot()
    msg = sc.Snapshot(1, revision, digest, entries)
    plain = len(sc.encode_body(msg))
    return plain / (len(sc.encode_settings(msg)) - 2)


SIZES = (10, 100)


def run(argv: Sequence[str] | None = None) -> list[Row]:
    """All rows of the settings bench (``argv``: the options after ``bench settings``)."""
    parser = argparse.ArgumentParser(prog="graphwire bench settings")
    parser.add_argument("--sizes", type=int_list, default=list(SIZES),
                        help=f"clients watching each Set (default {','.join(map(str, SIZES))})")
    parser.add_argument("--sets", type=int, default=SETS,
                        help=f"Sets timed at each size (default {SETS})")
    args = parser.parse_args(list(argv or []))
    sizes, sets = args.sizes, args.sets
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        proc, port = _start_server(work)
        try:
            for n in sizes:
                progress(f"settings: Set to Delta at {n} clients")
                rows.append(asyncio.run(_delta_latency(port, n, sets)))
        finally:
            proc.terminate()
            proc.wait(30)
        progress("settings: commits")
        rates = []
        for k in range(3):
            (work / str(k)).mkdir()
            rates.append(commits_per_sec(work / str(k)))
        rows.append({"commitsPerSec": round(statistics.median(rates))})
        rows.append({"snapshotGzipRatio": round(snapshot_gzip_ratio(work), 2)})
    return rows

