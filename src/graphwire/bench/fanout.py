"""``graphwire bench fanout``: many WebSocket clients on one server, measured from outside.

The server runs in one process, the clients in another, on loopback. The graph is the standard
one (Barabási–Albert, 10,000 nodes, m = 3, seed 1), kept moving for the whole run (a layout
that never cools and never settles, started in one level so that every frame shows real motion
rather than the multilevel start's coarse groups) with physics capped at the stream rate
(5 steps a second for a 5 Hz stream). Rows ``{clients, format, server, framesPerClientPerSec,
cpuUsPerClientFrame, latencyP50Ms, latencyP99Ms, bytesPerNode}``:

- ``server: graphwire`` with 50, 200 and 500 clients in ``q`` and ``v2``;
- ``server: baseline-json`` with 50 clients: the usual approach, an aiohttp server that JSON-
  encodes the node list (``{id, x, y, z, vx, vy, vz}`` objects) for each client and sends it.

``cpuUsPerClientFrame`` is the server process's CPU time (user + system, physics included) over
the measured window divided by the frames all clients received in it. Latency runs from the
moment the simulation published a snapshot to the moment a client has the frame; both processes
read the same wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .report import Row, progress

NODES = 10_000
RATE_HZ = 5.0
WARMUP, WINDOW = 4.0, 10.0
MOVING = {
    # keep the layout moving: it never cools, so it keeps the small oscillation of a layout
    # at full heat (every node moves about a unit a snapshot), and it never settles
    "visualisation.graphs.logseq.physics.cooling_rate": 0.0,
    "visualisation.graphs.logseq.physics.multilevel": False,
    "visualisation.graphs.logseq.physics.settle_energy": 0.0,
    # a 5 Hz stream, whatever the motion
    "system.websocket.minUpdateRate": RATE_HZ,
    "system.websocket.maxUpdateRate": RATE_HZ,
    # every client of the bench connects from the same loopback address
    "system.rateLimits.control.perMinute": 10_000_000,
    "system.rateLimits.control.burst": 10_000_000,
}
_SEQ = re.compile(r'"seq": ?(\d+)')


def write_standard_graph(path: Path) -> Path:
    """The standard graph as a CSV edge list (keys zero-padded, so ids follow node numbers)."""
    import networkx as nx

    g = nx.barabasi_albert_graph(NODES, 3, seed=1)
    lines = ["source,target"] + [f"{a:05d},{b:05d}" for a, b in g.edges]
    path.write_text("\n".join(lines) + "\n")
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[str], what: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"{what} did not start: {err[-2000:]}")


def start_graphwire(csv: Path, workdir: Path) -> tuple[subprocess.Popen[str], int]:
    """``graphwire serve`` in its own process, physics at the stream rate, kept moving."""
    port = _free_port()
    args = [sys.executable, "-m", "graphwire.cli", "serve", str(csv), "--port", str(port),
            "--db", str(workdir / "bench.db"), "--physics-hz", str(RATE_HZ)]
    for path, value in MOVING.items():
        args += ["--set", f"{path}={json.dumps(value)}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_ready(proc, "graphwire serve")
    return proc, port


def start_baseline(csv: Path) -> tuple[subprocess.Popen[str], int]:
    """The per-client JSON server in its own process."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "graphwire.bench.fanout", "baseline",
                             str(csv), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_ready(proc, "baseline server")
    return proc, port


def run_clients(port: int | list[int], clients: int, fmt: str, server: str,
                pid: int | list[int], *, warmup: float = WARMUP, window: float = WINDOW,
                times_port: int | None = None) -> Row:
    """Measure one row with the clients in their own process (spread over ``port``s; CPU is
    the sum over ``pid``s; publish times from ``times_port``, default the first port)."""
    ports = [port] if isinstance(port, int) else port
    pids = [pid] if isinstance(pid, int) else pid
    extra = [] if times_port is None else ["--times-port", str(times_port)]
    out = subprocess.run(
        [sys.executable, "-m", "graphwire.bench.fanout", "clients",
         "--port", *map(str, ports), "--clients", str(clients), "--format", fmt,
         "--server", server, "--pid", *map(str, pids), "--warmup", str(warmup),
         "--window", str(window), *extra],
        capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"client process failed: {out.stderr[-2000:]}")
    row: Row = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def run(options: list[str] | None = None) -> list[Row]:
    """All rows of the fanout bench; ``--gateways N``: the scale-out rows instead
    (:mod:`graphwire.bench.fanout_cluster`)."""
    parser = argparse.ArgumentParser(prog="graphwire bench fanout")
    parser.add_argument("--gateways", type=int, default=0,
                        help="measure 1 … N gateways behind one simulation over Redis, and "
                        "the failover time")
    parser.add_argument("--clients", type=int, default=200,
                        help="total clients of the --gateways rows (200)")
    parser.add_argument("--kills", type=int, default=5, help="failovers measured (5)")
    args = parser.parse_args(options or [])
    if args.gateways > 0:
        from .fanout_cluster import run_cluster
        return run_cluster(args.gateways, args.clients, args.kills)
    return run_single()


