"""The binary settings protocol through a real WebSocket (docs/protocol.md §5), and REST."""

from __future__ import annotations

import asyncio
import gzip

import blake3
import pytest

from graphwire.protocol import settings_codec as sc
from graphwire.protocol.settings_codec import Tag, Value
from graphwire.server.keys import GRAPH_SERVICE, METRICS, RUNNER, SETTINGS
from graphwire.simulation import PhysicsParams

from .conftest import Client, Harness, ServerFactory

DAMPING, SPRING, ITERATIONS, ENABLED = 1, 2, 8, 9
DEFAULT = PhysicsParams()
F = lambda x: Value(Tag.F64, x)  # noqa: E731


async def request(c: Client, msg: sc.SettingsMessage) -> sc.SettingsMessage:
    await c.send(sc.encode_settings(msg))
    return await c.settings_reply(msg.req)  # type: ignore[union-attr]


async def no_delta_before(c: Client, req: int) -> None:
    """Pass a Ping through: nothing (no Delta) may arrive before its Pong."""
    await c.send(sc.encode_settings(sc.Ping(req)))
    while True:
        msg = sc.decode_settings(await c.next_frame(0x10))
        assert not isinstance(msg, sc.Delta), msg
        if isinstance(msg, sc.Pong) and msg.timestamp_ms == req:
            return


async def test_get_set_batch_and_types(harness: Harness) -> None:
    c = await harness.connect()
    r = await request(c, sc.Get(7, DAMPING))
    assert r == sc.Response(7, 0, ((DAMPING, F(DEFAULT.damping)),))
    r = await request(c, sc.Set(8, SPRING, Value(Tag.I32, 2)))  # I32 accepted for a float
    assert r == sc.Response(8, 1, ((SPRING, F(2.0)),))
    r = await request(c, sc.Set(9, ITERATIONS, Value(Tag.I32, 200)))  # I32 for an I64
    assert r == sc.Response(9, 2, ((ITERATIONS, Value(Tag.I64, 200)),))
    r = await request(c, sc.BatchGet(10, (DAMPING, SPRING, ENABLED)))
    assert r == sc.Response(10, 2, ((DAMPING, F(DEFAULT.damping)), (SPRING, F(2.0)),
                                    (ENABLED, Value(Tag.BOOL, True))))
    r = await request(c, sc.BatchSet(11, ((DAMPING, F(0.9)), (ENABLED, Value(Tag.BOOL, False)))))
    assert isinstance(r, sc.Response) and r.revision == 3 and len(r.entries) == 2
    _, rest = await harness.get("/api/settings/visualisation.graphs.logseq.physics.damping")
    assert rest == {"path": "visualisation.graphs.logseq.physics.damping", "value": 0.9,
                    "revision": 3}


@pytest.mark.parametrize(("msg", "code"), [
    (sc.Get(1, 99_999), 1),
    (sc.Set(2, DAMPING, Value(Tag.STRING, "high")), 2),
    (sc.Set(3, ENABLED, Value(Tag.I32, 1)), 2),
    (sc.Set(4, DAMPING, F(1.5)), 3),
    (sc.Set(5, ITERATIONS, Value(Tag.I64, 0)), 3),
    (sc.Set(6, DAMPING, F(float("nan"))), 3),
])
async def test_error_codes(harness: Harness, msg: sc.SettingsMessage, code: int) -> None:
    c = await harness.connect()
    r = await request(c, msg)
    assert isinstance(r, sc.Error) and r.code == code and r.message
    assert harness.server[SETTINGS].revision == 0


async def test_malformed_and_internal_errors(harness: Harness) -> None:
    c = await harness.connect()
    await c.send(bytes([0x10, 0x00, 0x02]) + (12).to_bytes(4, "little") + b"\x01\x00")
    err = sc.decode_settings(await c.next_frame(0x10))
    assert isinstance(err, sc.Error) and err.code == 4 and err.req == 12
    await c.send(bytes([0x10, 0x55, 0x01]))
    err = sc.decode_settings(await c.next_frame(0x10))
    assert isinstance(err, sc.Error) and err.code == 4
    # a database that refuses writes: the request still gets its one reply, Error 7
    harness.server[SETTINGS].store._db.execute("PRAGMA query_only = ON")
    r = await request(c, sc.Set(13, DAMPING, F(0.5)))
    assert isinstance(r, sc.Error) and r.code == 7
    harness.server[SETTINGS].store._db.execute("PRAGMA query_only = OFF")
    assert (await request(c, sc.Get(14, DAMPING))) == sc.Response(
        14, 0, ((DAMPING, F(DEFAULT.damping)),))


