"""The connection survives what networks and servers do: a server SIGKILLed and restarted on
the same port, a server that stops answering pings, many clients coming back at once; and a
refused token stops it with a clear exception."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graphwire.client import (
    AuthenticationError,
    Backoff,
    BlockingClient,
    Client,
    ClientClosedError,
    ClientError,
    ClientTimeoutError,
    ConnectError,
    RequestError,
)

from .conftest import Harness, ServerFactory, ServerProcess

DAMPING = "visualisation.graphs.logseq.physics.damping"


async def converged(client: Client, get_state: Callable[[], Any]) -> None:
    """The mirror shows the server's snapshot within the q grid bound at the same seq."""
    for _ in range(50):
        state = await get_state()
        if client.mirror.epoch != state["epoch"]:
            await asyncio.sleep(0.1)  # the graph of the new epoch is still being fetched
            continue
        async with asyncio.timeout(10):
            while client.mirror.seq < state["seq"]:
                await client.wait_for("frame")
        if client.mirror.seq == state["seq"]:
            snap = client.mirror.snapshot()
            want = np.array([[p["x"], p["y"], p["z"]] for p in state["positions"]])
            assert np.array_equal(snap.ids, [p["id"] for p in state["positions"]])
            step = client.mirror.grid_step()
            if step is None:  # no frame yet since the REST data of that same seq: exact
                np.testing.assert_array_equal(snap.positions, want)
            else:
                assert np.all(np.abs(snap.positions - want).max(axis=0) <= step / 2 + 1e-9)
            assert client.mirror.epoch == state["epoch"]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the mirror never showed the server's seq")


@pytest.mark.timeout(120)
async def test_sigkill_restart_resumes_converges_and_delivers_the_queue_once_in_order(
        server_process: Callable[..., ServerProcess]) -> None:
    server = server_process()
    await server.astart()
    backoff = Backoff(base=0.2, cap=1.0)  # a short window: the behaviour, not the 30 s cap
    client = Client(server.url, format="q", backoff=backoff, interval_ms=1)
    await client.start()
    try:
        epoch0, rev0, old_id = client.mirror.epoch, client.settings.revision, client.client_id
        down = asyncio.ensure_future(client.wait_for("disconnected"))
        server.kill()
        async with asyncio.timeout(10):
            await down
        assert not client.connected
        # written while the server is down: they wait in the outgoing queue
        values = [0.31, 0.42, 0.53, 0.64, 0.75]
        writes = [asyncio.ensure_future(client.settings.set(DAMPING, v)) for v in values]
        await asyncio.sleep(0.3)
        assert not any(w.done() for w in writes)
        back = asyncio.ensure_future(client.wait_for("connected"))
        await server.astart()
        up_at = time.monotonic()
        async with asyncio.timeout(15):
            event = await back
        # within the backoff: at most one cap (plus the time a handshake takes)
        assert time.monotonic() - up_at < backoff.cap + 2.0
        # the client resumes (resume message, epoch, seq, revision); a restarted process does
        # not know the old client id, so it says isReconnection false and gives a new one
        assert event.resumed and not event.reconnection and event.client_id != old_id
        async with asyncio.timeout(20):
            replies = await asyncio.gather(*writes)
        revisions = [r.revision for r in replies]
        assert revisions == list(range(rev0 + 1, rev0 + 6)), revisions  # once each, in order
        state = await client.get_json(f"/api/settings/{DAMPING}")
        assert state["value"] == 0.75 and state["revision"] == rev0 + 5
        assert client.reconnects == 1 and client.dropped == 0
        await converged(client, lambda: client.get_json("/api/graph/state",
                                                        {"positions": "1"}))
        assert client.mirror.epoch != epoch0  # a restart is a new epoch: the graph was refetched
        assert len(client.mirror.nodes) == 200
    finally:
        await client.close()


