"""The asyncio client: one resilient connection to a server (docs/protocol.md §6, §7, §10).

- **Init** (§7): open ``/ws``, read ``connection_established`` (and the PathTable), subscribe,
  ``GET /api/graph/data?clientId=`` (the server then sends this client a keyframe at least as
  new as the data), and Sync the settings (a Snapshot, digest checked).
- **Reconnect** forever by default, after exponential backoff with full jitter
  (:class:`~graphwire.client.backoff.Backoff`: 1 s doubling to 30 s, an attempt limit optional):
  ``/ws?resume=<clientId>``, subscribe again, ``resume`` with the epoch, seq and settings
  revision held; the graph is fetched again when the epoch or topology version changed.
- **Heartbeat**: JSON ``ping`` every ``ping_interval`` (30 s); no ``pong`` within
  ``pong_timeout`` (10 s) drops the socket and reconnects.
- **Outgoing queue**: while disconnected, messages wait in a bounded queue (``queue_limit``
  1000; the oldest is dropped and counted) and go out in order right after the subscription
  and ``resume`` of the next connection.
- **Close codes**: 4401 and a handshake answered 401/403 stop the client with
  :class:`~graphwire.client.errors.AuthenticationError`; 1008 (banned) waits ``retryAfterMs``;
  every other close (1001, 1011, 1013, a dropped socket) reconnects with backoff.

Everything observable is an event (:mod:`graphwire.client.events`): callbacks with :meth:`on`,
an async iterator with :meth:`events`. The data lives in :attr:`Client.mirror` (numpy arrays)
and :attr:`Client.settings`; node moves go through :attr:`Client.positions` (a BatchQueue).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from graphwire.protocol import control
from graphwire.protocol.control import CloseCode, Format
from graphwire.protocol.errors import ErrorCode, ProtocolError
from graphwire.protocol.header import Kind

from . import events as ev
from .backoff import Backoff
from .batch_queue import BatchQueue, Mode
from .errors import (
    AuthenticationError,
    ClientClosedError,
    ClientError,
    ClientTimeoutError,
    ConnectError,
    RequestError,
    ServerError,
)
from .mirror import GraphMirror
from .settings_mirror import SettingsMirror

log = logging.getLogger("graphwire.client")

MAX_MESSAGE = 64 * 1024 * 1024  # §2: clients accept messages up to 64 MiB
BOUNDS_PATH = "visualisation.graphs.logseq.physics.bounds_size"
_STREAM_KINDS = (Kind.POSITIONS_V1, Kind.POSITIONS_V2, Kind.POSITIONS_Q, Kind.SSSP)


def endpoints(url: str) -> tuple[str, str]:
    """``(http base, ws url)`` from ``http(s)://host:port``, ``ws(s)://host:port`` or either
    with the ``/ws`` path."""
    parts = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ValueError(f"not a server address: {url!r} (expected http://host:port)")
    secure = parts.scheme in ("https", "wss")
    path = parts.path.rstrip("/")
    if path.endswith("/ws"):
        path = path[:-3]
    http = urllib.parse.urlunsplit(("https" if secure else "http", parts.netloc, path, "", ""))
    ws = urllib.parse.urlunsplit(("wss" if secure else "ws", parts.netloc, path + "/ws", "", ""))
    return http, ws


class Client:
    """A graphwire client: connection, mirror, settings and BatchQueue on one asyncio loop.

    ``format`` is the position stream (``"q"``, ``"v2"``, ``"v1"``; None: no stream);
    ``interval_ms`` the requested pace (None: the server's default); ``velocity`` asks a ``q``
    stream for velocities. ``backoff``, ``ping_interval``, ``pong_timeout``, ``queue_limit``,
    ``open_timeout`` (handshake and first message) and ``request_timeout`` (settings replies)
    have the §10 defaults. ``connect_attempts`` limits the attempts of the *first* connection
    (None: as ``backoff.max_attempts``). ``batch_options`` are passed to the BatchQueue.
    """

    def __init__(
        self,
        url: str,
        *,
        format: Format | None = "q",
        interval_ms: int | None = None,
        velocity: bool = False,
        token: str | None = None,
        backoff: Backoff | None = None,
        connect_attempts: int | None = None,
        ping_interval: float = 30.0,
        pong_timeout: float = 10.0,
        queue_limit: int = 1000,
        open_timeout: float = 10.0,
        request_timeout: float = 10.0,
        load_graph: bool = True,
        batch_options: dict[str, Any] | None = None,
    ) -> None:
        if format is not None and format not in control.FORMATS:
            raise ValueError(f"format must be one of {', '.join(control.FORMATS)} or None")
        self.base_url, self.ws_url = endpoints(url)
        self.format: Format | None = format
        self.interval_ms = interval_ms
        self.velocity = velocity
        self.token = token
        self.backoff = backoff or Backoff()
        self.connect_attempts = connect_attempts
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.queue_limit = queue_limit
        self.open_timeout = open_timeout
        self.load_graph = load_graph
        self.mirror = GraphMirror()
        self.settings = SettingsMirror(self.send, timeout=request_timeout,
                                       connected=lambda: self._open)
        self.settings.on_change = self._settings_changed
        self.settings.on_error = self._client_error
        self.positions = BatchQueue(self._send_batch, epoch=lambda: self.mirror.epoch or 0,
                                    is_agent=self.mirror.is_agent, is_known=self.mirror.is_known,
                                    bounds=self._bounds, **(batch_options or {}))
        self._hub = ev.EventHub()
        self.state = "idle"
        self.client_id: str | None = None
        self.established: control.ConnectionEstablished | None = None
        self.subscription: control.SubscriptionConfirmed | None = None
        self.reconnects = 0
        self.dropped = 0  # outgoing messages dropped by the queue bound
        self.bytes_received = 0
        self._outgoing: deque[str | bytes] = deque()
        self._wake_writer = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._open = False
        self._closing = False
        self._run_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._fatal: ClientError | None = None
        self._ready = asyncio.Event()
        self._graph_loading: asyncio.Task[None] | None = None
        self._graph_loaded = asyncio.Event()
        self._changes_in_flight: list[dict[str, Any]] = []  # graph_changed during a load
        self._key_requested = False
        self._pong = asyncio.Event()
        self._retry_after = 0.0
        self._had_connection = False
        self._lost_reason = ""  # why this client dropped the socket itself (no pong)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> Client:
        """Connect and wait until the graph, the settings and (with a stream) the first
        keyframe are in the mirror. Raises AuthenticationError or ConnectError."""
        if self._run_task is None:
            self._http = aiohttp.ClientSession(headers=self._auth_headers())
            self._run_task = asyncio.create_task(self._run())
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({ready, self._run_task},
                                     return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._fatal is not None:
            await self.close()
            raise self._fatal
        if not self._ready.is_set():
            raise ClientClosedError("the client was closed before it connected")
        return self

    async def close(self) -> None:
        """Close the connection for good (1000) and stop every task."""
        if self._closing:
            return
        self._closing = True
        self._set_state("closed")
        self.positions.close()
        self.settings.fail_pending(ClientClosedError("the client was closed"))
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(1000, "client closing"), 2.0)
        tasks = [t for t in (self._run_task, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        if self._http is not None:
            await self._http.close()
        self._hub.close()

    async def __aenter__(self) -> Client:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_closed(self) -> None:
        """Wait until the client stops (closed, or a fatal error); re-raise that error."""
        if self._run_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
        if self._fatal is not None:
            raise self._fatal

    @property
    def connected(self) -> bool:
        """Whether the connection is established now."""
        return self._open

    @property
    def error(self) -> ClientError | None:
        """The error that stopped the client, if one did."""
        return self._fatal

    # -- events ------------------------------------------------------------------------------
    def on(self, name: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        """Call ``callback(event)`` for each event ``name`` (or ``"*"``); returns an ``off``."""
        return self._hub.on(name, callback)

    def events(self, names: Iterable[str] | None = None) -> AsyncIterator[ev.Event]:
        """An async iterator over events (only ``names`` when given) until the client closes."""
        return self._hub.stream(names)

    async def wait_for(self, name: str,
                       predicate: Callable[[Any], bool] | None = None) -> Any:
        """The next event ``name`` for which ``predicate`` holds (bound it with
        ``asyncio.timeout``)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def check(event: Any) -> None:
            if not fut.done() and (predicate is None or predicate(event)):
                fut.set_result(event)
        off = self._hub.on(name, check)
        try:
            return await fut
        finally:
            off()

    async def wait_settled(self) -> int:
        """Wait for a frame with the settled flag; returns its seq."""
        if self.mirror.settled and self.mirror.seq >= 0:
            return self.mirror.seq
        event = await self.wait_for("frame", lambda e: e.settled and e.kind != Kind.SSSP)
        return int(event.seq)

    def _emit(self, event: ev.Event) -> None:
        self._hub.emit(event)

    def _client_error(self, code: str, message: str) -> None:
        self._emit(ev.ErrorEvent(code, message, "client", False))

    def _settings_changed(self, revision: int, changes: dict[str, Any], origin: str) -> None:
        self._emit(ev.SettingsChanged(revision, changes, origin))

    def _set_state(self, state: str) -> None:
        self.state = state

    # -- sending -----------------------------------------------------------------------------
    def send(self, message: str | bytes) -> bool:
        """Send a text or binary message now, or queue it while disconnected (bounded: the
        oldest queued message is dropped and counted). True if the socket is open now."""
        if self._closing:
            raise ClientClosedError("the client is closed")
        self._outgoing.append(message)
        if len(self._outgoing) > self.queue_limit:
            self._outgoing.popleft()
            self.dropped += 1
        self._wake_writer.set()
        return self._open

    @property
    def frames(self) -> int:
        """Position frames applied to the mirror so far."""
        return self.mirror.frames

    def send_json(self, message: dict[str, Any]) -> bool:
        """Send a JSON control message (queued while disconnected)."""
        return self.send(json.dumps(message, separators=(",", ":"), allow_nan=False))

    def request_keyframe(self) -> bool:
        """Ask for a keyframe of the subscribed format."""
        return self.send(control.dumps(control.RequestKeyframe()))

    def set_sssp_source(self, source: int | str | None) -> bool:
        """Set (or clear, with None) the graph's shortest-path source, by id or key."""
        nid = self.mirror.node_id(source) if isinstance(source, str) else source
        return self.send(control.dumps(control.SetSsspSource(nid)))

    def move(self, node: int | str, x: float, y: float, z: float,
             mode: Mode = "move") -> str | None:
        """Queue a node's new position in the BatchQueue (by id or key); None when queued,
        else why it was rejected."""
        try:
            nid = self.mirror.node_id(node) if isinstance(node, str) else node
        except KeyError:
            return self.positions._reject(-1, "unknown_node")
        return self.positions.enqueue(nid, x, y, z, mode)

    def _send_batch(self, frame: bytes, batch: int) -> bool:
        # Position batches are not queued while disconnected: the BatchQueue retries them.
        if not self._open:
            return False
        self.send(frame)
        return True

    def _bounds(self) -> float:
        value = self.settings.get(BOUNDS_PATH)
        return float(value) if isinstance(value, int | float) else float("inf")

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    # -- the connection loop -----------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _stop(self, error: ClientError) -> None:
        self._fatal = error
        self._set_state("failed")
        self._emit(ev.ErrorEvent("client_stopped", str(error), "auth"
                                 if isinstance(error, AuthenticationError) else "client", False))

    async def _run(self) -> None:
        failures = 0
        retries = 0  # since the last established connection (or the start)
        while not self._closing:
            self._set_state("reconnecting" if self._had_connection else "connecting")
            try:
                code, reason, established = await self._connect_once()
            except Exception as exc:  # anything unforeseen is one failed attempt, not the end
                log.exception("graphwire client: connection attempt failed")
                code, reason, established = 1006, f"{type(exc).__name__}: {exc}", False
            if self._closing or self._fatal is not None:
                return
            if established:
                failures = retries = 0
                self._emit(ev.Disconnected(code, reason))
            failures += 0 if established else 1
            limit = self.backoff.max_attempts
            if not self._had_connection and self.connect_attempts is not None:
                limit = self.connect_attempts
            if limit is not None and failures >= limit:
                self._stop(ConnectError(
                    f"cannot connect to {self.ws_url} after {failures} attempts: {reason}"))
                return
            delay = self.backoff.delay(failures)
            if self._retry_after:
                delay = max(delay, self._retry_after)
                self._retry_after = 0.0
            self._set_state("reconnecting")
            retries += 1
            self._emit(ev.Reconnecting(retries, round(delay, 4), reason))
            await asyncio.sleep(delay)

    async def _connect_once(self) -> tuple[int, str, bool]:
        """One connection, from handshake to close: (close code, reason, established)."""
        url = self.ws_url
        query = {}
        if self.client_id:
            query["resume"] = self.client_id
        if self.token:
            query["token"] = self.token
        if query:
            url += "?" + urllib.parse.urlencode(query)
        try:
            ws = await connect(url, max_size=MAX_MESSAGE, open_timeout=self.open_timeout,
                               ping_interval=None, compression=None, proxy=None,
                               close_timeout=2.0, max_queue=None)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                self._stop(AuthenticationError(
                    f"the server refused the connection (HTTP {status}): "
                    f"{_error_text(exc.response.body)}", status=status))
            elif status == 429:
                retry = exc.response.headers.get("Retry-After")
                with contextlib.suppress(TypeError, ValueError):
                    self._retry_after = float(retry or 0)
            return 1006, f"HTTP {status}", False
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            return 1006, f"{type(exc).__name__}: {exc}", False
        self._ws = ws
        established = False
        try:
            established = await self._establish(ws)
            if established:
                await self._serve(ws)
        except ConnectionClosed:
            pass
        except (TimeoutError, ProtocolError) as exc:
            await _abort(ws)
            return 1006, f"{type(exc).__name__}: {exc}", established
        finally:
            self._open = False
            self._ws = None
            await self._end_connection(ws)
        code = ws.close_code if ws.close_code is not None else 1006
        reason = ws.close_reason or ""
        if self._lost_reason:
            reason, self._lost_reason = self._lost_reason, ""
        if code == CloseCode.TOKEN_REFUSED:
            self._stop(AuthenticationError(f"the server refused the token (close 4401: {reason})"))
        return code, reason, established

    async def _end_connection(self, ws: ClientConnection) -> None:
        for t in list(self._tasks):
            if getattr(t, "_graphwire_conn", None) is ws:
                t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 1.0)
        await _abort(ws)

    async def _establish(self, ws: ClientConnection) -> bool:
        first = await asyncio.wait_for(ws.recv(), self.open_timeout)
        if not isinstance(first, str):
            raise ProtocolError(ErrorCode.MALFORMED_FRAME,
                                "the first message is not connection_established")
        msg = control.parse_server_message(first)
        if not isinstance(msg, control.ConnectionEstablished):
            if isinstance(msg, control.ErrorMessage):
                self._on_error(msg)
                return False
            raise ProtocolError(ErrorCode.MALFORMED_FRAME,
                                f"expected connection_established, got {msg.TYPE}")
        reconnect = self._had_connection
        old_epoch, old_topology = self.mirror.epoch, self.mirror.topology_version
        self.established = msg
        self.client_id = msg.client_id
        self.settings.expect(int(msg.settings.get("revision", 0)),
                             str(msg.settings.get("digest", "")))
        # subscribe, resume, then what waited: in this order, before anything else is written
        if self.format is not None:
            sub = control.Subscribe(self.format, self.interval_ms,
                                    True if self.velocity and self.format == "q" else None)
            await ws.send(control.dumps(sub))
        if reconnect:
            await ws.send(control.dumps(control.Resume(
                old_epoch if old_epoch is not None else msg.epoch, max(self.mirror.seq, 0),
                self.settings.revision)))
        self._key_requested = False
        self._open = True
        if reconnect:
            self.reconnects += 1
        self._had_connection = True
        self._set_state("connected")
        writer = self._spawn(self._writer(ws))
        pinger = self._spawn(self._pinger(ws))
        for t in (writer, pinger):
            t._graphwire_conn = ws  # type: ignore[attr-defined]
        if not reconnect:
            sync = self._spawn(self.settings.sync(0))
            sync.add_done_callback(_ignore_result)
        stale = (not self._graph_loaded.is_set() or msg.epoch != old_epoch
                 or msg.topology_version != old_topology)
        if self.load_graph and stale:
            self._load_graph_soon()
        self._emit(ev.Connected(msg.client_id, msg.epoch, msg.seq, msg.is_reconnection,
                                reconnect))
        self._check_ready()
        return True

    async def _serve(self, ws: ClientConnection) -> None:
        async for message in ws:
            self.bytes_received += len(message)
            try:
                if isinstance(message, str):
                    self._on_text(message)
                else:
                    self._on_binary(message)
            except Exception as exc:  # one bad message must not end the connection
                log.exception("graphwire client: a message could not be handled")
                self._client_error("internal", f"a message could not be handled: {exc!r}")

    async def _writer(self, ws: ClientConnection) -> None:
        while True:
            while self._outgoing and self._open:
                item = self._outgoing.popleft()
                try:
                    await ws.send(item)
                except ConnectionClosed:
                    self._outgoing.appendleft(item)  # not sent: it goes out after reconnecting
                    return
            self._wake_writer.clear()
            await self._wake_writer.wait()

    async def _pinger(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            self._pong.clear()
            ts = int(time.time() * 1000)
            try:
                await ws.send(control.dumps(control.Ping(ts)))
            except ConnectionClosed:
                return
            try:
                await asyncio.wait_for(self._pong.wait(), self.pong_timeout)
            except TimeoutError:
                self._lost_reason = f"no pong within {self.pong_timeout:g} s"
                await _abort(ws)
                return

    # -- what arrives ------------------------------------------------------------------------
    def _on_text(self, text: str) -> None:
        try:
            msg = control.parse_server_message(text)
        except ProtocolError as exc:
            self._client_error(exc.code.value, f"bad message from the server: {exc.message}")
            return
        if isinstance(msg, control.Pong):
            self._pong.set()
        elif isinstance(msg, control.SubscriptionConfirmed):
            self.subscription = msg
        elif isinstance(msg, control.PositionsAck):
            self.positions.on_ack(msg.to_json())
        elif isinstance(msg, control.GraphChanged):
            self._on_graph_changed(msg)
        elif isinstance(msg, control.RateLimitWarning):
            self._emit(ev.RateLimitWarning(msg.rate_class, msg.message, msg.retry_after_ms))
        elif isinstance(msg, control.ErrorMessage):
            self._on_error(msg)

    def _on_error(self, msg: control.ErrorMessage) -> None:
        info = msg.error
        if info.code == ErrorCode.BANNED and info.retry_after_ms:
            self._retry_after = info.retry_after_ms / 1000.0
        if info.code == ErrorCode.UNAUTHORIZED:
            self._stop(AuthenticationError(f"the server refused the token: {info.message}"))
        self._emit(ev.ErrorEvent(info.code.value, info.message, info.category.value,
                                 info.retryable, info.retry_after_ms))

    def _on_graph_changed(self, msg: control.GraphChanged) -> None:
        change = msg.to_json()
        if self._graph_loading is not None and not self._graph_loading.done():
            self._changes_in_flight.append(change)  # applied over the body it awaits
            return
        # the keys of the nodes it removes, while the mirror still knows them
        gone = tuple(self.mirror.keys.get(int(i), str(i))
                     for i in (change.get("removed") or {}).get("nodes", []))
        if self.mirror.graph_changed(change):
            if msg.epoch != self.mirror.epoch or msg.topology_version != \
                    self.mirror.topology_version or not self._graph_loaded.is_set():
                self._load_graph_soon()
            return
        m = self.mirror
        added = tuple(str(n.get("key", n.get("id"))) for n in
                      (change.get("added") or {}).get("nodes", []))
        self._emit(ev.GraphChanged(msg.epoch, msg.topology_version, len(m.nodes),
                                   len(m.edges), False, added, gone))

    def _on_binary(self, data: bytes) -> None:
        if not data:
            return
        kind = data[0]
        if kind == Kind.SETTINGS:
            try:
                self.settings.handle(data)
            except ProtocolError as exc:
                self._client_error(exc.code.value, f"bad settings frame: {exc.message}")
            self._check_ready()
            return
        if kind not in _STREAM_KINDS:
            self._client_error("unknown_kind", f"frame of unknown kind 0x{kind:02x} ignored")
            return
        try:
            applied = self.mirror.apply(data)
        except ProtocolError as exc:
            self._client_error(exc.code.value, f"frame not applied: {exc.message}")
            return
        if applied.need_keyframe:
            if not self._key_requested:  # one request until a keyframe arrives
                self._key_requested = True
                self.request_keyframe()
            return
        if applied.stale:
            return
        if applied.keyframe:
            self._key_requested = False
        self._emit(ev.Frame(kind, applied.seq, applied.keyframe, applied.settled,
                            applied.nodes, len(data)))
        self._check_ready()

    # -- REST --------------------------------------------------------------------------------
    def _load_graph_soon(self) -> None:
        if self._graph_loading is None or self._graph_loading.done():
            self._graph_loaded.clear()
            self._graph_loading = self._spawn(self._load_graph())

    async def _load_graph(self) -> None:
        for attempt in range(1_000_000):
            if self._closing or not self._open:
                return
            self._changes_in_flight = []
            try:
                data = await self.get_json(
                    "/api/graph/data", {"clientId": self.client_id or ""})
            except AuthenticationError as exc:
                self._stop(exc)
                if self._ws is not None:
                    await _abort(self._ws)
                return
            except (ClientError, aiohttp.ClientError, TimeoutError) as exc:
                self._client_error("graph_load_failed", str(exc))
                await asyncio.sleep(self.backoff.delay(attempt))
                continue
            epoch_before = self.mirror.epoch
            during, self._changes_in_flight = self._changes_in_flight, []
            if self.mirror.load(data, during):
                continue  # out of date already: a newer epoch or a refetch was announced
            self._graph_loaded.set()
            m = self.mirror
            self._emit(ev.GraphChanged(m.epoch or 0, m.topology_version, len(m.nodes),
                                       len(m.edges), epoch_before is not None))
            self._check_ready()
            return

    async def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """``GET`` a REST route of the server (with the token); raises ServerError for an error
        answer, AuthenticationError for 401/403, RequestError when no server answers and
        ClientTimeoutError when it does not answer in time."""
        return await self._http_json("GET", path, params=params)

    async def post_json(self, path: str, body: Any, method: str = "POST") -> Any:
        """Send a JSON body to a REST route (``method``: POST, PUT, PATCH or DELETE; a body of
        None is ``{}`` except for DELETE, which then sends none)."""
        if body is None and method.upper() != "DELETE":
            body = {}  # every POST, PUT and PATCH route takes a JSON body (415 without one)
        return await self._http_json(method, path, body=body)

    async def _http_json(self, method: str, path: str, *, params: dict[str, str] | None = None,
                         body: Any = None) -> Any:
        if self._http is None:
            self._http = aiohttp.ClientSession(headers=self._auth_headers())
        seconds = max(30.0, self.open_timeout)
        try:
            return await self._http_exchange(method, path, params, body, seconds)
        except aiohttp.ClientError as exc:
            raise RequestError(f"{method} {self.base_url}{path}: {exc or type(exc).__name__}"
                               ) from None
        except TimeoutError:
            raise ClientTimeoutError(f"{method} {self.base_url}{path}: no answer within "
                                     f"{seconds:g} s") from None

    async def _http_exchange(self, method: str, path: str, params: dict[str, str] | None,
                             body: Any, seconds: float) -> Any:
        assert self._http is not None
        timeout = aiohttp.ClientTimeout(total=seconds)
        async with self._http.request(method, self.base_url + path, params=params, json=body,
                                      timeout=timeout) as resp:
            try:
                doc = await resp.json(content_type=None)
            except ValueError:
                doc = None
            if resp.status in (401, 403):
                raise AuthenticationError(
                    f"{method} {path}: HTTP {resp.status}: {_error_text(doc)}", status=resp.status)
            if resp.status >= 400:
                err = doc.get("error") if isinstance(doc, dict) else None
                if isinstance(err, dict):
                    try:
                        info = control.ErrorMessage.from_json({"error": err}).error
                    except ProtocolError:
                        pass
                    else:
                        raise ServerError(info)
                raise ClientError(f"{method} {path}: HTTP {resp.status}")
            return doc

    def _check_ready(self) -> None:
        if self._ready.is_set() or not self._open or not self.settings.synced.is_set():
            return
        if self.load_graph and not self._graph_loaded.is_set():
            return
        if self.format is not None and self.mirror.frames == 0:
            return
        self._ready.set()


def _ignore_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _error_text(body: Any) -> str:
    if isinstance(body, bytes | bytearray):
        try:
            body = json.loads(body)
        except ValueError:
            return str(body.decode("utf-8", "replace"))[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"{err.get('code')}: {err.get('message')}"
    return str(body)[:200] if body else "no details"


async def _abort(ws: ClientConnection) -> None:
    transport = getattr(ws, "transport", None)
    if transport is not None:
        transport.abort()
    await asyncio.sleep(0)
