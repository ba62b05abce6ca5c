"""The mirror against the real server: positions equal ``/api/graph/state?positions=1`` at the
same seq (exactly for v1/v2, within half a grid step for q); SSSP, topology changes, settings."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from graphwire.client import Client, SettingsError

from .conftest import GENEROUS_OVERRIDES, Harness, ServerFactory


async def _compare_at_same_seq(client: Client, harness: Harness, fmt: str,
                               matches_wanted: int = 3) -> int:
    """Fetch the server's exact snapshot, wait for the mirror to show that seq, compare."""
    history: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def record(event: Any) -> None:
        if event.kind != 0x05:
            snap = client.mirror.snapshot()
            history[snap.seq] = (snap.ids, snap.positions)
            history.pop(snap.seq - 400, None)

    off = client.on("frame", record)
    matched = 0
    rng = np.random.default_rng(7)
    try:
        for _ in range(60):
            # keep the layout moving (a settled layout sends only keyframes): drag a node
            assert client.move("n000", *rng.uniform(-300, 300, 3)) is None
            client.positions.flush()
            await asyncio.sleep(0.1)
            status, state = await harness.get("/api/graph/state?positions=1")
            assert status == 200
            seq = state["seq"]
            async with asyncio.timeout(10):
                while client.mirror.seq < seq:
                    await client.wait_for("frame")
            if seq not in history:
                continue  # the server skipped this seq for us (we were not ready): next one
            ids, pos = history[seq]
            want = np.array([[p["x"], p["y"], p["z"]] for p in state["positions"]])
            want_ids = np.array([p["id"] for p in state["positions"]])
            assert np.array_equal(ids, want_ids)
            if fmt == "q":
                step = client.mirror.grid_step()
                assert step is not None
                err = np.abs(pos - want).max(axis=0)
                assert np.all(err <= step / 2 * (1 + 1e-9) + 1e-12), (err, step / 2)
            else:
                np.testing.assert_array_equal(pos, want)
            matched += 1
            if matched >= matches_wanted and not state["settled"]:
                break
            if matched >= matches_wanted * 2:
                break
            await asyncio.sleep(0.05)
    finally:
        off()
    return matched


@pytest.mark.parametrize("fmt", ["v1", "v2", "q"])
async def test_mirror_equals_the_servers_snapshot(make_server: ServerFactory, fmt: str) -> None:
    # deadband 0: a V1/V2 delta holds every node that moved at all, so the mirror is exact
    harness = await make_server(overrides={"system.websocket.positionDeadband": 0.0,
                                           **GENEROUS_OVERRIDES})
    # the fastest pace (clamped to 1000/maxUpdateRate): the client is sent every snapshot it
    # can take, so the seq of the server's state is usually one it saw
    async with Client(harness.base, format=fmt, interval_ms=1) as client:  # type: ignore[arg-type]
        assert len(client.mirror.nodes) == 200
        assert client.mirror.key_of(client.mirror.node_id("n000")) == "n000"
        assert await _compare_at_same_seq(client, harness, fmt) >= 3
        deltas = client.mirror.frames - client.mirror.keyframes
        assert deltas > 0, "only keyframes were compared"


async def test_q_velocities_sssp_and_topology_changes(generous_server: Harness) -> None:
    harness = generous_server
    async with Client(harness.base, format="q", velocity=True) as client:
        m = client.mirror
        async with asyncio.timeout(10):
            while not np.any(m.velocities[m.live_ids] != 0):
                await client.wait_for("frame")
        # shortest paths from n000: the SSSP frame fills the distance and parent columns
        source = m.node_id("n000")
        sssp = asyncio.ensure_future(client.wait_for("frame", lambda e: e.kind == 0x05))
        client.set_sssp_source("n000")
        async with asyncio.timeout(10):
            await sssp
        assert m.sssp_source == source
        assert m.sssp_distance[source] == 0 and m.sssp_parent[source] == -1
        assert np.all(np.isfinite(m.sssp_distance[m.live_ids]))
        # a node added over REST: graph_changed updates the tables in place, frames move it
        changed = asyncio.ensure_future(client.wait_for("graph_changed"))
        body = {"nodes": [{"key": "zz-new", "x": 1.0, "y": 2.0, "z": 3.0}],
                "edges": [{"source": "zz-new", "target": "n000"}]}
        reply = await client.post_json("/api/graph/nodes", body)
        new_id = reply["nodes"][0]["id"]
        async with asyncio.timeout(10):
            event = await changed
        assert not event.refetched and event.nodes_count == 201
        assert event.added == ("zz-new",) and event.removed == ()  # by key, for a person
        assert m.node_id("zz-new") == new_id and m.live[new_id]
        assert (min(new_id, source), max(new_id, source)) in m.edges
        async with asyncio.timeout(10):
            while not np.all(np.isfinite(m.positions[m.live_ids])) or m.q.ids.shape[0] != 201:
                await client.wait_for("frame")
        removed = asyncio.ensure_future(client.wait_for("graph_changed"))
        await client.post_json(f"/api/graph/nodes/{new_id}", None, method="DELETE")
        async with asyncio.timeout(10):
            gone = await removed
        assert gone.removed == ("zz-new",) and gone.added == ()
        assert "zz-new" not in m.ids_by_key and not m.live[new_id]
        assert np.isnan(m.positions[new_id]).all()


