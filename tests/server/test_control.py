"""Control messages, client positions, resume, heartbeats and bad input over a real socket."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from graphwire.protocol import settings_codec as sc
from graphwire.protocol.client_positions import encode_client_positions
from graphwire.protocol.header import Flags
from graphwire.protocol.positions import decode_v2
from graphwire.server.keys import CONNECTIONS, METRICS

from .conftest import Harness, ServerFactory


async def test_ping_pong_echoes_id_and_timestamp(harness: Harness) -> None:
    c = await harness.connect()
    await c.send_json({"type": "ping", "timestamp": 1700000000123, "id": 42})
    assert await c.next_json("pong") == {"type": "pong", "timestamp": 1700000000123, "id": 42}


async def test_bad_json_is_answered_and_the_connection_lives(harness: Harness) -> None:
    c = await harness.connect()
    for text, code in [("{oops", "malformed_frame"), ('{"type": "dance", "id": "d"}',
                                                     "unknown_message"),
                       ('{"type": "subscribe", "format": "v7", "id": 5}', "format_unsupported")]:
        await c.send(text)
        err = await c.next_json("error")
        assert err["error"]["code"] == code
        assert set(err["error"]) >= {"code", "message", "category", "retryable"}
    await c.send_json({"type": "ping", "timestamp": 1})
    assert (await c.next_json("pong"))["timestamp"] == 1


async def test_a_pinned_node_is_exactly_where_the_client_put_it(harness: Harness) -> None:
    c, _ = await harness.subscribe("v2")
    await c.next_frame(0x02)
    epoch = c.established["epoch"]
    target = [12.5, -33.25, 7.125]
    await c.send(encode_client_positions([7, 9999], [target, [0, 0, 0]], batch=5, epoch=epoch,
                                         pin=True))
    ack = await c.next_json("positions_ack")
    assert ack == {"type": "positions_ack", "batch": 5, "accepted": 1,
                   "rejected": [{"id": 9999, "reason": "unknown_node"}]}
    await c.send_json({"type": "request_keyframe"})
    key = decode_v2(await c.next_frame(0x02, until=lambda f: f[1] & Flags.KEYFRAME != 0))
    idx = key.nodes.ids.tolist().index(7)
    assert key.nodes.pos[idx].tolist() == target
    assert key.nodes.vel[idx].tolist() == [0.0, 0.0, 0.0]
    _, state = await harness.get("/api/graph/state?positions=1")
    pos7 = next(p for p in state["positions"] if p["id"] == 7)
    assert [pos7["x"], pos7["y"], pos7["z"]] == target
    await c.send(encode_client_positions([7], [[0, 0, 0]], batch=6, epoch=epoch, release=True))
    assert (await c.next_json("positions_ack"))["accepted"] == 1


async def test_positions_are_checked_one_by_one(harness: Harness) -> None:
    c = await harness.connect()
    epoch = c.established["epoch"]
    await c.send(encode_client_positions(
        [1, 2, 3, 4], [[np.nan, 0, 0], [0, 1e6, 0], [1, 2, 3], [0, np.inf, 0]], batch=1,
        epoch=epoch))
    ack = await c.next_json("positions_ack")
    assert ack["accepted"] == 1
    assert ack["rejected"] == [{"id": 1, "reason": "not_finite"},
                               {"id": 2, "reason": "out_of_bounds"},
                               {"id": 4, "reason": "not_finite"}]


async def test_stale_epoch_batches_are_rejected_whole(harness: Harness) -> None:
    c = await harness.connect()
    stale = (c.established["epoch"] + 1) & 0xFFFF
    await c.send(encode_client_positions([1, 2], [[1, 1, 1], [2, 2, 2]], batch=77, epoch=stale))
    ack = await c.next_json("positions_ack")
    assert ack == {"type": "positions_ack", "batch": 77, "accepted": 0, "rejected": [
        {"id": 1, "reason": "stale_epoch"}, {"id": 2, "reason": "stale_epoch"}]}


async def test_a_thousand_malformed_frames_get_capped_errors(harness: Harness) -> None:
    c = await harness.connect()
    bad = [b"\x02\x00", b"\x99junk", b"\x20\x00\x01\x00\x01\x00\x00\x00xyz", b"\x10\x07"]
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(1000):
        await c.send(bad[i % len(bad)])
    await c.send_json({"type": "ping", "timestamp": 7, "id": "alive"})
    errors = 0
    settings_errors = 0
    while True:
        msg = await c.recv()
        if isinstance(msg, str):
            doc = json.loads(msg)
            if doc["type"] == "pong":
                break
            assert doc["type"] == "error"
            errors += 1
        elif msg[0] == 0x10:
            reply = sc.decode_settings(msg)
            assert isinstance(reply, sc.Error) and reply.code == 4
            settings_errors += 1
    elapsed = loop.time() - start
    # every bad frame, settings frames included, draws on one budget of 10 answers a second
    # (a burst of 10, then 10/s while the flood lasts)
    answered = errors + settings_errors
    assert 10 <= answered <= 10 + 10 * elapsed + 1
    m = harness.server[METRICS].as_json()
    assert m["errorsSent"] == answered
    assert m["errorsSent"] + m["errorsSuppressed"] == 1000  # each one answered or counted
    status, _ = await harness.get("/healthz")
    assert status == 200
    assert harness.server[METRICS].rate_limited == 0  # malformed frames consume no tokens


async def test_resume_after_a_reconnect(harness: Harness) -> None:
    await harness.send("PUT", "/api/settings/visualisation.rendering.edges.opacity",
                       {"value": 0.5})  # revision 1: a Sync since 0 would be a Snapshot
    c = await harness.connect()
    old_id = c.client_id
    revision = c.established["settings"]["revision"]
    epoch = c.established["epoch"]
    await c.close()
    status, _ = await harness.send(
        "PATCH", "/api/settings", {"visualisation.graphs.logseq.physics.damping": 0.8,
                                   "visualisation.rendering.nodes.size": 6.5})
    assert status == 200
    r = await harness.connect(f"?resume={old_id}")
    assert r.established["isReconnection"] is True and r.client_id == old_id
    await r.send_json({"type": "resume", "epoch": epoch, "seq": 1, "settingsRevision": revision})
    reply = sc.decode_settings(await r.next_frame(0x10))
    assert isinstance(reply, sc.Response) and reply.req == 0
    assert reply.revision == revision + 1
    ids = dict(reply.entries)
    assert ids[1] == sc.Value(sc.Tag.F64, 0.8) and len(ids) == 2
    await r.send_json({"type": "resume", "epoch": epoch + 5, "seq": 1,
                       "settingsRevision": reply.revision})
    changed = await r.next_json("graph_changed")
    assert changed["refetch"] is True and changed["epoch"] == epoch
    unknown = await harness.connect("?resume=never-seen")
    assert unknown.established["isReconnection"] is False
    assert unknown.client_id != "never-seen"


async def raw_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket handshake on a bare TCP socket that then never reads or answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split a server's bytes into WebSocket frames (RFC 6455 §5.2; a server never masks):
    (opcode, payload) of each whole frame."""
    frames = []
    i = 0
    while i + 2 <= len(data):
        opcode, length = data[i] & 0x0F, data[i + 1] & 0x7F
        assert not data[i + 1] & 0x80, "a server frame is never masked"
        i += 2
        if length == 126:
            length = int.from_bytes(data[i:i + 2], "big")
            i += 2
        elif length == 127:
            length = int.from_bytes(data[i:i + 8], "big")
            i += 8
        if i + length > len(data):
            break
        frames.append((opcode, data[i:i + length]))
        i += length
    return frames


