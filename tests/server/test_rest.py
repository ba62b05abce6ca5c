"""REST routes of §1 with their JSON shapes and §8 errors."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from graphwire.server import graph_service
from graphwire.server.keys import RUNNER
from graphwire.server.metrics import METRICS as METRIC_SPECS
from graphwire.simulation import PhysicsParams

from .conftest import THROUGH_GATEWAY, Harness, ServerFactory


async def test_graph_state_and_data_shapes(harness: Harness) -> None:
    status, st = await harness.get("/api/graph/state")
    assert status == 200
    assert set(st) == {"epoch", "seq", "topologyVersion", "nodesCount", "edgesCount", "settled",
                       "kineticEnergy", "settingsRevision"}
    assert st["nodesCount"] == 200 and st["edgesCount"] > 200
    status, st = await harness.get("/api/graph/state?positions=1")
    assert len(st["positions"]) == 200 and set(st["positions"][0]) == {"id", "x", "y", "z"}
    status, data = await harness.get("/api/graph/data")
    assert data["nodes"][0]["key"] == "n000" and data["nodes"][0]["type"] == "knowledge"
    assert set(data["edges"][0]) == {"source", "target", "weight", "type"}


async def test_topology_routes(harness: Harness) -> None:
    status, body = await harness.send("POST", "/api/graph/nodes", {
        "nodes": [{"key": "a1", "type": "agent", "x": 1, "y": 2, "z": 3, "metadata": {"k": 1}},
                  {"key": "a2"}],
        "edges": [{"source": "a1", "target": 0}, {"source": "a1", "target": "a2", "weight": 3}]})
    assert status == 200 and body == {"nodes": [{"id": 200, "key": "a1"},
                                                {"id": 201, "key": "a2"}]}
    _, st = await harness.get("/api/graph/state")
    assert st["nodesCount"] == 202 and st["topologyVersion"] == 1
    status, body = await harness.send("POST", "/api/graph/edges",
                                      {"edges": [{"source": 201, "target": 5, "weight": 0.5}]})
    assert status == 200 and body == {"edges": [{"source": 5, "target": 201, "weight": 0.5,
                                                 "type": None}]}
    status, body = await harness.send("DELETE", "/api/graph/edges",
                                      {"edges": [{"source": 5, "target": 201}]})
    assert status == 200 and body == {"removed": [[5, 201]]}
    # a DELETE without a body needs no Content-Type, but one that says it is not JSON is
    # refused like any other write, and the node stays
    async with harness.http.delete(harness.base + "/api/graph/nodes/200",
                                   headers={"Content-Type": "text/plain"}) as resp:
        err = await resp.json()
        assert resp.status == 415 and err["error"]["code"] == "unsupported_media_type"
    async with harness.http.delete(harness.base + "/api/graph/nodes/200") as resp:
        assert resp.status == 200 and await resp.json() == {"removed": 200}
    async with harness.http.delete(harness.base + "/api/graph/nodes/200") as resp:
        err = await resp.json()
        assert resp.status == 404 and err["error"]["code"] == "unknown_node"
    status, body = await harness.send("POST", "/api/graph/nodes", {"nodes": [{"key": "a3"}]})
    assert body["nodes"][0]["id"] == 202  # 200 is never reused
    status, err = await harness.send("POST", "/api/graph/nodes", {"nodes": [{"key": "a3"}]})
    assert status == 422 and "exists" in err["error"]["message"]


async def test_positions_route_answers_like_kind_0x20(harness: Harness) -> None:
    status, body = await harness.send("POST", "/api/graph/positions", {
        "positions": [{"id": 3, "x": 1.5, "y": 2.5, "z": -3.5}, {"id": 4000, "x": 0, "y": 0,
                                                                  "z": 0},
                      {"id": 5, "x": PhysicsParams().bounds_size + 100, "y": 0, "z": 0}],
        "pin": True})
    assert status == 200 and body == {"accepted": 1, "rejected": [
        {"id": 4000, "reason": "unknown_node"}, {"id": 5, "reason": "out_of_bounds"}]}


async def test_http_errors_are_json_with_fitting_statuses(harness: Harness) -> None:
    async with harness.http.post(harness.base + "/api/graph/nodes", data="{nope",
                                 headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        err = (await resp.json())["error"]
        assert err["code"] == "malformed_frame" and err["category"] == "protocol"
        assert err["retryable"] is False
    async with harness.http.post(harness.base + "/api/graph/nodes", data="key=a",
                                 headers={"Content-Type": "text/plain"}) as resp:
        assert resp.status == 415
    # a write without a body, so without a Content-Type, is not JSON either (§1)
    for path in ("/api/graph/sssp", "/api/graph/reload"):
        async with harness.http.post(harness.base + path) as resp:
            assert resp.status == 415, path
            assert (await resp.json())["error"]["code"] == "unsupported_media_type"
    async with harness.http.get(harness.base + "/api/nothing-here") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    big = {"nodes": [{"key": "x" * 1000}] * 20_000}
    async with harness.http.post(harness.base + "/api/graph/nodes", json=big) as resp:
        assert resp.status == 413 and (await resp.json())["error"]["code"] == "too_large"
    status, err = await harness.send("POST", "/api/graph/sssp", {"source": 12345})
    assert status == 404 and err["error"]["code"] == "unknown_node"
    status, err = await harness.send("POST", "/api/graph/positions", {"positions": [{"id": 1}]})
    assert status == 400


async def test_metrics_json_and_prometheus_read_the_same_counters(harness: Harness) -> None:
    c, _ = await harness.subscribe("q")
    await c.next_frame(0x03)
    await c.send(b"\x99junk")  # an error reply
    await c.next_json("error")
    await c.send_json({"type": "unsubscribe"})
    await c.send_json({"type": "ping", "timestamp": 1})
    await c.next_json("pong")  # written after everything queued before: now nothing is sent
    status, m = await harness.get("/api/metrics")
    assert status == 200
    # §10, and connections opened, slow-client closes and error replies
    for key in ("messagesSent", "messagesReceived", "bytesSent", "bytesReceived",
                "compressionRatio", "deltaMessages", "fullSyncMessages", "connections",
                "connectionsTotal", "formats", "framesSkippedSlow", "keyframesInsteadOfDelta",
                "slowClientCloses", "rateLimitWarnings", "bans", "errorsSent"):
        assert key in m
    assert m["connections"] == 1 and m["connectionsTotal"] == 1 and m["errorsSent"] == 1
    assert m["formats"]["q"]["frames"] >= 1 and m["formats"]["q"]["bytesPerNode"] > 0
    assert m["messagesSent"] >= 3 and m["stream"]["epoch"] >= 1
    async with harness.http.get(harness.base + "/metrics") as resp:
        text = await resp.text()
        assert resp.status == 200 and resp.content_type == "text/plain"
    samples = {(s.name, s.labels.get("format")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    for spec in METRIC_SPECS:
        if spec.json == "uptimeSeconds":
            continue
        name = "graphwire_" + spec.prom
        if spec.per_format:
            for fmt in ("v1", "v2", "q"):
                want = m["formats"][fmt][spec.json]
                if want is None:
                    assert (name, fmt) not in samples
                else:
                    assert samples[name, fmt] == pytest.approx(want, rel=1e-3), (name, fmt)
        else:
            assert samples[name, None] == pytest.approx(m[spec.json], rel=1e-3), name
    assert "# TYPE graphwire_connections gauge" in text
    status, health = await harness.get("/healthz")
    assert status == 200 and health["status"] == "ok"
    if THROUGH_GATEWAY:  # a gateway adds its role and its link's state (docs/protocol.md §3.2)
        assert health["role"] == "gateway" and health["redis"]["up"] is True
    else:
        assert health == {"status": "ok"}


async def test_the_same_server_serves_its_own_origin(harness: Harness) -> None:
    own = f"http://127.0.0.1:{harness.server.port}"
    status, _ = await harness.send("POST", "/api/graph/sssp", {"source": 1},
                                   headers={"Origin": own})
    assert status == 200
    client = await harness.connect(headers={"Origin": own})
    assert client.established["type"] == "connection_established"
    async with aiohttp.ClientSession() as s, s.get(
            harness.base + "/api/graph/state", headers={"Host": f"localhost:{harness.server.port}"}
    ) as resp:
        assert resp.status == 200


GENEROUS = {"system.rateLimits.control.perMinute": 1_000_000,
            "system.rateLimits.control.burst": 100_000}


async def test_graph_data_and_state_hold_one_topology_while_it_changes(
        make_server: ServerFactory) -> None:
    h = await make_server(overrides=GENEROUS)
    _, start = await h.get("/api/graph/state")
    nodes, edges = start["nodesCount"], start["edgesCount"]
    done = asyncio.Event()

    async def churn() -> None:
        """A node added beside node 0 and removed again, over and over."""
        i = 0
        while not done.is_set():
            i += 1
            status, body = await h.send("POST", "/api/graph/nodes", {
                "nodes": [{"key": f"w{i}"}], "edges": [{"source": f"w{i}", "target": 0}]})
            assert status == 200, body
            async with h.http.delete(f"{h.base}/api/graph/nodes/{body['nodes'][0]['id']}") as r:
                assert r.status == 200

    writer = asyncio.create_task(churn())
    try:
        versions = set()
        for _ in range(150):
            _, data = await h.get("/api/graph/data")
            ids = {n["id"] for n in data["nodes"]}
            dangling = [e for e in data["edges"] if not {e["source"], e["target"]} <= ids]
            assert dangling == [], f"topology {data['topologyVersion']}: {dangling}"
            _, state = await h.get("/api/graph/state")
            # the visitor with its edge, or neither: never one without the other
            assert (state["nodesCount"], state["edgesCount"]) in (
                (nodes, edges), (nodes + 1, edges + 1)), state
            versions.add(data["topologyVersion"])
        assert len(versions) >= 3  # the topology did change under the reads
    finally:
        done.set()
        await writer


async def test_a_read_without_snapshots_fails_and_does_not_hold_up_changes(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_service, "SNAPSHOT_WAIT", 1.0)
    # no snapshot comes any more: the simulation thread stopped (a standby, or a crash)
    await asyncio.get_running_loop().run_in_executor(None, harness.core[RUNNER].stop)
    status, _ = await harness.send("POST", "/api/graph/nodes", {"nodes": [{"key": "late"}]})
    assert status == 200  # the newest snapshot now shows an older topology
    read = asyncio.create_task(harness.get("/api/graph/data"))
    await asyncio.sleep(0.1)  # the read holds the topology lock, waiting
    start = asyncio.get_running_loop().time()
    status, body = await harness.send("POST", "/api/graph/nodes", {"nodes": [{"key": "later"}]})
    assert status == 200, body
    assert asyncio.get_running_loop().time() - start < 5  # behind the read's 1 s, no more
    status, body = await read
    # (through a gateway: the gateway's own wait for the simulation's snapshots)
    assert status == 503 and body["error"]["code"] == "internal"
    assert "snapshot" in body["error"]["message"] and body["error"]["retryable"] is True
