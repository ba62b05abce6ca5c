"""Slow clients, shutdown: what the server does when clients misbehave or it must stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import websockets

from graphwire.protocol.positions import decode_v2
from graphwire.server import app as app_module
from graphwire.server.keys import CONNECTIONS, METRICS

from .conftest import ServerFactory, ring_csv


def masked_text(payload: bytes) -> bytes:
    """A client text frame (clients must mask)."""
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


async def never_reading_client(port: int, subscribe: dict[str, object]) -> socket.socket:
    """Handshake, subscribe, then never read again (small receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                  b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
                                  b"Sec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101")
    await loop.sock_sendall(sock, masked_text(json.dumps(subscribe).encode()))
    return sock


async def test_a_client_that_never_reads(make_server: ServerFactory, tmp_path: Path) -> None:
    h = await make_server(
        source=str(ring_csv(tmp_path / "r.csv", 2000)),
        overrides={"system.websocket.slowClientHighWaterBytes": 65536,
                   "system.websocket.slowClientTimeoutMs": 1500})
    stuck = await never_reading_client(h.server.port, {"type": "subscribe", "format": "v2"})
    good, _ = await h.subscribe("v2")
    loop = asyncio.get_running_loop()
    start = loop.time()
    frames = 0
    seqs = []
    peak_outbox = 0
    while h.server[METRICS].slow_closes == 0:
        frame = decode_v2(await good.next_frame(0x02))
        frames += 1
        seqs.append(frame.header.seq)
        for s in h.server[CONNECTIONS]:
            if s.client_id != good.client_id:
                peak_outbox = max(peak_outbox, len(s._outbox))
                assert s.write_buffer() < 65536 + 80_000  # at most one frame past the mark
        assert loop.time() - start < 30
    elapsed = loop.time() - start
    m = h.server[METRICS].as_json()
    assert m["framesSkippedSlow"] > 0 and m["slowClientCloses"] == 1
    assert peak_outbox <= 2  # never more than the frames handed over at once
    assert frames / elapsed >= 4.5  # the reading client kept the stream's pace
    assert seqs == sorted(seqs)
    while len(h.server[CONNECTIONS]) > 1:  # the stuck connection goes within the close timeout
        await good.next_frame(0x02)
        assert loop.time() - start < 40
    stuck.close()


@pytest.mark.timeout(120)
async def test_sigterm_closes_clients_with_1001_and_exits(tmp_path: Path) -> None:
    src = ring_csv(tmp_path / "r.csv")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphwire.cli", "serve", str(src), "--port", str(port),
         "--db", str(tmp_path / "s.db")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        assert f"127.0.0.1:{port}" in line
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.recv()
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        rc = await asyncio.get_running_loop().run_in_executor(None, lambda: proc.wait(15))
        assert rc == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_exits_though_a_task_outlives_its_cancellation(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """`graphwire serve` ends once the server has stopped, whatever its tasks do: a task that
    ends when cancelled does, and one that outlives its cancellation (asyncio.run would wait
    for it for ever) is given the grace and left behind, with a warning."""
    monkeypatch.setattr(app_module, "LEFTOVER_GRACE", 0.2)
    ended: list[str] = []

    async def polite() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append("polite")

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ended.append("stubborn cancelled")
            await asyncio.Event().wait()

    async def main() -> None:
        asyncio.ensure_future(polite()).set_name("polite")
        asyncio.ensure_future(stubborn()).set_name("stubborn")
        await asyncio.sleep(0)

    with caplog.at_level("WARNING", logger="graphwire.server"):
        app_module.run(main())
    assert sorted(ended) == ["polite", "stubborn cancelled"]
    assert "1 tasks did not end" in caplog.text and "stubborn" in caplog.text

    async def fails() -> None:
        raise OSError("address in use")

    with pytest.raises(OSError, match="address in use"):  # what main raises still reaches the CLI
        app_module.run(fails())
