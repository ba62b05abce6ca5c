"""Prebuilt WebSocket frames written straight to a transport are what a real client reads."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import websockets
from aiohttp import web

from graphwire.server.fanout import WireFrame, binary_frame, deliver
from graphwire.server.metrics import Metrics

SIZES = (0, 125, 126, 65535, 65536, 300_000)  # each length encoding and its boundaries


async def test_prebuilt_frames_reach_a_websocket_client_intact() -> None:
    payloads = [bytes([i % 251]) * n for i, n in enumerate(SIZES)]

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        await ws.send_str("first")  # through aiohttp's writer: order with raw writes is kept
        assert request.transport is not None
        for p in payloads:
            request.transport.write(WireFrame(p).wire)
        await ws.send_str("last")
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None,
                                      compression=None) as client:
            got = [await asyncio.wait_for(client.recv(), 10) for _ in range(len(SIZES) + 2)]
    finally:
        await runner.cleanup()
    assert got[0] == "first" and got[-1] == "last"
    assert got[1:-1] == payloads


def test_the_header_is_the_shortest_length_encoding() -> None:
    assert binary_frame(b"ab")[:2] == b"\x82\x02"
    assert binary_frame(b"x" * 126)[:4] == b"\x82\x7e\x00\x7e"
    assert binary_frame(b"x" * 65536)[:10] == b"\x82\x7f" + (65536).to_bytes(8, "big")
    frame = WireFrame(b"payload")
    assert frame.wire is frame.wire and len(frame) == 7  # built once


def test_a_group_counts_only_the_connections_that_took_the_frames() -> None:
    class Sink:
        def __init__(self, open_: bool) -> None:
            self.open, self.got = open_, 0

        def write_frames(self, frames: Sequence[WireFrame]) -> bool:
            if self.open:
                self.got += len(frames)
            return self.open

    sinks = [Sink(True), Sink(False), Sink(True)]
    metrics = Metrics()
    deliver(sinks, [WireFrame(b"k" * 40), WireFrame(b"d" * 10)], metrics, "q", 5, True)
    assert [s.got for s in sinks] == [2, 0, 2]
    assert metrics.frames["q"] == 4 and metrics.frame_bytes["q"] == 2 * 50
    assert metrics.keyframes["q"] == 2 and metrics.messages_sent == 4
    deliver([Sink(False)], [WireFrame(b"x")], metrics, "q", 1, False)  # a closed one only
    assert metrics.frames["q"] == 4
