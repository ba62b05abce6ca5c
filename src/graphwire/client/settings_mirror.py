"""The client side of the binary settings protocol (kind 0x10, docs/protocol.md §5).

:class:`SettingsMirror` learns path ids and declared types from PathTable frames, fills itself
with a Sync (a Snapshot the first time, whose blake3 digest it checks), applies every Delta in
revision order, and writes with Set/BatchSet, each value sent with its path's declared tag.
``await set(...)`` returns the Response and raises :class:`SettingsError` on an Error. After a
sync that reaches the revision ``connection_established`` named, the whole content is checked
against that digest; a mismatch asks for a full Snapshot.

It does no I/O: ``send`` hands a frame to the connection (which queues it while disconnected),
and the connection feeds every kind 0x10 frame to :meth:`handle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from graphwire.protocol import settings_codec as sc
from graphwire.protocol.settings_codec import I64_MAX, I64_MIN, Tag, Value

from .errors import SettingsError

log = logging.getLogger("graphwire.client")

ChangeCallback = Callable[[str, Any, int, str], object]
"""``callback(path, value, revision, origin)``; origin is ``local``, ``remote`` or ``sync``."""


def typed(tag: Tag, value: Any) -> Value:
    """A plain value as a Value of a path's declared tag (ints widen to floats, and so on)."""
    if isinstance(value, Value):
        return value
    try:
        # the schema declares F64, I64, BOOL and STRING settings
        if tag == Tag.F64 and isinstance(value, int | float) and not isinstance(value, bool):
            return Value(tag, float(value))
        if tag == Tag.I64 and isinstance(value, int) and not isinstance(value, bool):
            if not I64_MIN <= value <= I64_MAX:
                raise ValueError(f"integer {value} does not fit in 64 bits")
            return Value(tag, value)
        if tag == Tag.BOOL and isinstance(value, bool):
            return Value(tag, value)
        if tag == Tag.STRING and isinstance(value, str):
            return Value(tag, value)
        return Value.of(value)  # let the server answer type_mismatch with its own words
    except ValueError as exc:
        raise SettingsError(2, str(exc)) from None


