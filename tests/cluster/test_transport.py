"""The cluster transport against a real redis-server: envelopes, the lease and its fencing,
ordered delivery, commands, the settings writer and its replicas, and Redis restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graphwire.cluster import envelope
from graphwire.cluster.commands import (
    CommandClient,
    CommandFailedError,
    CommandServer,
    CommandUnavailableError,
)
from graphwire.cluster.envelope import FrameSet, QFrames, VFrames
from graphwire.cluster.keys import Keys
from graphwire.cluster.lease import Lease, LeaseLostError
from graphwire.cluster.link import Link
from graphwire.cluster.settings_sync import SettingsReplica, SettingsWriter, load_paths
from graphwire.protocol.settings_codec import Value
from graphwire.settings import SettingsService, SettingsStore

from .redis_server import RedisServer

TIMEOUT = 10.0


def frame_set(seq: int, epoch: int = 3) -> FrameSet:
    ids = np.arange(5, dtype=np.uint32)
    fs = FrameSet(seq, epoch, 2, False, 1.5, False, 30.0, ids, ids % 2 == 0,
                  np.arange(15, dtype=np.float32).reshape(5, 3) + seq)
    fs.v["v2"] = VFrames(b"\x02key" + bytes([seq % 256]), b"\x02delta", 3)
    fs.v["v1"] = VFrames(b"\x01key", None, 0)
    full = b"\x03full"
    fs.q["q@200"] = QFrames(b"\x03frame", 7, 9, False, 2, full, tick=False)
    fs.q["q+v@200"] = QFrames(full, None, 9, True, 5, full)
    return fs


def test_frame_set_round_trip() -> None:
    fs = frame_set(41)
    env = envelope.decode(fs.encode(token=12, n=99))
    assert env.kind == envelope.Kind.FRAMES and env.token == 12 and env.header["n"] == 99
    back = FrameSet.from_envelope(env)
    assert (back.seq, back.epoch, back.topology_version, back.rate_hz) == (41, 3, 2, 30.0)
    assert np.array_equal(back.ids, fs.ids) and np.array_equal(back.pos, fs.pos)
    assert np.array_equal(back.agent, fs.agent)
    assert back.v["v2"].key == fs.v["v2"].key and back.v["v2"].delta == b"\x02delta"
    assert back.v["v2"].moved == 3 and back.v["v1"].delta is None
    q = back.q["q@200"]
    assert (q.frame, q.base_seq, q.key_seq, q.keyframe, q.moved, q.full, q.tick) == (
        b"\x03frame", 7, 9, False, 2, b"\x03full", False)
    qv = back.q["q+v@200"]
    assert qv.base_seq is None and qv.full == qv.frame and qv.tick


@pytest.mark.parametrize("bad", [b"", b"XX1\x01\x00\x00\x00\x00", b"GW1\x09\x02\x00\x00\x00{}",
                                 envelope.encode(envelope.Kind.SSSP, {"token": 1}, [b"abc"])[:-1]])
def test_bad_envelopes_are_refused(bad: bytes) -> None:
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode(bad)


async def test_lease_is_exclusive_renewed_and_fenced(redis_server: RedisServer) -> None:
    a, b = Link(redis_server.url), Link(redis_server.url)
    try:
        la = Lease(a.redis, a.keys, "sim-a", ttl=0.6)
        lb = Lease(b.redis, b.keys, "sim-b", ttl=0.6)
        assert await la.try_acquire()
        assert not await lb.try_acquire()
        first = la.token
        assert first is not None
        # renewed well inside the ttl, the lease outlives several ttls
        for _ in range(4):
            await asyncio.sleep(la.renew_interval)
            assert await la.renew()
            assert not await lb.try_acquire()
        assert await a.publish(la, b"hello") >= 0
        # a holder paused past its ttl: the other takes over with a larger token ...
        await asyncio.wait_for(lb.acquire(), TIMEOUT)
        assert lb.token is not None and lb.token > first
        # ... and the paused holder can neither publish nor renew
        with pytest.raises(LeaseLostError):
            await a.publish(la, b"stale frame")
        assert not await la.renew()
        assert await la.holder_now() == lb.value
        await lb.release()
        assert await la.holder_now() is None
    finally:
        await a.close()
        await b.close()


async def test_published_envelopes_arrive_in_order(redis_server: RedisServer) -> None:
    pub, sub = Link(redis_server.url), Link(redis_server.url)
    got: list[int] = []
    done = asyncio.Event()

    async def handler(data: bytes) -> None:
        env = envelope.decode(data)
        got.append(int(env.header["seq"]))
        if len(got) == 300:
            done.set()

    try:
        lease = Lease(pub.redis, pub.keys, "sim", ttl=5)
        assert await lease.try_acquire()
        sub.subscribe([sub.keys.stream], handler)
        await asyncio.wait_for(sub.subscribed.wait(), TIMEOUT)
        for seq in range(1, 301):
            await pub.publish(lease, frame_set(seq).encode(lease.token or 0, seq),
                              keep=pub.keys.last_frames)
        await asyncio.wait_for(done.wait(), TIMEOUT)
        assert got == list(range(1, 301))
        kept = envelope.decode(await pub.redis.get(pub.keys.last_frames))
        assert kept.header["seq"] == 300
    finally:
        await pub.close()
        await sub.close()


async def test_commands_are_answered_in_order(redis_server: RedisServer) -> None:
    gw, sim = Link(redis_server.url), Link(redis_server.url)
    seen: list[int] = []

    async def add(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body["i"])
        if body["i"] < 0:
            raise ValueError("negative")
        return {"twice": body["i"] * 2}

    def errors(exc: Exception) -> dict[str, Any] | None:
        return {"kind": "value", "message": str(exc)} if isinstance(exc, ValueError) else None

    client = CommandClient(gw, "gw-1", timeout=1.0)
    try:
        client.start()
        with pytest.raises(CommandUnavailableError):  # nobody serves commands yet
            await client.call("add", {"i": 1})
        server = CommandServer(sim, {"add": add}, errors)
        await server.start()
        results = [await client.call("add", {"i": i}) for i in range(10)]
        assert [r["twice"] for r in results] == [2 * i for i in range(10)]
        assert seen == list(range(10))  # in order; the stale one sent before is never run
        many = await asyncio.gather(*(client.call("add", {"i": i}) for i in range(10, 30)))
        assert [r["twice"] for r in many] == [2 * i for i in range(10, 30)]
        with pytest.raises(CommandFailedError) as info:
            await client.call("add", {"i": -1})
        assert info.value.error == {"kind": "value", "message": "negative"}
    finally:
        await gw.close()
        await sim.close()


def service(path: Path) -> SettingsService:
    return SettingsService(SettingsStore(path))


DAMPING = "visualisation.graphs.logseq.physics.damping"
SPRING = "visualisation.graphs.logseq.physics.spring_k"


async def test_settings_single_writer_and_replicas(redis_server: RedisServer,
                                                   tmp_path: Path) -> None:
    wl, rl = Link(redis_server.url), Link(redis_server.url)
    writer_svc = service(tmp_path / "writer.db")
    try:
        lease = Lease(wl.redis, wl.keys, "sim", ttl=5)
        assert await lease.try_acquire()
        writer = SettingsWriter(wl, lease, writer_svc)
        rev1, _ = writer_svc.apply_paths({DAMPING: 0.5})
        await writer.take_over()
        # a replica built on the writer's path ids, with its own store
        paths = await load_paths(rl)
        assert paths[DAMPING] == writer_svc.id_of[DAMPING]
        store = SettingsStore(":memory:")
        store.path_ids(list(paths), paths)
        mirror = SettingsService(store)
        deltas: list[int] = []
        mirror.subscribe(lambda change: deltas.append(change.revision))
        replica = SettingsReplica(rl, mirror)
        replica.start()
        await asyncio.wait_for(replica.reached(rev1), TIMEOUT)
        assert mirror.value(DAMPING) == 0.5 and mirror.revision == rev1
        assert mirror.digest() == writer_svc.digest()
        # later change sets arrive one by one, same revisions, same order
        revs = [writer_svc.apply_paths({SPRING: 0.1 * (i + 1)})[0] for i in range(5)]
        await asyncio.wait_for(writer.appended_future(revs[-1]), TIMEOUT)
        await asyncio.wait_for(replica.reached(revs[-1]), TIMEOUT)
        assert deltas[-5:] == revs
        assert mirror.value(SPRING) == pytest.approx(0.5)
        assert mirror.digest() == writer_svc.digest()
        # a replica that falls behind a trimmed log (here: Redis restarted empty) reloads
        redis_server.restart()
        assert await lease.try_acquire()  # the lease went with the old Redis: take it again
        await writer.take_over()  # the writer publishes its whole state again
        rev, _ = writer_svc.apply_paths({DAMPING: 0.25})
        await asyncio.wait_for(writer.appended_future(rev), TIMEOUT)
        await asyncio.wait_for(replica.reached(rev), TIMEOUT)
        assert mirror.value(DAMPING) == 0.25 and mirror.digest() == writer_svc.digest()
        # a deposed writer cannot append
        await wl.redis.delete(wl.keys.lease)
        rev, _ = writer_svc.apply_paths({DAMPING: 0.75})
        with pytest.raises(LeaseLostError):
            await asyncio.wait_for(writer.appended_future(rev), TIMEOUT)
    finally:
        await wl.close()
        await rl.close()
        writer_svc.store.close()


async def test_subscription_survives_a_redis_restart(redis_server: RedisServer) -> None:
    pub, sub = Link(redis_server.url), Link(redis_server.url)
    got: list[bytes] = []
    arrived = asyncio.Event()
    reconnected = asyncio.Event()

    async def handler(data: bytes) -> None:
        got.append(data)
        arrived.set()

    async def on_reconnect() -> None:
        reconnected.set()

    sub.on_reconnect.append(on_reconnect)
    try:
        sub.subscribe([sub.keys.stream], handler)
        await asyncio.wait_for(sub.subscribed.wait(), TIMEOUT)
        redis_server.restart()
        await asyncio.wait_for(reconnected.wait(), TIMEOUT)
        assert sub.errors >= 1 and sub.up
        lease = Lease(pub.redis, pub.keys, "sim", ttl=5)
        assert await lease.try_acquire()
        await pub.publish(lease, b"after the restart")
        await asyncio.wait_for(arrived.wait(), TIMEOUT)
        assert got == [b"after the restart"]
    finally:
        await pub.close()
        await sub.close()



async def test_close_stops_loops_spawned_while_closing() -> None:
    """A loop that starts another as it ends (a simulation standing down starts its settings
    replica) must not leave that one running: close() would wait for it for ever."""
    link = Link("redis://127.0.0.1:9")  # no connection is made: only the loops are tested
    second: list[asyncio.Task[Any]] = []

    async def forever() -> None:
        await asyncio.Event().wait()

    async def stands_down() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            second.append(link.spawn(forever()))

    link.spawn(stands_down())
    await asyncio.sleep(0)  # the loop starts
    closing = asyncio.ensure_future(link.close())
    done, _ = await asyncio.wait({closing}, timeout=TIMEOUT)
    assert closing in done and second and second[0].cancelled()

    # a cancelled close() ends at once, cancelled (it does not swallow its own cancellation)
    link2 = Link("redis://127.0.0.1:9")
    stubborn = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await stubborn.wait()

    link2.spawn(slow_to_stop())
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(link2.close())
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(closing, TIMEOUT)
    stubborn.set()
    await link2.close()


def test_keys_are_namespaced() -> None:
    k = Keys("prod")
    assert k.lease == "prod:lease" and k.reply("gw") == "prod:reply:gw"
    assert Value.of(1.0).tag is not None


def test_a_redis_url_that_can_never_work_is_one_line(
        redis_server: RedisServer, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Redis answers that the database index does not exist: retrying would wait for ever,
    so ``serve`` says so in one line, before loading anything."""
    from graphwire.cli import main

    url = redis_server.url.rsplit("/", 1)[0] + "/99"
    for role in ("gateway", "simulation"):
        assert main(["serve", "--redis", url, "--role", role, "--port", "0",
                     "--db", str(tmp_path / f"{role}.db")]) == 2
        err = capsys.readouterr().err
        assert "DB index is out of range" in err and "Traceback" not in err, err