def test_server_frames_are_split_by_their_lengths() -> None:
    ping_inside = bytes([0x82, 3]) + b"\x89\x89\x89"  # a binary frame holding 0x89 bytes
    long = bytes([0x81, 126, 0x01, 0x00]) + b"x" * 256
    assert [op for op, _ in server_frames(ping_inside + bytes([0x89, 0]) + long)] == [
        0x2, 0x9, 0x1]


async def test_server_pings_and_drops_a_silent_peer(make_server: ServerFactory) -> None:
    h = await make_server(overrides={"system.websocket.heartbeatIntervalMs": 100,
                                     "system.websocket.heartbeatTimeoutMs": 400})
    alive = await h.connect(ping_interval=None)  # sends nothing itself, but answers pings
    assert alive.established["heartbeat"] == {"intervalMs": 100, "timeoutMs": 400}
    loop = asyncio.get_running_loop()
    start = loop.time()  # before the handshake: the server counts silence from it
    reader, writer = await raw_websocket(h.server.port)
    received = b""
    while chunk := await asyncio.wait_for(reader.read(65536), 10):  # until the server hangs up
        received += chunk
    waited = loop.time() - start
    opcodes = [op for op, _ in server_frames(received)]
    assert waited >= 0.4 and opcodes.count(0x9) >= 2  # the server kept pinging
    assert opcodes[-1] == 0x8  # then closed: its own pings never counted as the peer's life
    assert opcodes[0] == 0x1  # connection_established came first
    # the client that answered every ping is still there
    await alive.send_json({"type": "ping", "timestamp": 3})
    assert (await alive.next_json("pong"))["timestamp"] == 3
    assert [s.client_id for s in h.server[CONNECTIONS]] == [alive.client_id]
    writer.close()