class SettingsMirror:
    """Every setting's current value, kept in step with the server."""

    def __init__(self, send: Callable[[bytes], object], *, timeout: float = 10.0,
                 connected: Callable[[], bool] = lambda: True) -> None:
        self._send = send
        self.timeout = timeout
        self._connected = connected
        self.paths: dict[str, int] = {}
        self.tags: dict[int, Tag] = {}
        self.names: dict[int, str] = {}
        self.values: dict[int, Value] = {}
        self.revision = 0
        self._req = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], bool, str | None]] = {}
        self._subs: list[tuple[str, ChangeCallback]] = []
        self._resyncs: set[asyncio.Task[None]] = set()
        self._expected: tuple[int, str] | None = None
        self.on_change: Callable[[int, dict[str, Any], str], None] | None = None
        self.on_error: Callable[[str, str], None] | None = None
        self.digest_checks = 0
        self.digest_mismatches = 0
        self.synced = asyncio.Event()

    # -- reading -----------------------------------------------------------------------------
    def get(self, path: str, default: Any = None) -> Any:
        """The value held for ``path`` (plain Python), or ``default``."""
        pid = self.paths.get(path)
        value = None if pid is None else self.values.get(pid)
        return default if value is None else value.to_python()

    def as_dict(self, prefix: str = "") -> dict[str, Any]:
        """Every value whose path starts with ``prefix``."""
        return {self.names[pid]: v.to_python() for pid, v in sorted(self.values.items())
                if pid in self.names and self.names[pid].startswith(prefix)}

    def subscribe(self, prefix: str, callback: ChangeCallback) -> Callable[[], None]:
        """Call ``callback(path, value, revision, origin)`` for every change under ``prefix``;
        returns a function that ends the subscription."""
        entry = (prefix, callback)
        self._subs.append(entry)

        def off() -> None:
            if entry in self._subs:
                self._subs.remove(entry)
        return off

    def digest(self) -> bytes:
        """blake3 digest (§5) of every value held."""
        return sc.settings_digest(self.values)

    # -- writing -----------------------------------------------------------------------------
    def _path_id(self, path: str) -> int:
        pid = self.paths.get(path)
        if pid is None:
            raise SettingsError(1, "no such setting (the server's path table does not name it)",
                                path)
        return pid

    async def set(self, path: str, value: Any) -> sc.Response:
        """Write one setting and wait for the server's Response (SettingsError on Error)."""
        pid = self._path_id(path)
        resp: sc.Response = await self._request(
            lambda req: sc.Set(req, pid, typed(self.tags[pid], value)), path=path)
        return resp

    async def batch_set(self, values: Mapping[str, Any]) -> sc.Response:
        """Write several settings as one atomic change (all or nothing)."""
        items = [(self._path_id(p), v) for p, v in values.items()]
        resp: sc.Response = await self._request(lambda req: sc.BatchSet(
            req, tuple((pid, typed(self.tags[pid], v)) for pid, v in items)))
        return resp

    async def fetch(self, path: str) -> Any:
        """Ask the server for one setting's stored value (a Get) and return it."""
        pid = self._path_id(path)
        resp = await self._request(lambda req: sc.Get(req, pid), path=path)
        return dict(resp.entries)[pid].to_python()

    async def sync(self, since: int | None = None) -> sc.Response | sc.Snapshot:
        """Catch up from ``since`` (default: the revision held; 0 asks for a Snapshot)."""
        start = self.revision if since is None else since
        resp: sc.Response | sc.Snapshot = await self._request(
            lambda req: sc.Sync(req, start), sync=True)
        return resp

    async def _request(self, build: Callable[[int], sc.SettingsMessage], *, sync: bool = False,
                       path: str | None = None) -> Any:
        req = next(self._req) & 0xFFFFFFFF or next(self._req)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req] = (fut, sync, path)
        try:
            self._send(sc.encode_settings(build(req)))
            while True:
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), self.timeout)
                except TimeoutError:
                    # While disconnected the request waits in the outgoing queue and goes out
                    # after reconnecting: only silence on an open connection is a failure.
                    if self._connected():
                        raise SettingsError(0, f"no reply within {self.timeout:g} s",
                                            path) from None
        finally:
            self._pending.pop(req, None)
            if not fut.done():
                fut.cancel()

    # -- what the server sends ---------------------------------------------------------------
    def expect(self, revision: int, digest_hex: str) -> None:
        """Note ``connection_established.settings``: checked after the next sync reaching it."""
        self._expected = (revision, digest_hex)
        self._check_expected()

    def handle(self, data: bytes) -> None:
        """Handle one kind 0x10 frame from the server."""
        msg = sc.decode_settings(data)
        if isinstance(msg, sc.PathTable):
            for p in msg.paths:
                self.paths[p.path] = p.path_id
                self.tags[p.path_id] = p.tag
                self.names[p.path_id] = p.path
        elif isinstance(msg, sc.Delta):
            if msg.revision > self.revision:
                self._apply(msg.entries, msg.revision, "remote")
        elif isinstance(msg, sc.Snapshot):
            self.digest_checks += 1
            if sc.settings_digest(msg.entries) != msg.digest:
                self.digest_mismatches += 1
                self._error("digest_mismatch", "settings snapshot digest does not match its values")
            self.values.clear()
            self._apply(msg.entries, msg.revision, "sync", force=True)
            self.synced.set()
            self._settle(msg.req, msg)
            self._check_expected()
        elif isinstance(msg, sc.Response):
            pending = self._pending.get(msg.req)
            is_sync = msg.req == 0 or (pending is not None and pending[1])
            if is_sync:
                if msg.revision >= self.revision:
                    self._apply(msg.entries, msg.revision, "sync", force=True)
                self.synced.set()
                self._check_expected()
            elif msg.revision > self.revision or (pending is not None
                                                  and msg.revision == self.revision):
                # also the late reply to a write whose caller stopped waiting (it waited in
                # the outgoing queue while disconnected): the server applied it
                self._apply(msg.entries, msg.revision, "local")
            self._settle(msg.req, msg)
        elif isinstance(msg, sc.Error):
            pending = self._pending.get(msg.req)
            path = pending[2] if pending else None
            self._settle(msg.req, SettingsError(msg.code, msg.message, path))
            if pending is None:
                self._error(SettingsError.name_of(msg.code), msg.message)
        elif isinstance(msg, sc.Ping):
            self._send(sc.encode_settings(sc.Pong(msg.timestamp_ms)))

    def _settle(self, req: int, result: Any) -> None:
        pending = self._pending.get(req)
        if pending is None or pending[0].done():
            return
        if isinstance(result, BaseException):
            pending[0].set_exception(result)
        else:
            pending[0].set_result(result)

    def fail_pending(self, exc: BaseException) -> None:
        """Fail every request waiting for a reply (the client is closing)."""
        for fut, _, _ in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(exc)

    def _apply(self, entries: sc.Entries, revision: int, origin: str, *,
               force: bool = False) -> None:
        if force or revision > self.revision:
            self.revision = revision
        changes: dict[str, Any] = {}
        for pid, value in entries:
            self.values[pid] = value
            path = self.names.get(pid)
            if path is not None:
                changes[path] = value.to_python()
        if not changes:
            return
        for path, plain in changes.items():
            for prefix, cb in list(self._subs):
                if path.startswith(prefix):
                    try:
                        cb(path, plain, revision, origin)
                    except Exception:
                        log.exception("graphwire client: settings callback failed")
        if self.on_change is not None:
            self.on_change(revision, changes, origin)

    def _check_expected(self) -> None:
        exp = self._expected
        if exp is None or exp[0] != self.revision or not self.values:
            return
        self._expected = None
        self.digest_checks += 1
        if self.digest().hex() != exp[1]:
            self.digest_mismatches += 1
            self._error("digest_mismatch", "settings differ from the server's: full sync")
            with contextlib.suppress(RuntimeError):  # no running loop: the next sync will do
                task = asyncio.get_running_loop().create_task(self._resync())
                self._resyncs.add(task)  # held until done: the loop keeps only a weak reference
                task.add_done_callback(self._resyncs.discard)

    async def _resync(self) -> None:
        with contextlib.suppress(SettingsError):
            await self.sync(0)

    def _error(self, code: str, message: str) -> None:
        if self.on_error is not None:
            self.on_error(code, message)
