"""The position stream over a real WebSocket: every format, keyframes, init flow, skips."""

from __future__ import annotations

import json

import numpy as np

from graphwire.protocol.header import Flags, unpack_header
from graphwire.protocol.positions import decode_v1, decode_v2
from graphwire.protocol.q_decoder import QDecoder
from graphwire.protocol.quantized import decode_q
from graphwire.server.keys import HUB, METRICS

from .conftest import Harness, ServerFactory


async def test_connection_established_has_every_field(harness: Harness) -> None:
    c = await harness.connect()
    e = c.established
    assert e["type"] == "connection_established" and isinstance(e["clientId"], str)
    assert e["epoch"] >= 1 and e["seq"] >= 0 and e["topologyVersion"] == 0
    assert e["isReconnection"] is False
    assert e["protocol"] == {"version": 1, "formats": ["v1", "v2", "q"], "compression": ["gzip"]}
    assert set(e["settings"]) == {"revision", "schemaVersion", "digest"}
    assert len(e["settings"]["digest"]) == 64
    assert e["heartbeat"] == {"intervalMs": 30000, "timeoutMs": 45000}
    assert e["rateLimits"] == {"positions": {"perMinute": 300, "burst": 50},
                               "settings": {"perMinute": 600, "burst": 60},
                               "control": {"perMinute": 120, "burst": 20}}


async def test_subscribe_paces_at_200_ms_by_default_and_clamps_intervals(
        harness: Harness) -> None:
    c = await harness.connect()
    granted = []
    for asked in (None, 3, 33.4, 99_999, -5, 1e300):
        msg = {"type": "subscribe", "format": "q", "id": str(asked)}
        if asked is not None:
            msg["intervalMs"] = asked
        await c.send_json(msg)
        conf = await c.next_json("subscription_confirmed")
        assert conf["id"] == str(asked)
        granted.append(conf["intervalMs"])
    # §10: 5 Hz (200 ms) without intervalMs; [1000/maxUpdateRate, 10000] otherwise, rounded
    assert granted == [200, 17, 33, 10_000, 17, 10_000]
    await c.send_json({"type": "subscribe", "format": "q", "intervalMs": "fast", "id": "s"})
    err = await c.next_json("error")
    assert err["id"] == "s" and err["error"]["code"] == "malformed_frame"


async def test_paces_that_round_to_one_millisecond_share_one_lineage(harness: Harness) -> None:
    subs = [await harness.subscribe("q", intervalMs=asked) for asked in (100.3, 100.4, 120)]
    assert [conf["intervalMs"] for _, conf in subs] == [100, 100, 120]
    hub = harness.server[HUB]
    lanes = [hub.subs[c.client_id].lane for c, _ in subs]
    assert lanes[0] is lanes[1] and lanes[2] is not lanes[0]


async def test_v2_keyframe_then_deltas_rebuild_the_exact_layout(harness: Harness) -> None:
    c, conf = await harness.subscribe("v2", id="s1", intervalMs=17)
    assert conf == {"type": "subscription_confirmed", "format": "v2", "intervalMs": 17,
                    "velocity": False, "id": "s1"}
    key = decode_v2(await c.next_frame(0x02))
    assert key.header.keyframe and len(key.nodes) == 200
    assert sorted(key.nodes.ids.tolist()) == list(range(200))
    assert key.header.epoch16 == c.established["epoch"] & 0xFFFF
    state = {int(i): p.copy() for i, p in zip(key.nodes.ids, key.nodes.pos, strict=True)}
    seq = key.header.seq
    deltas = 0
    for _ in range(5):
        frame = decode_v2(await c.next_frame(0x02))
        assert frame.header.seq > seq
        if frame.header.seq == seq + 1:  # in step: a delta of the next snapshot
            assert not frame.header.keyframe
            deltas += 1
        for i, p in zip(frame.nodes.ids, frame.nodes.pos, strict=True):
            state[int(i)] = p.copy()
        seq = frame.header.seq
    assert deltas >= 1
    # freeze the layout, follow the stream up to the snapshot REST shows, and compare
    await harness.send("PUT", "/api/settings/visualisation.graphs.logseq.physics.enabled",
                       {"value": False})
    _, st = await harness.get("/api/graph/state?positions=1")
    while seq < st["seq"]:
        frame = decode_v2(await c.next_frame(0x02))
        for i, p in zip(frame.nodes.ids, frame.nodes.pos, strict=True):
            state[int(i)] = p.copy()
        seq = frame.header.seq
    assert seq == st["seq"]
    exact = {p["id"]: np.array([p["x"], p["y"], p["z"]]) for p in st["positions"]}
    assert set(state) == set(exact)
    off = max(float(np.linalg.norm(state[i] - exact[i])) for i in exact)
    assert off <= 0.01 * 1.001  # never more than positionDeadband off (§4.7)