async def test_delta_reaches_the_others_not_the_writer(harness: Harness) -> None:
    writer, other = await harness.connect(), await harness.connect()
    r = await request(writer, sc.Set(1, DAMPING, F(0.85)))
    assert isinstance(r, sc.Response) and r.revision == 1
    delta = sc.decode_settings(await other.next_frame(0x10))
    assert delta == sc.Delta(1, ((DAMPING, F(0.85)),))
    await no_delta_before(writer, 77)
    # REST writes reach every WebSocket client, the writer's own connections included
    status, body = await harness.send(
        "PUT", "/api/settings/visualisation.graphs.logseq.physics.spring_k", {"value": 3})
    assert status == 200 and body == {"path": "visualisation.graphs.logseq.physics.spring_k",
                                      "value": 3.0, "previousValue": DEFAULT.spring_k,
                                      "revision": 2}
    for c in (writer, other):
        delta = sc.decode_settings(await c.next_frame(0x10))
        assert delta == sc.Delta(2, ((SPRING, F(3.0)),))


async def test_dedup_and_all_or_nothing(harness: Harness) -> None:
    writer, other = await harness.connect(), await harness.connect()
    r1 = await request(writer, sc.Set(1, DAMPING, F(0.8)))
    assert isinstance(r1, sc.Response) and r1.revision == 1
    await other.next_frame(0x10)
    r2 = await request(writer, sc.Set(2, DAMPING, F(0.5)))
    assert isinstance(r2, sc.Response) and r2.revision == 2
    # the same value again, even sent as F32 or I32: converted first, then equal, so nothing
    # commits and the Response carries the unchanged revision
    for req, value in ((3, F(0.5)), (6, Value(Tag.F32, 0.5))):
        assert (await request(writer, sc.Set(req, DAMPING, value))) == sc.Response(req, 2, ())
    r7 = await request(writer, sc.Set(7, SPRING, Value(Tag.I32, 0)))
    assert isinstance(r7, sc.Response) and r7.revision == 3
    assert (await request(writer, sc.Set(8, SPRING, F(0.0)))) == sc.Response(8, 3, ())
    r4 = await request(writer, sc.BatchSet(4, ((SPRING, F(0.3)), (DAMPING, F(2.0)))))
    assert isinstance(r4, sc.Error) and r4.code == 3
    assert (await request(writer, sc.Get(5, SPRING))) == sc.Response(5, 3, ((SPRING, F(0.0)),))
    deltas = []
    await other.send(sc.encode_settings(sc.Ping(9)))
    while True:
        msg = sc.decode_settings(await other.next_frame(0x10))
        if isinstance(msg, sc.Pong):
            break
        deltas.append(msg)
    assert [d.revision for d in deltas] == [2, 3]  # one Delta per committed change


async def test_sync_both_ways_and_snapshots(make_server: ServerFactory) -> None:
    h = await make_server(settings_log=5)
    c = await h.connect()
    for i in range(8):
        await request(c, sc.Set(i + 1, SPRING, F(0.1 + i / 100)))
    await request(c, sc.Set(20, DAMPING, F(0.5)))
    rev = h.server[SETTINGS].revision
    assert rev == 9
    r = await request(c, sc.Sync(30, rev - 2))  # within the log: just the changed paths
    assert r == sc.Response(30, rev, ((DAMPING, F(0.5)), (SPRING, F(0.17))))
    r = await request(c, sc.Sync(31, rev))
    assert r == sc.Response(31, rev, ())
    for since in (0, 1, rev + 1):  # 0, older than the log, newer than the revision
        s = await request(c, sc.Sync(32, since))
        assert isinstance(s, sc.Snapshot) and s.revision == rev
        assert len(s.entries) == len(h.server[SETTINGS].by_id)
        h_ = blake3.blake3()
        for pid, value in s.entries:
            h_.update(pid.to_bytes(4, "little") + value.encode())
        assert s.digest == h_.digest()
    fresh = await h.connect()
    assert fresh.established["settings"]["digest"] == s.digest.hex()
    assert fresh.established["settings"]["revision"] == rev


async def test_snapshots_over_256_bytes_are_gzip(harness: Harness) -> None:
    c = await harness.connect()
    await c.send(sc.encode_settings(sc.Sync(1, 0)))
    raw = await c.next_frame(0x10)
    assert raw[1] == 0xFF and len(gzip.decompress(raw[2:])) > 256
    assert harness.server[METRICS].as_json()["compressionRatio"] > 2


