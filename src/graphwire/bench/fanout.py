"""``graphwire bench fanout``: many WebSocket clients on one server, measured from outside.

The server runs in one process, the clients in another, on loopback. The graph is the standard
one (Barabási–Albert, 10,000 nodes, m = 3, seed 1), kept moving for the whole run (a layout
that never cools and never settles, started in one level so that every frame shows real motion
rather than the multilevel start's coarse groups) with physics capped at the stream rate
(5 steps a second for a 5 Hz stream; every client subscribes with ``intervalMs`` 200). Rows
``{clients, format, server, framesPerClientPerSec, cpuUsPerClientFrame, loopCpuUsPerClientFrame,
latencyP50Ms, latencyP99Ms, bytesPerNode, clientCpuUsPerClientFrame, slowestClientFramesPerSec,
snapshotsPerSec, skippedSlowPerSec, keyframesInsteadPerSec}`` (``snapshotsPerSec``: the snapshots
the simulation published in the window, a second: the most frames a client can get):

- ``server: graphwire`` with 50, 200, 500, 1,000 and 2,000 clients in ``q`` and 50, 200 and 500
  in ``v2`` (``--sizes``, ``--v2-sizes``); ``--compare-src CHECKOUT`` adds the same rows served
  by another checkout's ``src`` (``server: graphwire@<name>``), an earlier version measured in
  the same session;
- ``server: baseline-json`` with 50 clients: the usual approach, an aiohttp server that JSON-
  encodes the node list (``{id, x, y, z, vx, vy, vz}`` objects) for each client and sends it.

``--gateways N`` measures the scale-out instead (:mod:`graphwire.bench.fanout_cluster`): one
simulation and 1 … N gateways over Redis, ``--clients`` in all, and the failover time.

``cpuUsPerClientFrame`` is the server process's CPU time (user + system, physics included) over
the measured window divided by the frames all clients received in it; ``loopCpuUsPerClientFrame``
the same for the server's main thread alone, the event loop that encodes and fans out (physics
runs in other threads and costs the same whatever the number of clients).
``clientCpuUsPerClientFrame``: the client process's own CPU per frame (the load generator shares
the cores; its raw-socket clients keep that small, and the column shows what it took). Latency
runs from the moment the simulation published a snapshot to the moment a client has the frame;
both processes read the same wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .redis_server import free_port
from .report import Row, int_list, progress

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


def wait_ready(proc: subprocess.Popen[str], what: str) -> None:
    """Wait for a started server's first line on stdout (it prints one when it listens)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"{what} did not start: {err[-2000:]}")


def start_graphwire(csv: Path, workdir: Path, source_tree: Path | None = None
                    ) -> tuple[subprocess.Popen[str], int]:
    """``graphwire serve`` in its own process, physics at the stream rate, kept moving.

    ``source_tree``: serve graphwire from another checkout's ``src`` (the same interpreter and
    dependencies), to measure an earlier version of the server in the same session.
    """
    port = free_port()
    args = [sys.executable, "-m", "graphwire.cli", "serve", str(csv), "--port", str(port),
            "--db", str(workdir / "bench.db"), "--physics-hz", str(RATE_HZ)]
    for path, value in MOVING.items():
        args += ["--set", f"{path}={json.dumps(value)}"]
    env = dict(os.environ)
    if source_tree is not None:
        env["PYTHONPATH"] = str(source_tree / "src")
        (workdir / "bench.db").unlink(missing_ok=True)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    wait_ready(proc, "graphwire serve")
    return proc, port