async def test_settings_mirror_get_set_batch_subscribe(generous_server: Harness) -> None:
    harness = generous_server
    damping = "visualisation.graphs.logseq.physics.damping"
    gravity = "visualisation.graphs.logseq.physics.gravity"
    async with Client(harness.base, format=None) as a, Client(harness.base, format=None) as b:
        assert a.settings.digest_checks >= 1 and a.settings.digest_mismatches == 0
        assert a.settings.get(damping) == 1.0
        seen: list[tuple[str, Any, str]] = []
        b.settings.subscribe("visualisation.graphs.logseq.physics.",
                             lambda p, v, r, o: seen.append((p, v, o)))
        b.settings.subscribe("system.", lambda p, v, r, o: seen.append(("system!", v, o)))
        resp = await a.settings.set(damping, 0.5)  # an int or float goes out as the F64 declared
        assert resp.revision == a.settings.revision and a.settings.get(damping) == 0.5
        resp2 = await a.settings.batch_set({damping: 0.75, gravity: 1})
        assert resp2.revision == resp.revision + 1
        async with asyncio.timeout(10):
            while b.settings.revision < resp2.revision:
                await b.wait_for("settings")
        assert b.settings.get(damping) == 0.75 and b.settings.get(gravity) == 1.0
        assert (damping, 0.5, "remote") in seen and (gravity, 1.0, "remote") in seen
        assert not any(p == "system!" for p, _, _ in seen)
        _, rest = await harness.get("/api/settings/" + gravity)
        assert rest["value"] == 1.0 and rest["revision"] == resp2.revision
        with pytest.raises(SettingsError) as bad:
            await a.settings.set(damping, -5.0)
        assert bad.value.name == "invalid_value" and bad.value.path == damping
        with pytest.raises(SettingsError) as unknown:
            await a.settings.set("no.such.path", 1)
        assert unknown.value.name == "unknown_path"
        assert a.settings.get(damping) == 0.75  # nothing changed on the error
        assert await a.settings.fetch(damping) == 0.75


def test_graph_changed_updates_labels_and_weights_in_place() -> None:
    from graphwire.client.mirror import GraphMirror

    m = GraphMirror()
    node = {"id": 0, "key": "Idea", "label": "Idea", "type": "knowledge", "x": 1.0, "y": 2.0,
            "z": 3.0, "metadata": {"placeholder": True}}
    other = {**node, "id": 1, "key": "a", "label": "a", "metadata": {}}
    m.load({"epoch": 1, "seq": 5, "topologyVersion": 0, "settingsRevision": 0,
            "nodes": [node, other], "edges": [{"source": 0, "target": 1, "weight": 1.0,
                                               "type": "link"}]})
    promoted = {**node, "label": "A good idea", "metadata": {"path": "Idea.md"}}
    assert not m.graph_changed({
        "type": "graph_changed", "epoch": 1, "topologyVersion": 1, "nodesCount": 2,
        "edgesCount": 1, "added": {"nodes": [], "edges": []},
        "removed": {"nodes": [], "edges": []},
        "updated": {"nodes": [promoted],
                    "edges": [{"source": 0, "target": 1, "weight": 2.0, "type": "link"}]}})
    assert m.nodes[0]["label"] == "A good idea" and m.node_id("Idea") == 0
    assert m.edges[(0, 1)]["weight"] == 2.0 and m.topology_version == 1
    assert m.position("Idea").tolist() == [1.0, 2.0, 3.0]  # the place stays