async def test_v1_and_q_with_velocity(harness: Harness) -> None:
    c1, _conf1 = await harness.subscribe("v1")
    key1 = decode_v1(await c1.next_frame(0x01))
    assert key1.header.keyframe and len(key1.nodes) == 200
    cq, confq = await harness.subscribe("q", velocity=True, intervalMs=50)
    assert confq["velocity"] is True and confq["intervalMs"] == 50
    dec = QDecoder()
    dec.apply(await cq.next_frame(0x03))
    assert dec.key_seq is not None and dec.vel is not None and dec.ids.shape == (200,)
    for _ in range(3):
        dec.apply(await cq.next_frame(0x03))
    assert dec.vel is not None and np.all(np.isfinite(dec.positions()))


async def test_q_stream_matches_the_exact_positions_of_its_snapshot(harness: Harness) -> None:
    c, _ = await harness.subscribe("q")
    dec = QDecoder()
    for _ in range(6):
        dec.apply(await c.next_frame(0x03))
    # freeze the layout so REST reads the same snapshot the stream last showed
    await harness.send("PUT", "/api/settings/visualisation.graphs.logseq.physics.enabled",
                       {"value": False})
    await c.send_json({"type": "request_keyframe"})
    dec.apply(await c.next_frame(0x03, until=lambda f: f[1] & Flags.KEYFRAME != 0))
    _, st = await harness.get("/api/graph/state?positions=1")
    while dec.seq is not None and dec.seq < st["seq"]:
        # the newest snapshot reaches the client at its pace even though the stream is idle
        dec.apply(await c.next_frame(0x03, timeout=2))
    assert st["seq"] == dec.seq
    exact = np.array([[p["x"], p["y"], p["z"]] for p in st["positions"]])
    assert dec.grid is not None
    assert np.all(np.abs(dec.positions() - exact) <= dec.grid.step / 2 * 1.000001)


async def test_init_flow_keyframe_seq_is_at_least_the_rest_seq(harness: Harness) -> None:
    c, _ = await harness.subscribe("v2")
    await c.next_frame(0x02)  # the subscription's own keyframe
    status, data = await harness.get(f"/api/graph/data?clientId={c.client_id}")
    assert status == 200 and len(data["nodes"]) == 200 and data["edges"]
    assert set(data) >= {"epoch", "seq", "topologyVersion", "settingsRevision", "nodes", "edges"}
    assert set(data["nodes"][0]) == {"id", "key", "label", "type", "x", "y", "z", "metadata"}
    frame = decode_v2(await c.next_frame(0x02, until=lambda f: f[1] & Flags.KEYFRAME != 0))
    assert frame.header.seq >= data["seq"]


async def test_a_client_that_skips_frames_only_gets_keyframes(harness: Harness) -> None:
    c, conf = await harness.subscribe("v2", intervalMs=600)
    assert conf["intervalMs"] == 600
    prev = decode_v2(await c.next_frame(0x02))
    assert prev.header.keyframe
    for _ in range(4):
        frame = decode_v2(await c.next_frame(0x02))
        # never a delta it cannot apply: a delta only right after the snapshot it follows
        # (a loaded machine may publish the next snapshot late enough for the client's pace)
        assert frame.header.keyframe or frame.header.seq == prev.header.seq + 1
        prev = frame
    metrics = harness.server[METRICS].as_json()
    assert metrics["keyframesInsteadOfDelta"] >= 1


async def test_request_keyframe_and_unsubscribe(harness: Harness) -> None:
    c, _ = await harness.subscribe("v2")
    await c.next_frame(0x02)
    await c.send_json({"type": "request_keyframe", "id": 9})
    key = await c.next_frame(0x02, until=lambda f: f[1] & Flags.KEYFRAME != 0)
    assert decode_v2(key).header.keyframe
    await c.send_json({"type": "unsubscribe"})
    await c.send_json({"type": "ping", "timestamp": 1, "id": "after"})
    pong = await c.next_json("pong")
    assert pong == {"type": "pong", "timestamp": 1, "id": "after"}
    sent = harness.server[METRICS].frames["v2"]
    await c.send_json({"type": "ping", "timestamp": 2})
    await c.next_json("pong")
    await c.send_json({"type": "request_keyframe", "id": "k"})
    err = await c.next_json("error")
    assert err["id"] == "k"
    assert harness.server[METRICS].frames["v2"] - sent <= 1  # at most one already on its way