def start_baseline(csv: Path) -> tuple[subprocess.Popen[str], int]:
    """The per-client JSON server in its own process."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "graphwire.bench.fanout", "baseline",
                             str(csv), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_ready(proc, "baseline server")
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


Q_SIZES = (50, 200, 500, 1000, 2000)
V2_SIZES = (50, 200, 500)


def run(argv: Sequence[str] | None = None, *, baseline_clients: int = 50,
        warmup: float = WARMUP, window: float = WINDOW) -> list[Row]:
    """All rows of the fanout bench (``argv``: the options after ``bench fanout``);
    ``--gateways N``: the scale-out rows instead (:mod:`graphwire.bench.fanout_cluster`)."""
    parser = argparse.ArgumentParser(prog="graphwire bench fanout")
    parser.add_argument("--gateways", type=int, default=0,
                        help="measure 1 … N gateways behind one simulation over Redis, and "
                        "the failover time")
    parser.add_argument("--clients", type=int, default=200,
                        help="total clients of the --gateways rows (200)")
    parser.add_argument("--kills", type=int, default=5, help="failovers measured (5)")
    parser.add_argument("--sizes", type=int_list, default=list(Q_SIZES),
                        help=f"client counts in q (default {','.join(map(str, Q_SIZES))})")
    parser.add_argument("--v2-sizes", type=int_list, default=list(V2_SIZES),
                        help=f"client counts in v2 (default {','.join(map(str, V2_SIZES))})")
    parser.add_argument("--compare-src", type=Path, action="append", default=[],
                        metavar="CHECKOUT",
                        help="also measure the server of another checkout (its src/), rows "
                             "named server=graphwire@<directory name>; repeatable")
    parser.add_argument("--no-json-baseline", action="store_true",
                        help="skip the per-client JSON server row")
    args = parser.parse_args(list(argv or []))
    if args.gateways > 0:
        from .fanout_cluster import run_cluster
        return run_cluster(args.gateways, args.clients, args.kills)
    q_sizes, v2s = args.sizes, args.v2_sizes
    rows: list[Row] = []
    servers: list[tuple[str, Path | None]] = [("graphwire", None)]
    servers += [(f"graphwire@{src.resolve().name}", src.resolve()) for src in args.compare_src]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv = write_standard_graph(work / "ba10k.csv")
        for label, tree in servers:
            proc, port = start_graphwire(csv, work, tree)
            try:
                cases = [(n, "q") for n in q_sizes] + [(n, "v2") for n in v2s]
                for n, fmt in sorted(cases):
                    progress(f"fanout: {label}, {n} clients, {fmt}")
                    row = run_clients(port, n, fmt, "graphwire", proc.pid, warmup=warmup,
                                      window=window)
                    row["server"] = label
                    rows.append(row)
                    progress(f"  {rows[-1]}")
            finally:
                proc.terminate()
                proc.wait(30)
        if args.no_json_baseline or baseline_clients <= 0:
            return rows
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


def _cpu_seconds(pid: int, thread: int | None = None) -> float:
    """CPU time (user + system) of a process, or of one of its threads."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path, encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


class _RawClient(asyncio.Protocol):
    """One viewer as cheap as a WebSocket client can be: a raw socket that counts frames.

    It writes the upgrade request and one masked ``subscribe`` by hand, then only splits the
    byte stream into frames (server frames are unmasked), notes the seq and arrival time of
    each position frame, and answers the server's pings. No message objects, no decoding: the
    load generator shares the machine's cores with the server it measures.
    """

    def __init__(self, port: int, fmt: str, server: str, stats: _Stats, idx: int) -> None:
        self.port, self.fmt, self.server, self.stats, self.idx = port, fmt, server, stats, idx
        self.kind = {"q": 0x03, "v2": 0x02}.get(fmt, -1)
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"client {self.idx} lost: {exc}"))

    def _send(self, opcode: int, payload: bytes) -> None:
        # client frames are masked (RFC 6455 §5.3); a zero mask leaves the payload as it is
        n = len(payload)
        head = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else \
            bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        assert self.transport is not None
        self.transport.write(head + b"\0\0\0\0" + payload)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        if not self.upgraded:
            buf += data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(bytes(buf[:200]).decode("latin-1")))
                return
            self.upgraded = True
            if self.server == "graphwire":
                self._send(0x1, json.dumps({"type": "subscribe", "format": self.fmt,
                                            "intervalMs": int(1000 / RATE_HZ)}).encode())
            self.ready.set_result(None)
            data = bytes(buf[end + 4:])
            buf.clear()
        if buf:
            buf += data
            data = bytes(buf)
            buf.clear()
        pos, n = 0, len(data)
        stats, now = self.stats, time.time()
        while n - pos >= 2:
            length, head = data[pos + 1] & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(data[pos + 2:pos + 10], "big"), 10
            end = pos + head + length
            if end > n:
                break
            opcode, start = data[pos] & 0x0F, pos + head
            if opcode == 0x2 and data[start] == self.kind:
                stats.frame(self.idx, int.from_bytes(data[start + 4:start + 8], "little"),
                            length, now)
            elif opcode == 0x1 and self.server == "baseline-json":
                m = _SEQ.match(data[start:start + 64].decode("latin-1"), 1)
                if m is not None:
                    stats.frame(self.idx, int(m.group(1)), length, now)
            elif opcode == 0x9:
                self._send(0xA, data[start:end])
            pos = end
        if pos < n:
            buf += data[pos:]


