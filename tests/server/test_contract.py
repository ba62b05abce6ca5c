"""Places where the server used to part from the contract, each held to it (issue 11)."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from pathlib import Path

import pytest
import websockets

from graphwire.protocol import settings_codec as sc
from graphwire.protocol.client_positions import decode_client_positions, encode_client_positions
from graphwire.protocol.compression import GZIP_TALLY
from graphwire.protocol.header import Flags
from graphwire.server.access import forwarded_for
from graphwire.server.app import GraphwireServer
from graphwire.server.config import ServerConfig
from graphwire.server.keys import HUB, METRICS
from graphwire.settings import StoreError

from .conftest import Harness, ServerFactory


async def test_host_and_origin_are_checked_on_a_wildcard_bind(make_server: ServerFactory
                                                              ) -> None:
    h = await make_server(host="0.0.0.0")
    port = h.server.port
    status, _ = await h.get("/api/graph/state", headers={"Host": f"rebind.example:{port}"})
    assert status == 403  # a DNS-rebinding page names its own host
    status, _ = await h.get("/api/graph/state", headers={"Host": f"127.0.0.1:{port}"})
    assert status == 200  # the address the request reached
    status, _ = await h.get("/api/graph/state", headers={"Host": f"localhost:{port}"})
    assert status == 200
    status, err = await h.send("POST", "/api/graph/sssp", {"source": 1},
                               headers={"Origin": f"http://evil.example:{port}"})
    assert status == 403 and err["error"]["code"] == "forbidden"  # right port, foreign host
    status, _ = await h.send("POST", "/api/graph/sssp", {"source": 1},
                             headers={"Origin": f"http://127.0.0.1:{port}"})
    assert status == 200
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(h.ws_url, origin=f"http://evil.example:{port}")


async def test_allow_origin_adds_to_the_servers_own_origin(make_server: ServerFactory) -> None:
    h = await make_server(allow_origins=["https://app.example"])
    own = f"http://127.0.0.1:{h.server.port}"
    for origin in ("https://app.example", own):
        ws = await websockets.connect(h.ws_url, origin=origin)
        await ws.close()
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(h.ws_url, origin="https://other.example")


async def test_server_names_are_served_hosts(make_server: ServerFactory) -> None:
    h = await make_server(server_names=["graph.example"])
    status, _ = await h.get("/api/graph/state", headers={"Host": "graph.example"})
    assert status == 200
    status, _ = await h.get("/api/graph/state", headers={"Host": "other.example"})
    assert status == 403


def test_the_forwarded_address_is_the_one_the_proxy_saw() -> None:
    # the client wrote "127.0.0.1, 10.9.9.9"; the proxy appended the address it saw
    assert forwarded_for(["127.0.0.1, 10.9.9.9, 203.0.113.7"], {"127.0.0.1"}) == "203.0.113.7"
    # a chain of trusted hops on the proxy's own address is skipped
    assert forwarded_for(["198.51.100.4, 127.0.0.1"], {"127.0.0.1"}) == "198.51.100.4"
    assert forwarded_for(["a, b", "198.51.100.4"], {"127.0.0.1"}) == "198.51.100.4"
    assert forwarded_for(["not-an-address"], {"127.0.0.1"}) is None
    assert forwarded_for([], {"127.0.0.1"}) is None


async def test_behind_a_proxy_a_client_can_neither_pose_as_loopback_nor_rotate(
        make_server: ServerFactory) -> None:
    h = await make_server(trusted_proxy=True, overrides={
        "system.rateLimits.control.burst": 1, "system.rateLimits.control.perMinute": 1,
        "system.rateLimits.banThreshold": 2})
    statuses = []
    for k in range(4):
        # the left-most entry changes every time and claims loopback; the proxy's entry does not
        headers = {"X-Forwarded-For": f"127.0.0.{k + 1}, 203.0.113.7"}
        async with h.http.get(h.base + "/api/graph/state", headers=headers) as resp:
            statuses.append((resp.status, (await resp.json()).get("error", {}).get("code")))
        await asyncio.sleep(1.05)  # one violation a second per class counts
    assert statuses[0] == (200, None)
    assert statuses[1] == (429, "rate_limited")
    assert statuses[-1] == (429, "banned")  # one identity, not loopback: banned
    assert h.server[METRICS].bans == 1
    ok, _ = await h.get("/api/graph/state", headers={"X-Forwarded-For": "198.51.100.1"})
    assert ok == 200  # another client behind the proxy is not


async def test_the_message_that_triggers_a_ban_is_answered_then_banned_then_closed(
        make_server: ServerFactory) -> None:
    h = await make_server(token="t", overrides={
        "system.rateLimits.positions.burst": 1, "system.rateLimits.positions.perMinute": 1,
        "system.rateLimits.banThreshold": 2})
    c = await h.connect("?token=t")
    epoch = c.established["epoch"]
    await c.send(encode_client_positions([1], [[1, 1, 1]], batch=1, epoch=epoch))
    assert (await c.next_json("positions_ack"))["accepted"] == 1
    await c.send(encode_client_positions([1], [[1, 1, 1]], batch=2, epoch=epoch))
    assert (await c.next_json("positions_ack"))["rejected"][0]["reason"] == "rate_limited"
    await asyncio.sleep(1.05)  # the next violation counts: the second, the threshold
    await c.send(encode_client_positions([1], [[1, 1, 1]], batch=3, epoch=epoch))
    after = [await c.next_json(), await c.next_json()]
    assert after[0]["type"] == "positions_ack" and after[0]["batch"] == 3
    assert after[0]["rejected"] == [{"id": 1, "reason": "rate_limited"}]
    assert after[1]["type"] == "error" and after[1]["error"]["code"] == "banned"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await c.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_only_a_message_over_the_maximum_closes_with_1009(make_server: ServerFactory
                                                                ) -> None:
    h = await make_server(overrides={"system.websocket.maxMessageSize": 4096})
    c = await h.connect()
    # exactly the maximum is read (an unknown kind: answered, not closed)
    await c.send(b"\x7f" * 4096)
    assert (await c.next_json("error"))["error"]["code"] == "unknown_kind"
    await c.send(b"\x7f" * 4097)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await c.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_a_ban_answers_429_with_the_rate_limit_headers(make_server: ServerFactory
                                                             ) -> None:
    h = await make_server(token="t", overrides={
        "system.rateLimits.control.burst": 1, "system.rateLimits.control.perMinute": 1,
        "system.rateLimits.banThreshold": 1})
    auth = {"Authorization": "Bearer t"}
    assert (await h.get("/api/graph/state", headers=auth))[0] == 200
    assert (await h.get("/api/graph/state", headers=auth))[1]["error"]["code"] == "rate_limited"
    async with h.http.get(h.base + "/api/graph/state", headers=auth) as resp:
        body = await resp.json()
        assert resp.status == 429 and body["error"]["code"] == "banned"
        for name in ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                     "X-RateLimit-Reset"):
            assert name in resp.headers
        assert resp.headers["X-RateLimit-Limit"] == "1"
        assert int(resp.headers["Retry-After"]) >= 599  # the rest of the ban


async def test_an_unexpected_failure_closes_with_1011(harness: Harness,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    c, _ = await harness.subscribe("v2")

    def broken(client_id: str) -> bool:
        raise RuntimeError("injected failure")

    # no real part fails on demand: inject one failure where a control message lands
    monkeypatch.setattr(harness.server[HUB], "request_keyframe", broken)
    await c.send_json({"type": "request_keyframe"})
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await c.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    status, _ = await harness.get("/healthz")
    assert status == 200  # the server goes on


async def test_gzipped_client_positions_are_accepted(harness: Harness) -> None:
    c = await harness.connect()
    ids = list(range(100))
    pos = [[float(i % 7), 1.0, 2.0] for i in ids]
    frame = encode_client_positions(ids, pos, batch=9, epoch=c.established["epoch"],
                                    compress=True)
    assert frame[1] & Flags.COMPRESSED  # 1,600 bytes of records shrink
    batch = decode_client_positions(frame)
    assert batch.ids.tolist() == ids and batch.pos.tolist() == pos
    await c.send(frame)
    ack = await c.next_json("positions_ack")
    assert ack == {"type": "positions_ack", "batch": 9, "accepted": 100, "rejected": []}


async def test_settings_frames_that_do_not_decode(make_server: ServerFactory) -> None:
    h = await make_server(overrides={"system.rateLimits.settings.burst": 2,
                                     "system.rateLimits.settings.perMinute": 1})
    c = await h.connect()
    # a body that inflates past 10 MiB: too_large, as §2 says (its req is inside the gzip)
    bomb = gzip.compress(b"\x01" + b"\x00" * (11 * 1024 * 1024))
    await c.send(bytes([0x10, 0xFF]) + bomb)
    err = await c.next_json("error")
    assert err["error"]["code"] == "too_large"
    # a Get cut short: its req (77) is readable, so the Error carries it
    await c.send(bytes([0x10, 0x00, 0x01]) + (77).to_bytes(4, "little") + b"\x01")
    reply = await c.settings_reply(77)
    assert isinstance(reply, sc.Error) and reply.code == 4
    # a plain body behind an unknown compression byte: the req is still read
    await c.send(bytes([0x10, 0x07, 0x01]) + (78).to_bytes(4, "little") + b"\x01\x00\x00\x00")
    reply = await c.settings_reply(78)
    assert isinstance(reply, sc.Error) and reply.code == 4
    # settings Pings are charged to the settings class: burst 2, then a warning
    for t in (1, 2, 3):
        await c.send(sc.encode_settings(sc.Ping(t)))
    pongs = []
    while len(pongs) < 2:
        msg = sc.decode_settings(await c.next_frame(0x10))
        if isinstance(msg, sc.Pong):
            pongs.append(msg.timestamp_ms)
    warning = await c.next_json("rate_limit_warning")
    assert pongs == [1, 2] and warning["class"] == "settings"


async def test_compression_ratio_counts_every_compressed_payload(harness: Harness) -> None:
    c, _ = await harness.subscribe("v2")
    await c.next_frame(0x02)
    plain, packed = GZIP_TALLY.plain, GZIP_TALLY.packed
    await c.send_json({"type": "set_sssp_source", "source": 0})
    frame = await c.next_frame(0x05)
    assert frame[1] & Flags.COMPRESSED  # 200 distances and parents shrink
    inflated = zlib.decompress(frame[8:], 31)
    assert GZIP_TALLY.plain - plain >= len(inflated)  # the SSSP payload was counted
    assert GZIP_TALLY.packed - packed >= len(frame) - 8
    ratio = harness.server[METRICS].as_json()["compressionRatio"]
    assert ratio > 1.0


async def test_a_frozen_layout_is_settled_at_once(harness: Harness) -> None:
    c, _ = await harness.subscribe("q", intervalMs=17)
    await c.next_frame(0x03)
    status, _ = await harness.send(
        "PUT", "/api/settings/visualisation.graphs.logseq.physics.enabled", {"value": False})
    assert status == 200
    loop = asyncio.get_running_loop()
    start = loop.time()
    await c.next_frame(0x03, until=lambda f: f[1] & Flags.SETTLED != 0, timeout=5)
    assert loop.time() - start < 2.0  # at once, not after settledKeyframeIntervalMs
    _, state = await harness.get("/api/graph/state")
    assert state["settled"] is True
    status, _ = await harness.send(
        "PUT", "/api/settings/visualisation.graphs.logseq.physics.enabled", {"value": True})
    frame = await c.next_frame(0x03, until=lambda f: f[1] & Flags.SETTLED == 0, timeout=5)
    assert not frame[1] & Flags.SETTLED  # moving again


async def test_an_in_memory_database_is_refused() -> None:
    for db in (":memory:", "file::memory:?cache=shared"):
        server = GraphwireServer(ServerConfig(db=db, port=0, static_dir=None))
        with pytest.raises(StoreError, match="epoch"):
            await server.start()


def test_the_command_line_refuses_an_in_memory_database(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    from graphwire.cli import main

    assert main(["serve", "--db", ":memory:", "--port", "0"]) == 2
    assert "epoch" in capsys.readouterr().err


def test_the_command_line_refuses_a_bad_port_and_a_missing_folder(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from graphwire.cli import main

    assert main(["serve", "--port", "99999"]) == 2
    assert "--port 99999: a port is 0 to 65535" in capsys.readouterr().err
    typo = tmp_path / "no" / "such" / "s.db"
    assert main(["serve", "--db", str(typo), "--port", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()  # no folders made for a typo
    # a Redis address without its scheme: one line that shows the URL, not a traceback
    assert main(["serve", "--redis", "127.0.0.1:6379", "--role", "gateway", "--port", "0"]) == 2
    assert "redis://127.0.0.1:6379" in capsys.readouterr().err

