"""Stream cadence: settled keyframes, faster while nodes are dragged, and the settings CLI."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys

from graphwire.protocol.client_positions import encode_client_positions
from graphwire.protocol.header import Flags, Kind
from graphwire.protocol.positions import decode_v2
from graphwire.server.keys import GRAPH_SERVICE, RUNNER
from graphwire.simulation import PhysicsParams

from .conftest import Harness, ServerFactory

QUICK_SETTLE = {
    "visualisation.graphs.logseq.physics.warmup_iterations": 0,
    "visualisation.graphs.logseq.physics.settle_steps": 5,
    "visualisation.graphs.logseq.physics.settle_energy": 50.0,
    "system.websocket.settledKeyframeIntervalMs": 300,
}


async def test_once_settled_only_a_keyframe_every_interval(make_server: ServerFactory) -> None:
    h = await make_server(overrides=QUICK_SETTLE)
    c, _ = await h.subscribe("v2")
    loop = asyncio.get_running_loop()
    frame = decode_v2(await c.next_frame(0x02, until=lambda f: f[1] & Flags.SETTLED != 0))
    times = []
    for _ in range(4):
        frame = decode_v2(await c.next_frame(0x02))
        times.append(loop.time())
        assert frame.header.settled and frame.header.keyframe  # nothing else is sent
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.2 and max(gaps) < 1.5
    _, st = await h.get("/api/graph/state")
    assert st["settled"] is True



async def test_joining_a_settled_layout_sends_the_newcomer_a_keyframe_and_others_nothing(
        make_either_server: ServerFactory) -> None:
    """Once settled the stream is only a keyframe every interval (§8), whoever joins: on a
    stream already in use, or on one nobody used before (through a gateway the simulation
    must encode it first, and must not publish a snapshot for it)."""
    h = await make_either_server(overrides={
        **QUICK_SETTLE, "system.websocket.settledKeyframeIntervalMs": 1500})
    a, _ = await h.subscribe("v2")
    await h.subscribe("q")  # both streams are in use before it settles
    await a.next_frame(Kind.POSITIONS_V2, until=lambda f: f[1] & Flags.SETTLED != 0)
    # the first periodic keyframe: from here on A is in the settled rhythm (the snapshot the
    # q subscriber asked for may come after the one that settled, as one more settled delta:
    # through a gateway its request travels over Redis)
    periodic = decode_v2(await a.next_frame(
        Kind.POSITIONS_V2, until=lambda f: f[1] & Flags.KEYFRAME != 0)).header
    assert periodic.settled
    for fmt, kind, extra in (
            ("v2", Kind.POSITIONS_V2, {}), ("q", Kind.POSITIONS_Q, {}),
            ("q", Kind.POSITIONS_Q, {"intervalMs": 1000, "velocity": True}),  # new streams
            ("v1", Kind.POSITIONS_V1, {})):
        b, _ = await h.subscribe(fmt, **extra)
        first = await b.next_frame(kind)
        assert first[1] & Flags.KEYFRAME and first[1] & Flags.SETTLED, (fmt, extra)
    after = decode_v2(await a.next_frame(Kind.POSITIONS_V2)).header
    # the next periodic keyframe, and no snapshot published for the newcomers before it
    assert after.settled and after.keyframe and after.seq == periodic.seq + 1


async def test_a_drag_wakes_a_settled_layout_and_speeds_the_stream(make_server: ServerFactory
                                                                   ) -> None:
    h = await make_server(overrides=QUICK_SETTLE)
    c, _ = await h.subscribe("v2", intervalMs=17)  # every snapshot
    await c.next_frame(0x02, until=lambda f: f[1] & Flags.SETTLED != 0)
    status, _ = await h.send("PATCH", "/api/settings", {  # settle normally from now on
        "visualisation.graphs.logseq.physics.settle_energy": 0.005,
        "visualisation.graphs.logseq.physics.settle_steps": 60})
    assert status == 200
    epoch = c.established["epoch"]
    loop = asyncio.get_running_loop()
    start = loop.time()
    frames = 0
    batch = 0
    seqs = []
    while loop.time() - start < 1.5:
        batch += 1
        await c.send(encode_client_positions([3], [[batch * 0.5, 0, 0]], batch=batch,
                                             epoch=epoch))
        seqs.append(decode_v2(await c.next_frame(0x02)).header.seq)
        frames += 1
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert frames / 1.5 > 12  # above the 5 Hz calm rate while a user drags
    assert h.core[RUNNER].rate > 10


async def test_agent_physics_settings_reach_the_simulation(harness: Harness) -> None:
    status, _ = await harness.send("PATCH", "/api/settings", {
        "visualisation.graphs.visionflow.physics.damping": 0.5,
        "visualisation.graphs.visionflow.physics.rest_length": 90})
    assert status == 200
    sim = harness.core[GRAPH_SERVICE].sim
    for _ in range(300):
        if sim.agent_params.rest_length == 90.0:
            break
        await asyncio.sleep(0.01)
    assert sim.agent_params.damping == 0.5 and sim.agent_params.rest_length == 90.0
    default = PhysicsParams()
    assert sim.params.damping == default.damping and sim.params.rest_length == default.rest_length


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "graphwire.cli", "settings", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_settings_cli_against_a_running_server(make_server: ServerFactory) -> None:
    h = await make_server(token="tok")
    path = "visualisation.graphs.logseq.physics.damping"
    rc, out, err = await cli("get", path, "--url", h.base, "--token", "tok")
    was = PhysicsParams().damping
    assert rc == 0 and json.loads(out) == was, err
    rc, out, err = await cli("set", path, "0.8", "--url", h.base, "--token", "tok")
    assert rc == 0 and out.strip() == f"{path} = 0.8 (was {was}, revision 1)", err
    rc, out, err = await cli("set", path, "7", "--url", h.base, "--token", "tok")
    assert rc == 2 and "invalid_value" in err and "at most 1" in err
    rc, out, err = await cli("get", path, "--url", h.base)
    assert rc == 2 and "unauthorized" in err
    rc, out, err = await cli("get", "no.such.path", "--url", h.base, "--token", "tok")
    assert rc == 2 and "unknown_path" in err
    rc, out, err = await cli("get", path, "--url", "http://127.0.0.1:9")
    assert rc == 2 and "cannot reach" in err
    # host:port without a scheme, as graphwire watch takes it
    rc, out, err = await cli("get", path, "--url", h.base.removeprefix("http://"),
                             "--token", "tok")
    assert rc == 0 and json.loads(out) == 0.8, err
    rc, out, err = await cli("get", path, "--url", "ftp://somewhere")
    assert rc == 2 and "not a server address" in err and "Traceback" not in err


KEEP_MOVING = {
    "visualisation.graphs.logseq.physics.cooling_rate": 0.0,
    "visualisation.graphs.logseq.physics.settle_energy": 0.0,
    "system.websocket.minUpdateRate": 5.0,
    "system.websocket.maxUpdateRate": 5.0,
    "system.rateLimits.control.perMinute": 100_000,  # 41 connections at once from one address
    "system.rateLimits.control.burst": 1000,
}


async def test_a_burst_of_subscribers_does_not_stall_the_stream(make_server: ServerFactory
                                                                ) -> None:
    # each subscriber asks for a snapshot at once; the steps those requests take must not push
    # the physics schedule on (40 requests at 5 steps a second stalled it for about 8 s)
    h = await make_server(overrides=KEEP_MOVING, physics_hz=5.0)
    watcher, _ = await h.subscribe("q")
    await watcher.next_frame(0x03)
    for _ in range(40):  # one after the other: requests that come together share one step
        c, _ = await h.subscribe("q")
        await c.next_frame(0x03)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):  # the stream goes on at 5 Hz: five frames in about a second
        await watcher.next_frame(0x03, timeout=3.0)
    assert loop.time() - start < 2.5