class _Stats:
    """What the clients received inside the measured window."""

    def __init__(self, n: int) -> None:
        self.window = (float("inf"), float("inf"))
        self.counts = [0] * n
        self.nbytes = 0
        self.receipts: list[tuple[int, float]] = []

    def frame(self, idx: int, seq: int, nbytes: int, now: float) -> None:
        if self.window[0] <= now < self.window[1]:
            self.counts[idx] += 1
            self.nbytes += nbytes
            self.receipts.append((seq, now))


async def _clients(ports: list[int], n: int, fmt: str, server: str, pids: list[int],
                   warmup: float, duration: float, times_port: int | None = None) -> Row:
    loop = asyncio.get_running_loop()
    stats = _Stats(n)
    conns: list[_RawClient] = []
    for start in range(0, n, 100):
        batch = []
        for i in range(start, min(n, start + 100)):
            port = ports[i % len(ports)]
            _, proto = await loop.create_connection(
                functools.partial(_RawClient, port, fmt, server, stats, i), "127.0.0.1", port)
            batch.append(proto)
        # a saturated baseline answers handshakes slowly: wait for it
        await asyncio.wait_for(asyncio.gather(*(c.ready for c in batch)), 300)
        conns += batch
    def fetch(path: str, timeout: float = 120) -> Any:
        at = times_port or ports[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{at}{path}", timeout=timeout) as resp:
            return json.loads(resp.read())

    def skips() -> tuple[int, int] | None:
        if server != "graphwire":
            return None
        try:  # a saturated server may not answer within the window: then the row says null
            m = fetch("/api/metrics", timeout=5)
        except OSError:
            return None
        return int(m["framesSkippedSlow"]), int(m["keyframesInsteadOfDelta"])

    await asyncio.sleep(warmup)
    skips0 = await loop.run_in_executor(None, skips)
    def cpu() -> float:
        return sum(_cpu_seconds(pid) for pid in pids)

    def loop_cpu() -> float:  # the main threads: the event loops (encode and fan-out)
        return sum(_cpu_seconds(pid, pid) for pid in pids)

    cpu0, own0, t0 = cpu(), time.process_time(), time.time()
    loop0 = loop_cpu()
    stats.window = (t0, t0 + duration)
    await asyncio.sleep(duration)
    cpu1, own1, loop1 = cpu(), time.process_time(), loop_cpu()
    skips1 = await loop.run_in_executor(None, skips)
    for c in conns:  # no close handshake: a saturated server would take minutes to answer
        if c.transport is not None:
            c.transport.abort()
    doc = await loop.run_in_executor(
        None, fetch, "/api/metrics?snapshots=1" if server == "graphwire" else "/times")
    published = dict(doc["snapshotTimes"] if server == "graphwire" else doc)
    lat = [(t - published[seq]) * 1000 for seq, t in stats.receipts if seq in published]
    frames = sum(stats.counts)
    return {
        "clients": n, "format": fmt, "server": server,
        "framesPerClientPerSec": round(frames / n / duration, 3),
        "cpuUsPerClientFrame": round((cpu1 - cpu0) / max(frames, 1) * 1e6, 1),
        "loopCpuUsPerClientFrame": round((loop1 - loop0) / max(frames, 1) * 1e6, 1),
        "latencyP50Ms": round(float(np.percentile(lat, 50)), 1) if lat else None,
        "latencyP99Ms": round(float(np.percentile(lat, 99)), 1) if lat else None,
        "bytesPerNode": round(stats.nbytes / max(frames, 1) / NODES, 3),
        "clientCpuUsPerClientFrame": round((own1 - own0) / max(frames, 1) * 1e6, 1),
        "slowestClientFramesPerSec": round(min(stats.counts) / duration, 3),
        "snapshotsPerSec": round(sum(t0 <= t < t0 + duration for t in published.values())
                                 / duration, 2),
        "skippedSlowPerSec": None if skips0 is None or skips1 is None
        else round((skips1[0] - skips0[0]) / duration, 1),
        "keyframesInsteadPerSec": None if skips0 is None or skips1 is None
        else round((skips1[1] - skips0[1]) / duration, 1),
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
