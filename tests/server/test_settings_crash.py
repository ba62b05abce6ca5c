"""A server killed with SIGKILL while writers run: every acknowledged write survives (§5)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import websockets

from graphwire.protocol import settings_codec as sc
from graphwire.protocol.settings_codec import Tag, Value

from .conftest import ring_csv

PATHS = ["repel_k", "rest_length", "max_force", "max_velocity"]


def start_server(tmp_path: Path, db: Path) -> tuple[subprocess.Popen[str], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphwire.cli", "serve", str(ring_csv(tmp_path / "r.csv")),
         "--port", str(port), "--db", str(db),
         "--set", "system.rateLimits.settings.perMinute=10000000",
         "--set", "system.rateLimits.settings.burst=10000000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert f"127.0.0.1:{port}" in line, line + (proc.stderr.read() if proc.stderr else "")
    return proc, port


async def path_ids(port: int) -> dict[str, int]:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.recv()
        table = sc.decode_settings(await ws.recv())
        assert isinstance(table, sc.PathTable)
        return {p.path: p.path_id for p in table.paths}


@pytest.mark.timeout(180)
async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "settings.db"
    loop = asyncio.get_running_loop()
    proc, port = await loop.run_in_executor(None, start_server, tmp_path, db)
    acked: dict[int, tuple[float, int]] = {}  # path id -> last acknowledged (value, revision)
    sent: dict[int, list[float]] = {}
    try:
        ids = await path_ids(port)
        pids = [ids["visualisation.graphs.visionflow.physics." + n] for n in PATHS]
        enough = asyncio.Event()

        async def writer(pid: int) -> None:
            sent[pid] = []
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_queue=None) as ws:
                j = 0
                with contextlib.suppress(websockets.ConnectionClosed, OSError):
                    while True:
                        j += 1
                        value = 1.0 + j
                        sent[pid].append(value)
                        await ws.send(sc.encode_settings(sc.Set(j, pid, Value(Tag.F64, value))))
                        while True:
                            msg = await ws.recv()
                            if isinstance(msg, bytes) and msg[0] == 0x10:
                                reply = sc.decode_settings(msg)
                                if isinstance(reply, sc.Response) and reply.req == j:
                                    acked[pid] = (value, reply.revision)
                                    break
                        if len(acked) == len(pids) and j > 40:
                            enough.set()

        tasks = [asyncio.create_task(writer(pid)) for pid in pids]
        await asyncio.wait_for(enough.wait(), 60)
        proc.send_signal(signal.SIGKILL)  # while the writers are still writing
        await asyncio.gather(*tasks)
        await loop.run_in_executor(None, proc.wait)
        snapshot = dict(acked)
        top = max(rev for _, rev in snapshot.values())

        proc, port = await loop.run_in_executor(None, start_server, tmp_path, db)
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            established = json.loads(await ws.recv())
            await ws.recv()
            assert established["settings"]["revision"] >= top
            await ws.send(sc.encode_settings(sc.BatchGet(1, tuple(pids))))
            reply = sc.decode_settings(await ws.recv())
            assert isinstance(reply, sc.Response)
            stored = {pid: v.data for pid, v in reply.entries}
            for pid, (value, _) in snapshot.items():
                # the last acknowledged value, or a later one that was committed but whose
                # Response the kill cut off
                later = sent[pid][sent[pid].index(value):]
                assert stored[pid] in later, (pid, stored[pid], value)
            await ws.send(sc.encode_settings(sc.Set(2, pids[0], Value(Tag.F64, 12345.0))))
            after = sc.decode_settings(await ws.recv())
            assert isinstance(after, sc.Response) and after.revision > top  # it continued
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
