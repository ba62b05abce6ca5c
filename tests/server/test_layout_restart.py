"""The remembered layout: a real ``graphwire serve`` stopped (SIGTERM) or killed (SIGKILL) and
started again on the same database (issue 12)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import websockets

from graphwire.cli import main
from graphwire.graph.layout_file import Layout, read_layout
from graphwire.protocol import QDecoder
from graphwire.settings.layout_store import LayoutStore

from .conftest import ServerFactory, ring_csv

TIMEOUT = 90.0
PHYSICS = "visualisation.graphs.logseq.physics."


class Served:
    """A ``graphwire serve`` subprocess on a free port."""

    def __init__(self, source: Path, db: Path, *extra: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "graphwire.cli", "serve", str(source), "--port",
             str(self.port), "--db", str(db), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once it serves
        assert f"127.0.0.1:{self.port}" in line, line + (self.proc.stderr.read()
                                                           if self.proc.stderr else "")
        self.base = f"http://127.0.0.1:{self.port}"

    async def get(self, path: str) -> Any:
        async with aiohttp.ClientSession() as http, http.get(self.base + path) as resp:
            return await resp.json()

    async def post(self, path: str, body: Any) -> Any:
        async with aiohttp.ClientSession() as http, http.post(self.base + path,
                                                               json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


async def start(source: Path, db: Path, *extra: str) -> Served:
    return await asyncio.get_running_loop().run_in_executor(None, Served, source, db, *extra)


async def first_keyframe(port: int, *, settled: bool = False) -> QDecoder:
    """Subscribe to q and return the decoder after the first keyframe (that is settled)."""
    dec = QDecoder()
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=2**26) as ws:
        await ws.send(json.dumps({"type": "subscribe", "format": "q", "intervalMs": 50}))
        async with asyncio.timeout(TIMEOUT):
            while dec.key_seq is None or (settled and not dec.settled):
                msg = await ws.recv()
                if isinstance(msg, bytes) and msg[0] == 0x03:
                    dec.apply(msg)
    return dec


async def frames_after(port: int, seq: int) -> None:
    """Follow the stream until a frame of at least ``seq`` arrives."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=2**26) as ws:
        await ws.send(json.dumps({"type": "subscribe", "format": "q", "intervalMs": 50}))
        async with asyncio.timeout(TIMEOUT):
            while True:
                msg = await ws.recv()
                if isinstance(msg, bytes) and msg[0] == 0x03 and \
                        int.from_bytes(msg[4:8], "little") >= seq:  # the header's seq
                    return


async def positions_by_key(served: Served) -> dict[str, np.ndarray]:
    data = await served.get("/api/graph/data")
    state = await served.get("/api/graph/state?positions=1")
    keys = {n["id"]: n["key"] for n in data["nodes"]}
    return {keys[p["id"]]: np.array([p["x"], p["y"], p["z"]]) for p in state["positions"]}


@pytest.mark.timeout(300)
async def test_sigterm_and_restart_comes_back_settled_where_it_was(tmp_path: Path) -> None:
    source, db = ring_csv(tmp_path / "ring.csv"), tmp_path / "settings.db"
    # calm sooner than by default (the test is about coming back, not about the layout)
    served = await start(source, db, "--set", f"{PHYSICS}settle_energy=0.0005")
    try:
        await first_keyframe(served.port, settled=True)  # laid out to rest
        before = await positions_by_key(served)
        assert (await served.get("/api/graph/state"))["settled"] is True
        assert served.stop(signal.SIGTERM) == 0
        served = await start(source, db)
        state = await served.get("/api/graph/state")
        assert state["settled"] is True  # at once: nothing to lay out again
        dec = await first_keyframe(served.port)
        assert dec.settled  # the first frame a viewer gets already says so
        data = await served.get("/api/graph/data")
        keys = np.array([{n["id"]: n["key"] for n in data["nodes"]}[int(i)] for i in dec.ids])
        shown = dec.positions()
        was = np.array([before[k] for k in keys])
        grid = dec.grid
        assert grid is not None
        # every node within the q grid's bound (half a step) of where it was at the stop
        assert np.all(np.abs(shown - was) <= grid.step / 2 * (1 + 1e-6) + 1e-9)
        assert (await served.get("/api/graph/state"))["settled"] is True
    finally:
        served.close()


