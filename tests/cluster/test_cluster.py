"""A simulation and two gateways as separate ``graphwire serve`` processes on a real Redis, with
WebSocket clients on both gateways (issue 13's Show list)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import websockets

from graphwire.protocol import settings_codec as sc
from graphwire.protocol.client_positions import encode_client_positions
from graphwire.protocol.header import Flags, unpack_header
from graphwire.protocol.positions import decode_v2
from graphwire.protocol.q_decoder import QDecoder

from .processes import Cluster, ring_csv
from .redis_server import RedisServer

pytestmark = pytest.mark.slow
TIMEOUT = 30.0
DAMPING = "visualisation.graphs.logseq.physics.damping"


class Recorder:
    """A WebSocket client that records everything it receives (a task reads all the time)."""

    def __init__(self, ws: websockets.ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name
        self.frames: list[tuple[float, bytes]] = []
        self.json: list[dict[str, Any]] = []
        self.closed: int | None = None
        self._changed = asyncio.Condition()
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                async with self._changed:
                    if isinstance(msg, bytes):
                        self.frames.append((time.monotonic(), msg))
                    else:
                        self.json.append(json.loads(msg))
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        async with self._changed:
            self.closed = self.ws.close_code or 1006
            self._changed.notify_all()

    async def until(self, predicate: Callable[[], Any], what: str,
                    timeout: float = TIMEOUT) -> Any:
        """Wait for something this client received (checked at each message)."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    while not (result := predicate()):
                        await self._changed.wait()
            except TimeoutError:
                raise AssertionError(f"{self.name}: timed out waiting for {what}") from None
        return result

    def of(self, kind: int) -> list[bytes]:
        return [f for _, f in self.frames if f[0] == kind]

    def messages(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.json if m.get("type") == kind]

    @property
    def established(self) -> dict[str, Any]:
        return self.messages("connection_established")[0]

    async def send_json(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def close(self) -> None:
        self._task.cancel()
        await self.ws.close()


async def connect(url: str, name: str, fmt: str | None = "v2") -> Recorder:
    ws = await websockets.connect(url.replace("http", "ws") + "/ws", max_size=64 * 2**20)
    rec = Recorder(ws, name)
    await rec.until(lambda: rec.messages("connection_established"), "connection_established")
    if fmt is not None:
        await rec.send_json({"type": "subscribe", "format": fmt, "intervalMs": 17})
        await rec.until(lambda: rec.messages("subscription_confirmed"), "subscription")
    return rec


def v2_positions(frame: bytes) -> dict[int, np.ndarray]:
    f = decode_v2(frame)
    return {int(i): p for i, p in zip(f.nodes.ids.tolist(), np.asarray(f.nodes.pos),
                                      strict=True)}


@pytest.fixture
async def cluster(tmp_path: Path, redis_server: RedisServer,
                  request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, redis_server.url, ring_csv(tmp_path / "ring.csv"))
    yield c
    c.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(c.logs())


async def test_gateways_send_the_same_frames_settings_and_drags(cluster: Cluster) -> None:
    sim = cluster.simulation("sim-a")
    gw_a = cluster.gateway("gw-a")
    gw_b = cluster.gateway("gw-b")
    a = await connect(gw_a.url, "client-a")
    b = await connect(gw_b.url, "client-b")
    qa = await connect(gw_a.url, "client-qa", "q")
    qb = await connect(gw_b.url, "client-qb", "q")
    try:
        assert a.established["epoch"] == b.established["epoch"] > 0

        # identical frames and seqs on both gateways (V2 and q)
        def common(x: Recorder, y: Recorder, kind: int) -> dict[int, tuple[bytes, bytes]]:
            fx = {(unpack_header(f).seq, f[1]): f for f in x.of(kind)}
            fy = {(unpack_header(f).seq, f[1]): f for f in y.of(kind)}
            return {key[0]: (fx[key], fy[key]) for key in fx.keys() & fy.keys()}

        await a.until(lambda: len(common(a, b, 0x02)) >= 20, "20 common V2 frames")
        await qa.until(lambda: len(common(qa, qb, 0x03)) >= 20, "20 common q frames")
        for kind, (x, y) in ((0x02, (a, b)), (0x03, (qa, qb))):
            pairs = common(x, y, kind)
            assert all(fa == fb for fa, fb in pairs.values()), f"kind {kind:#x} differs"
            seqs = [unpack_header(f).seq for f in x.of(kind)]
            assert seqs == sorted(seqs)
        # gateways answer REST from their mirrors, with the simulation's numbers
        async with aiohttp.ClientSession() as http:
            docs = []
            for url in (gw_a.url, gw_b.url, sim.url):
                async with http.get(url + "/api/graph/data") as resp:
                    assert resp.status == 200
                    docs.append(await resp.json())
            assert {len(d["nodes"]) for d in docs} == {200}
            assert {len(d["edges"]) for d in docs} == {len(docs[2]["edges"])}
            assert {d["epoch"] for d in docs} == {a.established["epoch"]}
            assert docs[0]["nodes"][5]["key"] == docs[2]["nodes"][5]["key"] == "n005"

        # a drag on gateway B moves the node for clients on gateway A
        target = np.array([123.0, -45.0, 67.0], np.float32)
        await b.ws.send(encode_client_positions([5], [target], batch=1,
                                                epoch=b.established["epoch"], pin=True))
        ack = await b.until(lambda: b.messages("positions_ack"), "positions_ack")
        assert ack[0]["accepted"] == 1 and ack[0]["rejected"] == []
        await a.until(lambda: any(5 in (p := v2_positions(f)) and np.allclose(p[5], target)
                                  for f in a.of(0x02)[-5:]), "the dragged node on gateway A")

        # a settings write on gateway A reaches a client on gateway B ...
        await a.ws.send(sc.encode_settings(sc.Set(7, 1, sc.Value.of(0.61))))
        reply = await a.until(lambda: [m for f in a.of(0x10)
                                       if isinstance(m := sc.decode_settings(f), sc.Response)
                                       and m.req == 7], "the Response")
        revision = reply[0].revision
        assert revision >= 1 and reply[0].entries[0][1].data == pytest.approx(0.61)
        delta = await b.until(lambda: [m for f in b.of(0x10)
                                       if isinstance(m := sc.decode_settings(f), sc.Delta)
                                       and m.revision == revision], "the Delta on gateway B")
        assert delta[0].entries[0][0] == 1
        assert delta[0].entries[0][1].data == pytest.approx(0.61)
        assert not [m for f in a.of(0x10) if isinstance(m := sc.decode_settings(f), sc.Delta)
                    and m.revision == revision]  # the writer gets the Response, not a Delta
        # ... and survives SIGKILL of gateway A
        gw_a.kill()
        await a.until(lambda: a.closed is not None, "client A's connection to drop")
        async with aiohttp.ClientSession() as http:
            async with http.get(gw_b.url + f"/api/settings/{DAMPING}") as resp:
                body = await resp.json()
            assert body["value"] == pytest.approx(0.61) and body["revision"] == revision
            gw_c = cluster.gateway("gw-c")  # a gateway started later loads it from Redis
            async with http.get(gw_c.url + f"/api/settings/{DAMPING}") as resp:
                body = await resp.json()
            assert body["value"] == pytest.approx(0.61) and body["revision"] == revision
            # a REST write on B is acknowledged after the simulation committed it
            async with http.put(gw_b.url + f"/api/settings/{DAMPING}",
                                json={"value": 0.55}) as resp:
                assert resp.status == 200
                assert (await resp.json())["revision"] == revision + 1
            async with http.get(sim.url + f"/api/settings/{DAMPING}") as resp:
                assert (await resp.json())["value"] == pytest.approx(0.55)
        assert b.closed is None  # gateway B's client never noticed
        # client A reconnects, with resume, through gateway B: B knows it
        ws = await websockets.connect(gw_b.url.replace("http", "ws")
                                      + f"/ws?resume={a.established['clientId']}")
        again = Recorder(ws, "client-a-again")
        est = await again.until(lambda: again.messages("connection_established"), "established")
        assert est[0]["isReconnection"] is True
        assert est[0]["clientId"] == a.established["clientId"]
        await again.send_json({"type": "resume", "epoch": est[0]["epoch"], "seq": 0,
                               "settingsRevision": revision - 1})
        sync = await again.until(lambda: [m for f in again.of(0x10)
                                          if isinstance(m := sc.decode_settings(f),
                                                        sc.Response | sc.Snapshot)
                                          and m.req == 0], "the resume's settings catch-up")
        assert dict(sync[0].entries)[1].data == pytest.approx(0.55)
        await again.close()
    finally:
        for c in (a, b, qa, qb):
            await c.close()


async def health(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
        return resp.status, await resp.json()


async def until_health(url: str, want: Callable[[int, dict[str, Any]], bool], what: str,
                       timeout: float = TIMEOUT) -> dict[str, Any]:
    """Ask ``/healthz`` until it says what we wait for (the process's own report)."""
    async with asyncio.timeout(timeout):
        while True:
            status, body = await health(url)
            if want(status, body):
                return body
            await asyncio.sleep(0.05)


def epochs(rec: Recorder) -> list[int]:
    return [unpack_header(f).epoch16 for f in rec.of(0x02)]


async def test_failover_and_redis_restart(cluster: Cluster,
                                          redis_server: RedisServer) -> None:
    sim_a = cluster.simulation("sim-a")
    await asyncio.to_thread(sim_a.wait_line, "holding the lease")
    sim_b = cluster.simulation("sim-b")
    gw_a = cluster.gateway("gw-a")
    gw_b = cluster.gateway("gw-b")
    a = await connect(gw_a.url, "client-a")
    b = await connect(gw_b.url, "client-b")
    try:
        status, body = await health(sim_b.url)
        assert status == 200 and body["lease"] == "standby"
        old = a.established["epoch"]
        await a.until(lambda: len(a.of(0x02)) >= 10, "frames before the kill")
        async with (aiohttp.ClientSession() as http,
                    http.get(gw_a.url + "/api/graph/state?positions=1") as resp):
            before = {p["id"]: (p["x"], p["y"], p["z"])
                      for p in (await resp.json())["positions"]}

        # SIGKILL of the lease holder: the standby takes over within 5 s, clients stay on
        killed = time.monotonic()
        sim_a.kill()
        took = []
        for rec in (a, b):
            await rec.until(lambda r=rec: any(e != old & 0xFFFF for e in epochs(r)),
                            "a frame of the new epoch", timeout=15)
            first = next(t for t, f in rec.frames
                         if f[0] == 0x02 and unpack_header(f).epoch16 != old & 0xFFFF)
            took.append(first - killed)
            assert rec.closed is None
            changed = rec.messages("graph_changed")
            assert changed and changed[-1]["refetch"] is True and changed[-1]["epoch"] > old
        assert max(took) < 5.0, f"takeover took {took} s"
        status, body = await health(sim_b.url)
        assert body["lease"] == "held" and body["epoch"] > old
        # the standby continued from the last published layout, not from a new start
        newest = next(f for f in reversed(a.of(0x02)) if f[1] & Flags.KEYFRAME)
        after = v2_positions(newest)
        moved = [float(np.linalg.norm(np.asarray(before[i]) - after[i])) for i in before]
        extent = float(np.ptp(np.asarray(list(before.values())), axis=0).max())
        assert np.median(moved) < 0.1 * extent, (np.median(moved), extent)
        # and still serves commands: a drag through gateway A
        new_epoch = next(e for e in reversed(epochs(a)))
        await a.ws.send(encode_client_positions([7], [[10.0, 20.0, 30.0]], batch=1,
                                                epoch=new_epoch, pin=True))
        ack = await a.until(lambda: a.messages("positions_ack"), "positions_ack")
        assert ack[0]["accepted"] == 1

        # Redis restarted: gateways report it, keep their clients, and resume streaming
        redis_server.stop()
        body = await until_health(gw_a.url, lambda s, b: s == 503, "gateway A to report")
        assert body["status"] == "redis_unreachable" and body["redis"]["up"] is False
        async with aiohttp.ClientSession() as http, http.get(gw_a.url + "/metrics") as resp:
            assert "graphwire_redis_up 0" in await resp.text()
        redis_server.start()
        count_a, count_b = len(a.of(0x02)), len(b.of(0x02))
        await until_health(gw_a.url, lambda s, b: s == 200, "gateway A to recover")
        await a.until(lambda: len(a.of(0x02)) > count_a + 5, "frames after the restart")
        await b.until(lambda: len(b.of(0x02)) > count_b + 5, "frames after the restart")
        assert a.closed is None and b.closed is None
        fa = {(unpack_header(f).seq, f[1]): f for f in a.of(0x02)[-5:]}
        fb = {(unpack_header(f).seq, f[1]): f for f in b.of(0x02)}
        assert all(fb[k] == f for k, f in fa.items() if k in fb)
    finally:
        for c in (a, b):
            await c.close()


async def test_paced_q_clients_and_a_reload_through_a_gateway(cluster: Cluster) -> None:
    sim = cluster.simulation("sim-a")
    gw_a = cluster.gateway("gw-a")
    gw_b = cluster.gateway("gw-b")
    paced = []
    for url, name in ((gw_a.url, "paced-a"), (gw_b.url, "paced-b")):
        rec = await connect(url, name, None)
        await rec.send_json({"type": "subscribe", "format": "q", "intervalMs": 400})
        await rec.until(lambda r=rec: r.messages("subscription_confirmed"), "subscription")
        paced.append(rec)
    v = await connect(gw_a.url, "v2-a")
    try:
        pa, pb = paced
        old = pa.established["epoch"]
        # a 400 ms pace: the same frames on both gateways, each relative to the keyframe held
        await pa.until(lambda: len(pa.of(0x03)) >= 8, "8 paced q frames")
        await pb.until(lambda: len(pb.of(0x03)) >= 8, "8 paced q frames")
        fa = {(unpack_header(f).seq, f[1]): f for f in pa.of(0x03)}
        fb = {(unpack_header(f).seq, f[1]): f for f in pb.of(0x03)}
        common = fa.keys() & fb.keys()
        assert len(common) >= 4 and all(fa[k] == fb[k] for k in common)
        for rec in paced:
            dec = QDecoder()
            for frame in rec.of(0x03):
                dec.apply(frame)  # raises if a frame needs a keyframe the client lacks
            fulls = [f for f in rec.of(0x03) if f[1] & Flags.KEYFRAME and not f[1] & 0x10]
            assert len(fulls) <= 2, f"{rec.name}: {len(fulls)} full keyframes"
            times = [t for t, f in rec.frames if f[0] == 0x03][2:]
            gaps = np.diff(times)
            assert np.median(gaps) > 0.25, gaps  # paced, not every snapshot

        # a reload through gateway B runs on the simulation: a new epoch for everyone
        async with (aiohttp.ClientSession() as http,
                    http.post(gw_b.url + "/api/graph/reload", json={}) as resp):
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        assert body["epoch"] > old and body["nodesCount"] == 200
        await v.until(lambda: any(m["epoch"] == body["epoch"] and m["refetch"]
                                  for m in v.messages("graph_changed")), "graph_changed")
        await v.until(lambda: any(e == body["epoch"] & 0xFFFF for e in epochs(v)),
                      "a frame of the new epoch")
        # one graph_changed, as from a single process (the reload's own, not a second refetch)
        assert len([m for m in v.messages("graph_changed") if m["epoch"] == body["epoch"]]) == 1
        status, state = await health(sim.url)
        assert status == 200 and state["epoch"] == body["epoch"]
    finally:
        for c in (*paced, v):
            await c.close()