class FreezableProxy:
    """A loopback TCP proxy whose open pipes can be frozen: bytes from the server stop
    reaching the client while the sockets stay open (a server that stops answering)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        head = await reader.read(65536)
        if head.startswith(b"GET /ws"):
            self.connections += 1  # WebSocket connections (REST calls pass through too)
        up_w.write(head)
        frozen = self.frozen if self.frozen.is_set() is False else asyncio.Event()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       freezable: bool) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if freezable and frozen.is_set():
                        continue  # swallowed: the server "stopped answering"
                    dst.write(data)
                    await dst.drain()
            dst.close()

        tasks = [asyncio.ensure_future(pipe(reader, up_w, False)),
                 asyncio.ensure_future(pipe(up_r, writer, True))]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)

    def freeze_current(self) -> None:
        """Freeze the pipes open now; later connections get a fresh, flowing pipe."""
        self.frozen.set()
        self.frozen = asyncio.Event()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self.server is not None:
            self.server.close()


@pytest.mark.timeout(60)
async def test_a_server_that_stops_answering_pings_is_left_and_reconnected(
        generous_server: Harness) -> None:
    proxy = FreezableProxy(generous_server.server.port)
    await proxy.start()
    client = Client(f"http://127.0.0.1:{proxy.port}", format="q", ping_interval=0.5,
                    pong_timeout=1.0, backoff=Backoff(base=0.2, cap=1.0))
    try:
        await client.start()
        assert proxy.connections == 1
        lost = asyncio.ensure_future(client.wait_for("disconnected"))
        back = asyncio.ensure_future(client.wait_for("connected"))
        proxy.freeze_current()
        frozen_at = time.monotonic()
        async with asyncio.timeout(10):
            event = await lost
        assert "no pong" in event.reason
        # noticed after the next ping's timeout: at most a ping interval plus the pong timeout
        assert time.monotonic() - frozen_at < 0.5 + 1.0 + 1.0
        async with asyncio.timeout(10):
            again = await back
        assert again.resumed and again.reconnection and proxy.connections == 2
        seq = client.mirror.seq
        async with asyncio.timeout(10):
            await client.wait_for("frame", lambda e: e.seq > seq)  # the stream flows again
    finally:
        await client.close()
        await proxy.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_200_clients_spread_their_reconnects_over_the_backoff_window(
        server_process: Callable[..., ServerProcess]) -> None:
    server = server_process()
    await server.astart()
    # the default first window (1 s); a 4 s cap only shortens the wait for the slow restart
    backoff = Backoff(base=1.0, cap=4.0)
    clients = [Client(server.url, format=None, load_graph=False, backoff=backoff)
               for _ in range(200)]
    first_attempt: dict[int, float] = {}

    all_tried, all_back = asyncio.Event(), asyncio.Event()
    back: set[int] = set()

    def watch(i: int) -> Callable[[Any], None]:
        def on_reconnecting(event: Any) -> None:
            if event.attempt == 1 and i not in first_attempt:
                first_attempt[i] = time.monotonic() + event.delay
                if len(first_attempt) == len(clients):
                    all_tried.set()
        return on_reconnecting

    def came_back(i: int) -> Callable[[Any], None]:
        def on_connected(event: Any) -> None:
            back.add(i)
            if len(back) == len(clients):
                all_back.set()
        return on_connected

    t0 = time.monotonic()
    try:
        for i in range(0, 200, 50):
            await asyncio.gather(*(c.start() for c in clients[i:i + 50]))
        print(f"200 connected in {time.monotonic() - t0:.1f} s")
        for i, c in enumerate(clients):
            c.on("reconnecting", watch(i))
            c.on("connected", came_back(i))
        started = time.monotonic()
        server.kill()
        restart = asyncio.ensure_future(server.astart())  # at once: clients retry meanwhile
        async with asyncio.timeout(20):
            await all_tried.wait()
        await restart
        print(f"restarted after {time.monotonic() - started:.1f} s")
        async with asyncio.timeout(60):
            await all_back.wait()
        print(f"all back after {time.monotonic() - started:.1f} s")
        times = np.array(sorted(first_attempt.values()))
        times -= times.min()
        window = backoff.ceiling(0)
        slices = np.bincount((times / 0.1).astype(int))
        # full jitter: uniform over the first window, no 100 ms slice holds a quarter of them
        assert slices.max() <= 50, slices.tolist()
        assert times.max() - times.min() > 0.6 * window, times
        assert times.max() < window + 0.3
        assert all(c.reconnects == 1 for c in clients)
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_a_refused_token_stops_the_client_with_a_clear_exception(
        make_server: ServerFactory) -> None:
    harness = await make_server(token="right-token")
    started = time.monotonic()
    client = Client(harness.base, token="wrong-token")
    with pytest.raises(AuthenticationError) as err:
        await client.start()
    assert time.monotonic() - started < 5  # no retrying with credentials that cannot work
    assert "refused" in str(err.value) and err.value.status in (401, 403, None)
    assert client.error is err.value
    # the right token works
    async with Client(harness.base, token="right-token", format="v2") as ok:
        assert ok.connected and len(ok.mirror.nodes) == 200


async def test_an_attempt_limit_gives_up_with_connect_error(make_server: ServerFactory) -> None:
    client = Client("http://127.0.0.1:9", backoff=Backoff(base=0.05, cap=0.1, max_attempts=3))
    retries: list[tuple[int, str]] = []
    client.on("reconnecting", lambda e: retries.append((e.attempt, e.reason)))
    with pytest.raises(ConnectError) as err:
        await client.start()
    assert "after 3 attempts" in str(err.value)
    assert [attempt for attempt, _ in retries] == [1, 2]  # three attempts: two retries
    assert all("refused" in reason.lower() for _, reason in retries), retries


@pytest.mark.timeout(60)
async def test_a_ban_closes_1008_and_the_client_waits_retry_after(
        make_server: ServerFactory) -> None:
    r = "system.rateLimits."
    harness = await make_server(token="tok", overrides={
        r + "control.perMinute": 600, r + "control.burst": 5, r + "banThreshold": 1,
        r + "banDurationMs": 2000})
    client = Client(harness.base, token="tok", format="q", backoff=Backoff(base=0.1, cap=0.2))
    await client.start()
    try:
        banned = asyncio.ensure_future(client.wait_for("error", lambda e: e.code == "banned"))
        closed = asyncio.ensure_future(client.wait_for("disconnected"))
        retry = asyncio.ensure_future(client.wait_for("reconnecting"))
        back = asyncio.ensure_future(client.wait_for("connected"))
        for _ in range(20):  # over the control limit: a violation, and the threshold is 1
            client.send_json({"type": "ping"})
        async with asyncio.timeout(10):
            err = await banned
            assert err.category == "rate_limit" and 0 < err.retry_after_ms <= 2000
            assert (await closed).code == 1008
            wait = (await retry).delay
        assert wait >= err.retry_after_ms / 1000 - 0.05  # not the 0.1 s backoff: the ban's wait
        async with asyncio.timeout(15):
            await back  # the ban is over: it comes back by itself
        assert client.reconnects == 1
    finally:
        await client.close()


async def test_the_mirror_follows_the_shortest_path_source_across_a_reload(
        make_server: ServerFactory, tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    vault.mkdir()
    for name, text in {"a": "- [[b]]", "b": "- [[c]]", "c": "- x"}.items():
        (vault / f"{name}.md").write_text(text + "\n")
    h = await make_server(source=str(vault), watch=False, admin_token="boss")
    async with Client(h.base, token="boss") as client:
        client.set_sssp_source("b")
        await client.wait_for("frame", lambda e: client.mirror.sssp_source is not None)
        (vault / "0.md").write_text("- [[a]]\n")  # a page in front: b gets a new id
        reply = await client.post_json("/api/graph/reload", None)  # sent as {}
        assert reply["nodesCount"] == 4 and reply["skipped"] == []
        m = client.mirror
        deadline = asyncio.get_running_loop().time() + 10
        while "0" not in m.ids_by_key or m.sssp_source is None \
                or m.keys.get(m.sssp_source) != "b" or m.sssp_distance[m.node_id("0")] != 2:
            assert asyncio.get_running_loop().time() < deadline, (m.sssp_source, m.keys)
            await asyncio.sleep(0.02)
        assert m.sssp_distance[m.node_id("c")] == 1 and m.sssp_parent[m.node_id("b")] == -1


def test_the_blocking_client_says_what_failed_and_keeps_a_late_write(
        server_process: Callable[..., ServerProcess], recwarn: pytest.WarningsRecorder) -> None:
    """While the server is down: a REST call is a RequestError, a write that outlives its
    timeout a ClientTimeoutError (both ClientErrors, so a script's one except clause holds);
    the write goes out when the server is back and the mirror shows it; a closed client is a
    ClientClosedError, with no coroutine left unawaited."""
    server = server_process()
    server.start()
    c = BlockingClient(server.url, backoff=Backoff(base=0.2, cap=0.5))
    try:
        before = c.setting(DAMPING)
        down, up = threading.Event(), threading.Event()
        c.on("disconnected", lambda _: down.set())
        c.on("connected", lambda _: up.set())
        server.kill()
        assert down.wait(10)
        with pytest.raises(RequestError, match=r"GET .*/api/graph/state"):
            c.get_json("/api/graph/state")
        with pytest.raises(ClientTimeoutError, match=f"setting {DAMPING} did not finish"):
            c.set(DAMPING, 0.37, timeout=0.5)
        assert c.setting(DAMPING) == before
        server.start()
        assert up.wait(15)
        deadline = time.monotonic() + 10
        while c.setting(DAMPING) != 0.37:  # the late Response: no Delta comes to the writer
            assert time.monotonic() < deadline, "the write applied late never reached the mirror"
            c.wait_for("frame", timeout=5)
        assert c.get_json(f"/api/settings/{DAMPING}")["value"] == 0.37
    finally:
        c.close()
    with pytest.raises(ClientClosedError):
        c.set(DAMPING, 0.5)
    assert issubclass(RequestError, ClientError) and issubclass(ClientTimeoutError, TimeoutError)
    assert not [w for w in recwarn if "never awaited" in str(w.message)]