async def test_rest_settings_routes(harness: Harness) -> None:
    status, doc = await harness.get("/api/settings")
    assert status == 200 and set(doc) == {"revision", "schemaVersion", "digest", "settings"}
    physics = doc["settings"]["visualisation"]["graphs"]["logseq"]["physics"]
    assert physics["damping"] == DEFAULT.damping
    assert doc["settings"]["system"]["websocket"]["minUpdateRate"] == 5.0
    status, body = await harness.send("PATCH", "/api/settings", {
        "visualisation.rendering.nodes.size": 7, "visualisation.rendering.edges.opacity": 0.35})
    assert status == 200 and body == {"revision": 1,
                                      "changed": ["visualisation.rendering.nodes.size"]}
    for payload, want in [({"nope.path": 1}, 404), ({"visualisation.rendering.nodes.size": -1},
                                                    422),
                          ({"visualisation.rendering.nodes.labels": "yes"}, 422)]:
        status, err = await harness.send("PATCH", "/api/settings", payload)
        assert status == want, err
    status, _ = await harness.get("/api/settings/not.a.path")
    assert status == 404
    assert harness.server[SETTINGS].revision == 1


async def test_concurrent_puts_each_name_the_value_they_replaced(harness: Harness) -> None:
    """PUTs of one path at once: ordered by revision, each reply's previousValue is the value
    of the reply before it (a gateway forwards writes, so reading its mirror before forwarding
    would name the same old value twice)."""
    path = "visualisation.graphs.logseq.physics.spring_k"
    values = [1.5 + k / 4 for k in range(8)]
    replies = await asyncio.gather(*(harness.send("PUT", f"/api/settings/{path}", {"value": v})
                                     for v in values))
    assert all(status == 200 for status, _ in replies), replies
    bodies = sorted((body for _, body in replies), key=lambda b: b["revision"])
    assert [b["revision"] for b in bodies] == list(range(1, 9))
    assert sorted(b["value"] for b in bodies) == values
    chain = [DEFAULT.spring_k] + [b["value"] for b in bodies]
    assert [b["previousValue"] for b in bodies] == chain[:-1]
    status, now = await harness.get(f"/api/settings/{path}")
    assert status == 200 and now["value"] == chain[-1] and now["revision"] == 8
    # a PUT of the value it already has: no revision, and its value named as both
    status, same = await harness.send("PUT", f"/api/settings/{path}", {"value": chain[-1]})
    assert status == 200 and same == {"path": path, "value": chain[-1],
                                      "previousValue": chain[-1], "revision": 8}


async def test_physics_settings_change_the_running_simulation(harness: Harness) -> None:
    sim = harness.core[GRAPH_SERVICE].sim
    status, _ = await harness.send("PUT", "/api/settings/visualisation.graphs.logseq.physics"
                                   ".rest_length", {"value": 60})
    assert status == 200
    for _ in range(200):  # applied by the command thread; wait for it
        if sim.params.rest_length == 60.0:
            break
        await asyncio.sleep(0.01)
    assert sim.params.rest_length == 60.0 and not sim.settled


async def test_system_settings_take_effect_without_a_restart(harness: Harness) -> None:
    c = await harness.connect()
    status, _ = await harness.send("PATCH", "/api/settings", {
        "system.rateLimits.control.burst": 2, "system.rateLimits.control.perMinute": 6,
        "system.websocket.minUpdateRate": 2})
    assert status == 200
    assert harness.core[RUNNER].cadence.min_rate == 2.0
    for i in range(3):
        await c.send_json({"type": "ping", "timestamp": i})
    kinds = [(await c.next_json())["type"] for _ in range(3)]
    assert kinds == ["pong", "pong", "rate_limit_warning"]


async def test_eight_writers_at_once_lose_nothing(harness: Harness) -> None:
    status, _ = await harness.send("PATCH", "/api/settings", {
        "system.rateLimits.settings.perMinute": 10_000_000,
        "system.rateLimits.settings.burst": 10_000_000})
    assert status == 200
    prefix = "visualisation.graphs.visionflow.physics."
    names = ["repel_k", "rest_length", "max_force", "max_velocity", "bounds_size", "boundary_k",
             "gravity", "repulsion_cutoff"]
    pids = [harness.server[SETTINGS].path_id(prefix + n) for n in names]
    clients = [await harness.connect(max_queue=None) for _ in names]

    async def write(c: Client, pid: int, k: int) -> list[int]:
        for j in range(250):
            await c.send(sc.encode_settings(sc.Set(j + 1, pid, F(1.0 + j + k / 10))))
        revisions = []
        for j in range(250):
            r = await c.settings_reply(j + 1, timeout=60)
            assert isinstance(r, sc.Response), r
            revisions.append(r.revision)
        return revisions

    results = await asyncio.gather(*(write(c, pid, k) for k, (c, pid)
                                      in enumerate(zip(clients, pids, strict=True))))
    every = sorted(r for rs in results for r in rs)
    assert len(set(every)) == 2000  # each write its own revision, none lost
    for k, pid in enumerate(pids):
        assert harness.server[SETTINGS].values[pid] == F(1.0 + 249 + k / 10)
        assert results[k] == sorted(results[k])