async def test_v1_refused_on_a_graph_with_large_ids(make_server: ServerFactory, tmp_path) -> None:
    src = tmp_path / "big.csv"
    src.write_text("a,b\n" + "".join(f"x{i:05d},x{i + 1:05d}\n" for i in range(16_400)))
    h = await make_server(source=str(src))
    c = await h.connect()
    await c.send_json({"type": "subscribe", "format": "v1", "id": 3})
    err = await c.next_json("error")
    assert err["id"] == 3 and err["error"]["code"] == "format_unsupported"
    assert err["error"]["category"] == "protocol"


async def test_v1_stream_stops_when_a_large_id_appears(harness: Harness) -> None:
    c, _ = await harness.subscribe("v1")
    await c.next_frame(0x01)
    nodes = [{"key": f"extra{i}"} for i in range(16_300)]
    status, body = await harness.send("POST", "/api/graph/nodes", {"nodes": nodes})
    assert status == 200 and body["nodes"][-1]["id"] > 16383
    changed = await c.next_json("graph_changed")
    assert changed["refetch"] is True and changed["nodesCount"] == 16_500
    err = await c.next_json("error", timeout=20)
    assert err["error"]["code"] == "format_unsupported"


async def test_sssp_frames_and_v2_records(harness: Harness) -> None:
    c, _ = await harness.subscribe("v2")
    await c.next_frame(0x02)
    await c.send_json({"type": "set_sssp_source", "source": 0})
    from graphwire.protocol.sssp import decode_sssp

    frame = decode_sssp(await c.next_frame(0x05))
    assert frame.source == 0 and frame.distance[0] == 0 and frame.parent[0] == -1
    assert frame.distance.shape == (200,) and np.all(np.isfinite(frame.distance))
    assert frame.distance[1] == 1.0 and frame.parent[1] == 0
    await c.send_json({"type": "request_keyframe"})
    key = decode_v2(await c.next_frame(0x02, until=lambda f: f[1] & Flags.KEYFRAME != 0))
    by_id = dict(zip(key.nodes.ids.tolist(), key.nodes.dist.tolist(), strict=True))
    assert by_id[0] == 0.0 and by_id[1] == 1.0
    status, body = await harness.send("POST", "/api/graph/sssp", {"source": None})
    assert status == 200 and body["source"] is None
    cleared = decode_sssp(await c.next_frame(0x05))
    assert cleared.source is None and np.all(np.isinf(cleared.distance))
    assert np.all(cleared.parent == -1)
    await c.send_json({"type": "set_sssp_source", "source": 999, "id": "bad"})
    err = await c.next_json("error")
    assert err["id"] == "bad" and err["error"]["code"] == "unknown_node"


async def test_graph_changed_comes_before_frames_that_show_the_change(harness: Harness) -> None:
    c, _ = await harness.subscribe("q")
    dec = QDecoder()
    dec.apply(await c.next_frame(0x03))
    status, body = await harness.send("POST", "/api/graph/nodes", {
        "nodes": [{"key": "agent-x", "type": "agent", "label": "Agent X"}],
        "edges": [{"source": "agent-x", "target": "n005", "weight": 2}]})
    assert status == 200 and body == {"nodes": [{"id": 200, "key": "agent-x"}]}
    seen_change = False
    while True:
        msg = await c.recv()
        if isinstance(msg, str):
            doc = json.loads(msg)
            if doc["type"] == "graph_changed":
                assert doc["added"]["nodes"][0]["key"] == "agent-x"
                assert doc["added"]["edges"] == [{"source": 5, "target": 200, "weight": 2.0,
                                                  "type": None}]
                assert doc["removed"] == {"nodes": [], "edges": []}
                assert doc["nodesCount"] == 201 and doc["topologyVersion"] == 1
                seen_change = True
        elif msg[0] == 0x03:
            frame = decode_q(msg)
            dec.apply(msg)
            if 200 in dec.ids.tolist():
                assert seen_change  # the announcement came first
                assert frame.header.keyframe and unpack_header(msg).keyframe
                break
