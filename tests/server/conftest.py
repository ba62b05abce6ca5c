"""Real servers on free ports, and a real WebSocket client (the ``websockets`` library)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from graphwire.bench.redis_server import RedisServer
from graphwire.protocol import settings_codec as sc
from graphwire.server.app import GraphwireServer
from graphwire.server.config import ServerConfig

TIMEOUT = 10.0


def ring_csv(path: Path, n: int = 200) -> Path:
    """A ring with chords: a small connected graph with keys n000 … n199."""
    rows = ["source,target"]
    for i in range(n):
        rows.append(f"n{i:03d},n{(i + 1) % n:03d}")
        if i % 7 == 0:
            rows.append(f"n{i:03d},n{(i * 13 + 5) % n:03d}")
    path.write_text("\n".join(rows) + "\n")
    return path


class Client:
    """A WebSocket client that sorts what arrives: JSON by type, binary by kind."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.established: dict[str, Any] = {}

    @property
    def client_id(self) -> str:
        return str(self.established["clientId"])

    async def send_json(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def send(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def recv(self, timeout: float = TIMEOUT) -> bytes | str:
        return await asyncio.wait_for(self.ws.recv(), timeout)

    async def next_json(self, kind: str | None = None, timeout: float = TIMEOUT,
                        skip: bool = True) -> dict[str, Any]:
        """The next JSON message (of ``kind``), passing over binary frames."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - loop.time()))
            if isinstance(msg, str):
                doc: dict[str, Any] = json.loads(msg)
                if kind is None or doc.get("type") == kind:
                    return doc
                if not skip:
                    raise AssertionError(f"expected {kind}, got {doc}")

    async def next_frame(self, kind: int, timeout: float = TIMEOUT,
                         until: Callable[[bytes], bool] | None = None) -> bytes:
        """The next binary message of a kind (that satisfies ``until``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - loop.time()))
            if isinstance(msg, bytes) and msg[0] == kind and (until is None or until(msg)):
                return msg

    async def settings_reply(self, req: int, timeout: float = TIMEOUT) -> sc.SettingsMessage:
        """The Response or Error answering request ``req``."""
        while True:
            frame = await self.next_frame(0x10, timeout)
            msg = sc.decode_settings(frame)
            if isinstance(msg, sc.Response | sc.Error | sc.Snapshot) and msg.req == req:
                return msg

    async def close(self) -> None:
        await self.ws.close()


class Harness:
    """A running server and ways to talk to it."""

    def __init__(self, server: GraphwireServer, core: GraphwireServer | None = None) -> None:
        self.server = server
        # the server that runs the simulation: the server itself, or the simulation behind a
        # gateway (tests that look inside the physics or the runner look there)
        self.core = core or server
        self.core_base = f"http://127.0.0.1:{self.core.port}"  # its own metrics and health
        self.base = f"http://127.0.0.1:{server.port}"
        self.ws_url = f"ws://127.0.0.1:{server.port}/ws"
        self.http = aiohttp.ClientSession()
        self.clients: list[Client] = []

    async def connect(self, query: str = "", headers: dict[str, str] | None = None,
                      **kw: Any) -> Client:
        ws = await websockets.connect(self.ws_url + query, max_size=64 * 2**20,
                                      additional_headers=headers, **kw)
        client = Client(ws)
        client.established = await client.next_json("connection_established")
        table = await client.next_frame(0x10)
        assert isinstance(sc.decode_settings(table), sc.PathTable)
        self.clients.append(client)
        return client

    async def subscribe(self, fmt: str = "q", **extra: Any) -> tuple[Client, dict[str, Any]]:
        client = await self.connect()
        await client.send_json({"type": "subscribe", "format": fmt, **extra})
        return client, await client.next_json("subscription_confirmed")

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.http.get(self.base + path, **kw) as resp:
            return resp.status, await resp.json()

    async def send(self, method: str, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, json=body, **kw) as resp:
            return resp.status, await resp.json()

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        await self.http.close()


ServerFactory = Callable[..., Awaitable[Harness]]


THROUGH_GATEWAY = os.environ.get("GRAPHWIRE_TEST_THROUGH_GATEWAY") == "1"
"""Run the server, client and browser tests against a gateway (a simulation and a gateway on a
real redis-server, in this process): clients must not tell a gateway from a single process
(issue 13). ``make test-gateway`` runs them so."""


class Stacks:
    """The servers a test starts, each one process or (``THROUGH_GATEWAY``) a simulation on its
    own redis-server with a gateway in front; :meth:`stop` stops them all."""

    def __init__(self, folder: Path, *, through_gateway: bool = THROUGH_GATEWAY) -> None:
        self.folder = folder
        self.through_gateway = through_gateway
        self.behind: list[GraphwireServer] = []
        self.redis_servers: list[RedisServer] = []
        self.started: list[GraphwireServer] = []

    async def start(self, config: ServerConfig) -> tuple[GraphwireServer, GraphwireServer]:
        """The server clients talk to, and the one that runs the simulation (the same one
        unless through a gateway)."""
        core: GraphwireServer | None = None
        if self.through_gateway:
            redis = RedisServer(self.folder / f"redis{len(self.redis_servers)}")
            redis.start()
            self.redis_servers.append(redis)
            # the simulation shares this process's event loop with the gateway and the test:
            # a 100,000-node graph's body served by the gateway stalls the loop past the
            # default 2.5 s lease (separate processes do not: tests/cluster, docs/deploy.md),
            # and no test here takes a lease over
            core = GraphwireServer(dataclasses.replace(config, redis=redis.url,
                                                       role="simulation", port=0, lease_ttl=15.0))
            await core.start()
            self.behind.append(core)
            # a gateway keeps no source, database or --set overrides of its own
            config = dataclasses.replace(config, source=None, db=None, overrides={},
                                         redis=redis.url, role="gateway")
        server = GraphwireServer(config)
        await server.start()
        self.started.append(server)
        return server, core or server

    async def stop(self) -> None:
        """Stop every server, the gateways first; a stop that does not end within 30 s fails
        with the stack of every task still waiting (instead of hanging the run)."""
        try:
            for server in [*self.started, *self.behind]:
                try:
                    async with asyncio.timeout(30):
                        await server.stop()
                except TimeoutError:
                    stacks = io.StringIO()
                    for task in asyncio.all_tasks():
                        task.print_stack(file=stacks)
                    raise AssertionError(f"{server.config.role} server did not stop in 30 s; "
                                         f"tasks:\n{stacks.getvalue()}") from None
        finally:
            for redis in self.redis_servers:
                redis.stop()


async def _servers(folder: Path, *, through_gateway: bool) -> AsyncIterator[ServerFactory]:
    running: list[Harness] = []
    stacks = Stacks(folder, through_gateway=through_gateway)

    async def start(**options: Any) -> Harness:
        source = options.pop("source", None) or str(ring_csv(folder / "ring.csv"))
        config = ServerConfig(source=source, port=0, db=str(folder / f"s{len(running)}.db"),
                              static_dir=None, **options)
        harness = Harness(*await stacks.start(config))
        running.append(harness)
        return harness

    yield start
    for h in running:
        await h.close()
    await stacks.stop()


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start servers (port 0: a free port) and stop them after the test."""
    async for start in _servers(tmp_path, through_gateway=THROUGH_GATEWAY):
        yield start


@pytest.fixture(params=["single", "gateway"])
async def make_either_server(tmp_path: Path, request: pytest.FixtureRequest
                             ) -> AsyncIterator[ServerFactory]:
    """:func:`make_server` once as one process and once as a simulation behind a gateway on a
    real redis-server, whatever ``make test-gateway`` says: for behaviour the cluster must
    keep that ``make test`` checks both ways."""
    async for start in _servers(tmp_path, through_gateway=request.param == "gateway"):
        yield start


@pytest.fixture
async def harness(make_server: ServerFactory) -> Harness:
    """One server with the default configuration on a small ring graph."""
    return await make_server()
