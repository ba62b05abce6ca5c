"""``graphwire bench fanout --gateways N``: the same clients behind 1 … N gateways, and failover.

One ``redis-server`` (started here, nothing on disk), one ``graphwire serve --role simulation``
on the standard graph kept moving (as the single-process fanout rows), and N gateways, each a
process. The total client count is the same in every row (default 200 ``q`` clients, in one
client process, spread evenly over the gateways); a row with ``gateways: 0`` is the single
process serving them itself, for comparison. ``cpuUsPerClientFrame`` is the CPU time of every
server process (simulation, gateways and Redis) over the window per frame received.

The failover row kills the lease holder (SIGKILL) ``kills`` times with a warm standby waiting,
each time measuring from the kill to the first frame of the new epoch at a client of a gateway
(``failoverMs``), then starts a new standby before the next kill.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .fanout import (
    MOVING,
    RATE_HZ,
    run_clients,
    start_graphwire,
    wait_ready,
    write_standard_graph,
)
from .redis_server import RedisServer, free_port
from .report import Row, progress


def _serve(csv: Path, work: Path, role: str, name: str, redis: str) -> tuple[
        subprocess.Popen[str], int]:
    port = free_port()
    args = [sys.executable, "-m", "graphwire.cli", "serve", str(csv), "--port", str(port),
            "--redis", redis, "--role", role, "--node-id", name]
    if role == "simulation":
        args += ["--db", str(work / f"{name}.db"), "--physics-hz", str(RATE_HZ)]
        for path, value in MOVING.items():
            args += ["--set", f"{path}={json.dumps(value)}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_ready(proc, f"graphwire serve --role {role}")  # "serving ...": loaded and listening
    return proc, port


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def run_cluster(gateways: int, clients: int = 200, kills: int = 5) -> list[Row]:
    """Rows for 0 (one process), 1 … ``gateways`` gateways, then the failover row."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv = write_standard_graph(work / "ba10k.csv")
        progress(f"fanout: one process, {clients} clients")
        proc, port = start_graphwire(csv, work)
        try:
            row = run_clients(port, clients, "q", "graphwire", proc.pid)
            rows.append({"case": "fanout", "gateways": 0, **row})
        finally:
            _stop([proc])
        for n in range(1, gateways + 1):
            progress(f"fanout: {n} gateway(s), {clients} clients")
            rows.append(_gateway_row(csv, work / f"g{n}", n, clients))
            progress(f"  {rows[-1]}")
        progress(f"failover: {kills} kills of the lease holder")
        rows.append(_failover_row(csv, work / "failover", kills))
        progress(f"  {rows[-1]}")
    return rows


def _gateway_row(csv: Path, work: Path, n: int, clients: int) -> Row:
    work.mkdir()
    redis = RedisServer(work / "redis")
    redis.start()
    procs: list[subprocess.Popen[str]] = []
    try:
        sim, sim_port = _serve(csv, work, "simulation", "sim", redis.url)
        procs.append(sim)
        ports = []
        for i in range(n):
            gw, port = _serve(csv, work, "gateway", f"gw{i}", redis.url)
            procs.append(gw)
            ports.append(port)
        assert redis.proc is not None
        pids = [p.pid for p in procs] + [redis.proc.pid]
        row = run_clients(ports, clients, "q", "graphwire", pids, times_port=sim_port)
        return {"case": "fanout", "gateways": n, **row}
    finally:
        _stop(procs)
        redis.stop()


def _failover_row(csv: Path, work: Path, kills: int) -> Row:
    work.mkdir()
    redis = RedisServer(work / "redis")
    redis.start()
    procs: list[subprocess.Popen[str]] = []
    sims: dict[subprocess.Popen[str], int] = {}  # simulation processes and their ports
    try:
        for name in ("sim0", "sim1"):
            sim, sim_port = _serve(csv, work, "simulation", name, redis.url)
            procs.append(sim)
            sims[sim] = sim_port
        gw, port = _serve(csv, work, "gateway", "gw", redis.url)
        procs.append(gw)
        times = asyncio.run(_kill_and_watch(csv, work, redis.url, procs, sims, port, kills))
    finally:
        _stop(procs)
        redis.stop()
    return {"case": "failover", "kills": kills,
            "failoverMs": round(sum(times) / len(times)), "failoverMsMin": round(min(times)),
            "failoverMsMax": round(max(times))}


async def _kill_and_watch(csv: Path, work: Path, redis: str, procs: list[subprocess.Popen[str]],
                          sims: dict[subprocess.Popen[str], int], port: int,
                          kills: int) -> list[float]:
    import websockets

    epochs: list[tuple[float, int]] = []
    changed = asyncio.Event()
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=2**27) as ws:
        await ws.send(json.dumps({"type": "subscribe", "format": "q"}))

        async def read() -> None:
            async for msg in ws:
                if isinstance(msg, bytes) and msg[0] == 0x03:
                    epoch = int.from_bytes(msg[2:4], "little")
                    if not epochs or epochs[-1][1] != epoch:
                        epochs.append((time.monotonic(), epoch))
                        changed.set()

        reader = asyncio.create_task(read())
        while not epochs:
            changed.clear()
            await asyncio.wait_for(changed.wait(), 120)
        out: list[float] = []
        for k in range(kills):
            holder = await _holder(sims)
            seen = len(epochs)
            killed = time.monotonic()
            holder.kill()
            holder.wait()
            while len(epochs) == seen:
                changed.clear()
                await asyncio.wait_for(changed.wait(), 60)
            out.append((epochs[seen][0] - killed) * 1000)
            progress(f"  kill {k + 1}: {out[-1]:.0f} ms")
            fresh, fresh_port = await asyncio.to_thread(_serve, csv, work, "simulation",
                                                        f"sim{k + 2}", redis)
            procs.append(fresh)
            sims[fresh] = fresh_port
        reader.cancel()
    return out


async def _holder(sims: dict[subprocess.Popen[str], int]) -> subprocess.Popen[str]:
    """The simulation process holding the lease (the one that says so on /healthz)."""
    import urllib.request

    for proc, port in sims.items():
        if proc.poll() is not None:
            continue
        def get(p: int = port) -> Any:
            with urllib.request.urlopen(f"http://127.0.0.1:{p}/healthz", timeout=10) as r:
                return json.loads(r.read())
        body = await asyncio.to_thread(get)
        if body.get("lease") == "held":
            return proc
    raise RuntimeError("no simulation holds the lease")
