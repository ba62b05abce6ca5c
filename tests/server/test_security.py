"""Who may talk to the server: tokens, origins, hosts; rate limits, warnings and bans (§1, §10)."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from graphwire.protocol import settings_codec as sc
from graphwire.protocol.client_positions import encode_client_positions
from graphwire.server.keys import LIMITER, METRICS, SETTINGS

from .conftest import Harness, ServerFactory


async def test_foreign_origin_and_host_are_refused(harness: Harness) -> None:
    status, err = await harness.send("POST", "/api/graph/sssp", {"source": 1},
                                     headers={"Origin": "https://evil.example"})
    assert status == 403 and err["error"]["code"] == "forbidden"
    assert err["error"]["category"] == "auth"
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(harness.ws_url, origin="https://evil.example")
    assert info.value.response.status_code == 403
    status, _ = await harness.get("/api/graph/state", headers={"Host": "rebind.example:8080"})
    assert status == 403
    # reading with a foreign Origin is fine; only writes and upgrades are refused
    status, _ = await harness.get("/api/graph/state", headers={"Origin": "https://x.example"})
    assert status == 200


async def test_allow_origin(make_server: ServerFactory) -> None:
    h = await make_server(allow_origins=["https://app.example"])
    ws = await websockets.connect(h.ws_url, origin="https://app.example")
    await ws.close()
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(h.ws_url, origin="https://other.example")


async def test_token_is_required_on_ws_and_api(make_server: ServerFactory) -> None:
    h = await make_server(token="s3cret")
    status, err = await h.get("/api/graph/state")
    assert status == 401 and err["error"]["code"] == "unauthorized"
    status, _ = await h.get("/api/graph/state", headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, _ = await h.get("/api/graph/state", headers={"Authorization": "Bearer s3cret"})
    assert status == 200
    status, _ = await h.get("/healthz")
    assert status == 200
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(h.ws_url)
    assert info.value.response.status_code == 401
    c = await h.connect("?token=s3cret")
    assert c.established["type"] == "connection_established"
    c2 = await h.connect(headers={"Authorization": "Bearer s3cret"})
    assert c2.client_id != c.client_id


async def test_admin_token_guards_system_settings(make_server: ServerFactory) -> None:
    h = await make_server(admin_token="root")
    path = "/api/settings/system.websocket.minUpdateRate"
    status, err = await h.send("PUT", path, {"value": 4})
    assert status == 403 and err["error"]["code"] == "forbidden"
    status, ok = await h.send("PUT", path, {"value": 4}, headers={"Authorization": "Bearer root"})
    assert status == 200 and ok["value"] == 4.0 and ok["previousValue"] == 5.0
    c = await h.connect()
    pid = h.server[SETTINGS].path_id("system.websocket.minUpdateRate")
    await c.send(sc.encode_settings(sc.Set(3, pid, sc.Value(sc.Tag.F64, 6.0))))
    reply = await c.settings_reply(3)
    assert isinstance(reply, sc.Error) and reply.code == 6


async def test_control_flood_gets_one_warning_a_second(harness: Harness) -> None:
    c = await harness.connect()
    for i in range(40):
        await c.send_json({"type": "ping", "timestamp": i})
    await c.send(encode_client_positions([1], [[1, 1, 1]], batch=1, epoch=c.established["epoch"]))
    pongs = warnings = acks = 0
    while pongs + warnings + acks < 22:
        doc = await c.next_json()
        if doc["type"] == "pong":
            pongs += 1
        elif doc["type"] == "positions_ack":
            acks += 1  # positions have their own bucket: still answered
            assert doc["accepted"] == 1
        elif doc["type"] == "rate_limit_warning":
            warnings += 1
            assert doc["class"] == "control" and doc["retryAfterMs"] > 0
            assert doc["retryAfterMs"] <= 1000  # 120/min: a token every 500 ms
    assert pongs == 20 and warnings == 1  # burst 20, the rest dropped, warned once a second
    assert harness.server[METRICS].rate_limit_warnings == 1


async def test_positions_over_the_limit_are_acked_as_rate_limited(harness: Harness) -> None:
    c = await harness.connect()
    epoch = c.established["epoch"]
    for b in range(55):
        await c.send(encode_client_positions([1], [[1, 1, 1]], batch=b, epoch=epoch))
    reasons = []
    for _ in range(55):
        ack = await c.next_json("positions_ack")
        reasons.append(ack["rejected"][0]["reason"] if ack["rejected"] else "ok")
    assert reasons.count("ok") >= 50 and "rate_limited" in reasons


async def test_settings_over_the_limit_get_error_5(make_server: ServerFactory) -> None:
    h = await make_server(overrides={"system.rateLimits.settings.burst": 3,
                                     "system.rateLimits.settings.perMinute": 1})
    c = await h.connect()
    for req in range(1, 6):
        await c.send(sc.encode_settings(sc.Get(req, 1)))
    codes = []
    for req in range(1, 6):
        reply = await c.settings_reply(req)
        codes.append(reply.code if isinstance(reply, sc.Error) else 0)
    assert codes == [0, 0, 0, 5, 5]


async def test_with_a_token_a_flood_ends_in_a_ban(make_server: ServerFactory) -> None:
    h = await make_server(token="t0k", overrides={"system.rateLimits.banThreshold": 3})
    c = await h.connect("?token=t0k")
    epoch = c.established["epoch"]
    # three classes over their limits: three violations in the same second reach the threshold
    for i in range(25):
        await c.send_json({"type": "ping", "timestamp": i})
    for b in range(55):
        await c.send(encode_client_positions([1], [[1, 1, 1]], batch=b, epoch=epoch))
    for r in range(65):
        await c.send(sc.encode_settings(sc.Get(r + 1, 1)))
    err = await c.next_json("error")
    while err["error"]["code"] != "banned":
        err = await c.next_json("error")
    assert err["error"]["category"] == "rate_limit" and err["error"]["retryAfterMs"] > 500_000
    with pytest.raises(websockets.ConnectionClosed) as info:
        while True:
            await c.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    status, body = await h.get("/api/graph/state", headers={"Authorization": "Bearer t0k"})
    assert status == 429 and body["error"]["code"] == "banned"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(h.ws_url + "?token=t0k")
    assert refused.value.response.status_code == 429


async def test_loopback_is_never_banned_without_auth(make_server: ServerFactory) -> None:
    h = await make_server(overrides={"system.rateLimits.banThreshold": 2})
    c = await h.connect()
    epoch = c.established["epoch"]
    for i in range(25):
        await c.send_json({"type": "ping", "timestamp": i})
    for b in range(55):
        await c.send(encode_client_positions([1], [[1, 1, 1]], batch=b, epoch=epoch))
    await c.send_json({"type": "ping", "timestamp": "x", "id": "end"})  # answered: error
    while (await c.next_json()).get("id") != "end":
        pass
    assert h.server[METRICS].bans == 0 and h.server[LIMITER].violations >= 2


async def test_http_rate_limit_has_the_four_headers(make_server: ServerFactory) -> None:
    h = await make_server(overrides={"system.rateLimits.control.burst": 2,
                                     "system.rateLimits.control.perMinute": 60})
    statuses = []
    for _ in range(3):
        async with h.http.get(h.base + "/api/graph/state") as resp:
            statuses.append(resp.status)
            headers = resp.headers
            body = await resp.json()
    assert statuses == [200, 200, 429]
    for name in ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert name in headers
    assert headers["X-RateLimit-Limit"] == "60" and headers["X-RateLimit-Remaining"] == "0"
    assert body["error"]["code"] == "rate_limited" and body["error"]["retryAfterMs"] > 0
    assert body["error"]["retryable"] is True
    await asyncio.sleep(0)  # metrics and routes keep answering
    status, _ = await h.get("/api/metrics")
    assert status == 200