def test_changes_that_overtook_the_graph_body_are_applied_over_it() -> None:
    from graphwire.client.mirror import GraphMirror

    def node(i: int, key: str) -> dict[str, Any]:
        return {"id": i, "key": key, "label": key, "type": "knowledge", "x": float(i),
                "y": 0.0, "z": 0.0, "metadata": {}}

    def change(version: int, added: list[dict[str, Any]], epoch: int = 1) -> dict[str, Any]:
        return {"type": "graph_changed", "epoch": epoch, "topologyVersion": version,
                "nodesCount": 0, "edgesCount": 0, "added": {"nodes": added, "edges": []},
                "removed": {"nodes": [], "edges": []}}

    body = {"epoch": 1, "seq": 5, "topologyVersion": 3, "settingsRevision": 0,
            "nodes": [node(0, "a"), node(1, "b")], "edges": []}
    # version 3 is in the body already; version 4 was made after the body was built
    during = [change(3, [node(1, "b")]), change(4, [node(2, "c")])]
    m = GraphMirror()
    assert not m.load(body, during)
    assert m.topology_version == 4 and sorted(m.ids_by_key) == ["a", "b", "c"]
    assert m.node_id("c") == 2
    # a newer epoch announced while the body was on its way: the body is out of date
    assert GraphMirror().load(body, [change(4, [node(2, "c")]), change(0, [], epoch=2)])
    # nothing arrived meanwhile: the body is the graph
    plain = GraphMirror()
    assert not plain.load(body) and sorted(plain.ids_by_key) == ["a", "b"]


def test_a_value_a_setting_cannot_hold_is_a_settings_error_before_it_is_sent() -> None:
    from graphwire.client.settings_mirror import typed
    from graphwire.protocol.settings_codec import Tag, Value

    assert typed(Tag.I64, 5) == Value(Tag.I64, 5) and typed(Tag.F64, 2) == Value(Tag.F64, 2.0)
    for tag, value in ((Tag.I64, 2**70), (Tag.I64, -(2**63) - 1)):
        with pytest.raises(SettingsError) as err:
            typed(tag, value)
        assert "64 bits" in str(err.value)


def test_frames_that_overtook_the_first_graph_body_are_kept() -> None:
    """The stream may deliver the join keyframe before ``GET /api/graph/data`` returns: a body
    of the same epoch keeps it (grid, positions, seq), so the next delta applies at once."""
    from graphwire.client.mirror import GraphMirror
    from graphwire.protocol.q_encoder import QStreamEncoder

    ids = np.arange(3, dtype=np.uint32)
    pos = np.array([[0.0, 0.0, 0.0], [10.0, 5.0, -3.0], [20.0, -8.0, 4.0]])
    body = {"epoch": 1, "seq": 2, "topologyVersion": 0, "settingsRevision": 0, "edges": [],
            "nodes": [{"id": i, "key": f"n{i}", "label": f"n{i}", "type": "knowledge",
                       "x": 99.0, "y": 99.0, "z": 99.0, "metadata": {}} for i in range(3)]}
    enc = QStreamEncoder()
    key = enc.encode(3, ids, pos, epoch=1)
    m = GraphMirror()
    assert m.apply(key.frame).keyframe
    assert not m.load(body)
    assert m.grid_step() is not None and m.seq == 3
    step = m.grid_step()
    assert step is not None and np.all(np.abs(m.positions[:3] - pos) <= step / 2 + 1e-9)
    moved = pos + 0.5
    delta = enc.encode(4, ids, moved, epoch=1, may_rebase=False)
    applied = m.apply(delta.frame)
    assert not applied.need_keyframe and m.seq == 4
    assert np.all(np.abs(m.positions[:3] - moved) <= step / 2 + 1e-9)
    # frames of an epoch the body is not: the body wins (its positions, no grid)
    other = GraphMirror()
    other.apply(QStreamEncoder().encode(3, ids, pos, epoch=2).frame)
    assert not other.load(body)
    assert other.grid_step() is None and other.seq == 2
    assert other.positions[:3].tolist() == [[99.0, 99.0, 99.0]] * 3


def test_a_late_reply_to_a_write_nobody_waits_for_still_updates_the_mirror() -> None:
    """A Set that waited in the outgoing queue while disconnected may outlive its caller's
    timeout; when the server applies it, the mirror must show it (no Delta comes to the
    writer's own connection)."""
    from graphwire.client.settings_mirror import SettingsMirror
    from graphwire.protocol import settings_codec as sc
    from graphwire.protocol.settings_codec import Tag, Value

    sent: list[bytes] = []
    m = SettingsMirror(sent.append)
    path = "visualisation.graphs.logseq.physics.repel_k"
    m.handle(sc.encode_settings(sc.PathTable((sc.PathEntry(3, Tag.F64, path),))))
    entries = ((3, Value(Tag.F64, 7.7)),)
    m.handle(sc.encode_settings(sc.Snapshot(0, 1, sc.settings_digest(entries), entries)))
    assert m.get(path) == 7.7 and m.revision == 1
    m.handle(sc.encode_settings(sc.Response(41, 2, ((3, Value(Tag.F64, 8.8)),))))
    assert m.get(path) == 8.8 and m.revision == 2
    m.handle(sc.encode_settings(sc.Response(42, 1, ((3, Value(Tag.F64, 1.0)),))))  # older
    assert m.get(path) == 8.8 and m.revision == 2