def run_single(sizes: tuple[int, ...] = (50, 200, 500), baseline_clients: int = 50, *,
               warmup: float = WARMUP, window: float = WINDOW) -> list[Row]:
    """The single-process rows and the per-client JSON baseline."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv = write_standard_graph(work / "ba10k.csv")
        proc, port = start_graphwire(csv, work)
        try:
            for n in sizes:
                for fmt in ("q", "v2"):
                    progress(f"fanout: graphwire, {n} clients, {fmt}")
                    rows.append(run_clients(port, n, fmt, "graphwire", proc.pid,
                                            warmup=warmup, window=window))
                    progress(f"  {rows[-1]}")
        finally:
            proc.terminate()
            proc.wait(30)
        proc, port = start_baseline(csv)
        try:
            progress(f"fanout: baseline-json, {baseline_clients} clients")
            rows.append(run_clients(port, baseline_clients, "json", "baseline-json", proc.pid,
                                    warmup=warmup, window=window))
            progress(f"  {rows[-1]}")
        finally:
            proc.terminate()
            proc.wait(30)
    return rows


# -------------------------------------------------------------------------------------------
# the client process


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def _clients(ports: list[int], n: int, fmt: str, server: str, pids: list[int],
                   warmup: float, duration: float, times_port: int | None) -> Row:
    import websockets

    urls = [f"ws://127.0.0.1:{port}/ws" for port in ports]
    window = [float("inf"), float("inf")]
    counts = [0] * n
    nbytes = [0] * n
    receipts: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    kind = {"q": 0x03, "v2": 0x02}.get(fmt)

    async def one(i: int, ws: Any) -> None:
        async for msg in ws:
            now = time.time()
            if isinstance(msg, bytes):
                if msg[0] != kind:
                    continue
                seq = int.from_bytes(msg[4:8], "little")
            elif server == "baseline-json":
                m = _SEQ.match(msg, 1)
                if m is None:
                    continue
                seq = int(m.group(1))
            else:
                continue
            if window[0] <= now < window[1]:
                counts[i] += 1
                nbytes[i] += len(msg)
                receipts[i].append((seq, now))

    async def connect(i: int) -> Any:
        # a saturated baseline answers handshakes slowly: wait for it
        ws = await websockets.connect(urls[i % len(urls)], max_size=2**27, max_queue=None,
                                      compression=None, ping_interval=None, open_timeout=300)
        if server == "graphwire":
            await ws.recv()  # connection_established
            await ws.recv()  # PathTable
            await ws.send(json.dumps({"type": "subscribe", "format": fmt}))
        return ws

    conns = []
    for start in range(0, n, 50):
        conns += await asyncio.gather(*(connect(start + i)
                                        for i in range(min(50, n - start))))
    tasks = [asyncio.create_task(one(i, ws)) for i, ws in enumerate(conns)]
    await asyncio.sleep(warmup)
    cpu0, window[0] = sum(map(_cpu_seconds, pids)), time.time()
    window[1] = window[0] + duration
    await asyncio.sleep(duration)
    cpu1 = sum(map(_cpu_seconds, pids))
    for t in tasks:
        t.cancel()
    for ws in conns:  # no close handshake: a saturated server would take minutes to answer
        ws.transport.abort()
    path = "/api/metrics?snapshots=1" if server == "graphwire" else "/times"

    def fetch() -> Any:
        times = times_port or ports[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{times}{path}", timeout=30) as resp:
            return json.loads(resp.read())

    doc = await asyncio.get_running_loop().run_in_executor(None, fetch)
    published = dict(doc["snapshotTimes"] if server == "graphwire" else doc)
    lat = [(t - published[seq]) * 1000 for r in receipts for seq, t in r if seq in published]
    frames = sum(counts)
    return {
        "clients": n, "format": fmt, "server": server,
        "framesPerClientPerSec": round(frames / n / duration, 3),
        "cpuUsPerClientFrame": round((cpu1 - cpu0) / max(frames, 1) * 1e6, 1),
        "latencyP50Ms": round(float(np.percentile(lat, 50)), 1) if lat else None,
        "latencyP99Ms": round(float(np.percentile(lat, 99)), 1) if lat else None,
        "bytesPerNode": round(sum(nbytes) / max(frames, 1) / NODES, 3),
    }


# -------------------------------------------------------------------------------------------
# the baseline server process: JSON encoded per client


async def _baseline(csv: str, port: int) -> None:
    import threading
    from collections import deque

    from aiohttp import web

    from graphwire.graph.model import Graph
    from graphwire.graph.sources import load_source
    from graphwire.simulation import PhysicsParams, Simulation

    params = PhysicsParams().replace(**{k.rsplit(".", 1)[1]: v for k, v in MOVING.items()
                                        if k.startswith("visualisation.")})
    sim = Simulation(Graph.from_data(load_source(csv)), params)
    loop = asyncio.get_running_loop()
    latest: dict[str, Any] = {"snap": None}
    changed = asyncio.Condition()
    times: deque[tuple[int, float]] = deque(maxlen=4096)

    async def announce(snap: Any) -> None:
        async with changed:
            latest["snap"] = snap
            changed.notify_all()

    def physics() -> None:
        while True:
            t0 = time.monotonic()
            sim.step(1)  # physics at the stream rate, as for graphwire
            snap = sim.publish()
            times.append((snap.seq, time.time()))
            asyncio.run_coroutine_threadsafe(announce(snap), loop)
            time.sleep(max(0.0, 1.0 / RATE_HZ - (time.monotonic() - t0)))

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        sent = 0

        def newer(after: int) -> Callable[[], bool]:
            return lambda: latest["snap"] is not None and latest["snap"].seq > after

        while not ws.closed:
            async with changed:
                await changed.wait_for(newer(sent))
                snap = latest["snap"]
            # the usual approach: build and encode the node list for this client
            nodes = [{"id": i, "x": p[0], "y": p[1], "z": p[2], "vx": v[0], "vy": v[1],
                      "vz": v[2]} for i, p, v in zip(snap.ids.tolist(), snap.pos.tolist(),
                                                     snap.vel.tolist(), strict=True)]
            try:
                await ws.send_str(json.dumps({"seq": snap.seq, "nodes": nodes}))
            except ConnectionError:
                break
            sent = snap.seq
        return ws

    async def times_handler(request: web.Request) -> web.Response:
        return web.json_response([list(t) for t in times])

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/times", times_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    threading.Thread(target=physics, daemon=True).start()
    print(f"baseline serving on {port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """The helper processes of the bench: ``clients`` and ``baseline``."""
    parser = argparse.ArgumentParser(prog="python -m graphwire.bench.fanout")
    sub = parser.add_subparsers(dest="role", required=True)
    c = sub.add_parser("clients")
    c.add_argument("--port", type=int, nargs="+", required=True)
    c.add_argument("--clients", type=int, required=True)
    c.add_argument("--format", required=True)
    c.add_argument("--server", required=True)
    c.add_argument("--pid", type=int, nargs="+", required=True)
    c.add_argument("--times-port", type=int)
    c.add_argument("--warmup", type=float, default=WARMUP)
    c.add_argument("--window", type=float, default=WINDOW)
    b = sub.add_parser("baseline")
    b.add_argument("source")
    b.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.role == "clients":
        row = asyncio.run(_clients(args.port, args.clients, args.format, args.server, args.pid,
                                   args.warmup, args.window, args.times_port))
        print(json.dumps(row), flush=True)
    else:
        asyncio.run(_baseline(args.source, args.port))


if __name__ == "__main__":
    main()