@pytest.mark.timeout(300)
async def test_after_sigkill_positions_and_pins_come_back_a_few_seconds_old(
        tmp_path: Path) -> None:
    source, db = ring_csv(tmp_path / "ring.csv"), tmp_path / "settings.db"
    served = await start(source, db)
    acked: dict[int, float] = {}  # drag number -> when the server took it
    try:
        await first_keyframe(served.port)
        begun = time.monotonic()
        k = 0
        while time.monotonic() - begun < 7.0:  # drag (and pin) node 0 along a path
            k += 1
            body = {"positions": [{"id": 0, "x": 100 * np.cos(k / 5), "y": 100 * np.sin(k / 5),
                                   "z": float(k)}], "pin": True}
            assert (await served.post("/api/graph/positions", body))["accepted"] == 1
            acked[k] = time.monotonic()
            await asyncio.sleep(0.2)  # pace of a hand dragging, not a wait for the server
        killed = time.monotonic()
        served.stop(signal.SIGKILL)
        served = await start(source, db)
        state = await served.get("/api/graph/state?positions=1")
        node0 = next(p for p in state["positions"] if p["id"] == 0)
        drag = round(node0["z"])
        assert drag in acked and node0["z"] == pytest.approx(drag, abs=1e-4)
        assert node0["x"] == pytest.approx(100 * np.cos(drag / 5), abs=1e-3)
        age = killed - acked[drag]
        assert age < 5.0, f"the remembered position was {age:.1f} s old"
        metrics = await served.get("/api/metrics")
        assert metrics["sourceErrors"] == 0
        # pinned is remembered too: node 0 stays put while the rest of the layout moves
        await frames_after(served.port, state["seq"] + 5)
        later = await served.get("/api/graph/state?positions=1")
        assert later["seq"] >= state["seq"] + 5
        again = next(p for p in later["positions"] if p["id"] == 0)
        assert (again["x"], again["y"], again["z"]) == (node0["x"], node0["y"], node0["z"])
    finally:
        served.close()


async def test_layout_file_written_offline_is_served_settled(make_server: ServerFactory,
                                                             tmp_path: Path) -> None:
    source = ring_csv(tmp_path / "ring.csv", 120)
    out = tmp_path / "layout.json"
    assert main(["layout", str(source), "--out", str(out), "--no-progress"]) == 0
    layout = read_layout(out)
    assert layout.settled and len(layout) == 120
    h = await make_server(source=str(source), layout=str(out))
    _, state = await h.get("/api/graph/state?positions=1")
    assert state["settled"] is True
    _, data = await h.get("/api/graph/data")
    keys = {n["id"]: n["key"] for n in data["nodes"]}
    stored = dict(zip(layout.keys, layout.pos.tolist(), strict=True))
    for p in state["positions"]:
        assert [p["x"], p["y"], p["z"]] == pytest.approx(stored[keys[p["id"]]], abs=1e-4)


async def test_a_damaged_remembered_layout_is_laid_out_afresh(
        make_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = ring_csv(tmp_path / "ring.csv", n=30)
    store = LayoutStore(tmp_path / "s0.db", str(source.resolve()))  # the first server's db
    store.save(Layout([f"n{i:03d}" for i in range(30)], np.zeros((30, 3), np.float32)))
    store.close()
    with sqlite3.connect(tmp_path / "s0.db") as damage:
        damage.execute("UPDATE layouts SET keys = 'not json at all'")
    damage.close()
    caplog.set_level(logging.WARNING, logger="graphwire.server")
    h = await make_server(source=str(source))
    _, state = await h.get("/api/graph/state")
    assert state["nodesCount"] == 30  # served, from a fresh layout
    assert any("laying the graph out afresh" in r.getMessage() for r in caplog.records)
