"""Settings across the cluster: one writer of revisions, replicas everywhere else.

**The design.** The simulation that holds the lease is the only process that assigns revisions.
A gateway forwards every settings write to it (a command); the holder validates, commits to its
SQLite file (on disk), appends the change set to the Redis settings log and state with a fenced
script, and only then replies; the gateway answers its client after its own mirror has applied
that revision. So an acknowledged write is on the writer's disk and in Redis: losing any gateway
loses nothing, and a standby simulation (which tails the log into its own SQLite file) or the
Redis state hands it to the next writer. Revisions are totally ordered because there is one
writer at a time, and the lease's fencing token stops a deposed writer from appending.

Replicas (gateways' in-memory mirrors, standby simulations' files) tail the log in revision
order; one that finds a gap (it was disconnected longer than the log keeps, or Redis restarted)
loads the full state from the ``settings:state`` hash instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from graphwire.protocol import settings_codec as sc
from graphwire.protocol.settings_codec import Value, decode_value
from graphwire.settings import ChangeSet, SettingsService

from .lease import Lease, LeaseLostError
from .link import Link, RedisDownError

log = logging.getLogger("graphwire.cluster")


async def load_paths(link: Link) -> dict[str, int]:
    """The writer's path ids (empty before any simulation took the lease)."""
    raw = await link.call(lambda: link.redis.hgetall(link.keys.settings_paths))
    return {k.decode(): int(v) for k, v in raw.items()}


async def load_state(link: Link) -> tuple[int, dict[int, Value]] | None:
    """The committed state in Redis (revision, values), or None when there is none."""
    raw = await link.call(lambda: link.redis.hgetall(link.keys.settings_state))
    if b"revision" not in raw:
        return None
    values = {int(k): decode_value(v) for k, v in raw.items() if k != b"revision"}
    return int(raw[b"revision"]), values


class SettingsWriter:
    """The lease holder's side: every committed change set goes to the Redis log, in order."""

    def __init__(self, link: Link, lease: Lease, service: SettingsService) -> None:
        self.link = link
        self.lease = lease
        self.service = service
        self._queue: asyncio.Queue[ChangeSet] = asyncio.Queue()
        self._done: dict[int, asyncio.Future[None]] = {}
        self.appended = 0
        service.subscribe(self._committed)
        self._task = link.spawn(self._append_loop())

    async def take_over(self) -> None:
        """On taking the lease: make Redis and this writer agree, then publish the path ids.

        Redis wins when it holds a later revision (this process was a replica that missed the
        tail); otherwise this writer's full state is written to Redis (Redis restarted empty,
        or the first start)."""
        svc = self.service
        await self.link.call(lambda: self.link.redis.hset(
            self.link.keys.settings_paths, mapping={p: i for p, i in svc.id_of.items()}))
        state = await load_state(self.link)
        if state is not None and state[0] > svc.revision:
            svc.adopt(state[0], state[1])
            return
        # the whole state, and an empty change set in the log: replicas behind it reload
        values = [(pid, v.encode()) for pid, v in sorted(svc.values.items())]
        delta = sc.encode_body(sc.Delta(svc.revision, ()))
        await self.link.commit_settings(self.lease, svc.revision, delta, "", values)

    def _committed(self, change: ChangeSet) -> None:
        if self.lease.token is not None:  # a standby's replica applies the holder's changes
            self._queue.put_nowait(change)

    def appended_future(self, revision: int) -> asyncio.Future[None]:
        """Resolves once change set ``revision`` is in the Redis log."""
        fut = self._done.get(revision)
        if fut is None:
            fut = self._done[revision] = asyncio.get_running_loop().create_future()
        return fut

    async def _append_loop(self) -> None:
        while True:
            change = await self._queue.get()
            # a write forwarded by a gateway carries its tag, so that gateway answers its
            # writer with the Response instead of a Delta
            origin = change.origin if isinstance(change.origin, str) else ""
            values = [(pid, v.encode()) for pid, v in change.entries]
            delta = sc.encode_body(sc.Delta(change.revision, change.entries))
            while True:
                try:
                    await self.link.commit_settings(self.lease, change.revision, delta,
                                                    origin, values)
                except RedisDownError:
                    await asyncio.sleep(0.2)  # kept in order; retried until Redis is back
                except LeaseLostError as exc:
                    self._fail(change.revision, exc)  # not appended, and not counted
                    break
                else:
                    self.appended += 1
                    fut = self.appended_future(change.revision)
                    if not fut.done():
                        fut.set_result(None)
                    self._done.pop(change.revision, None)
                    break

    def _fail(self, revision: int, exc: Exception) -> None:
        fut = self.appended_future(revision)
        if not fut.done():
            fut.set_exception(exc)
        self._done.pop(revision, None)


class SettingsReplica:
    """A gateway's mirror or a standby's copy: applies the writer's change sets in order."""

    def __init__(self, link: Link, service: SettingsService,
                 origin_of: Callable[[str], object | None] = lambda _: None) -> None:
        self.link = link
        self.service = service
        self.origin_of = origin_of
        self.last_id = "0-0"
        self.reloads = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Tail the log (catching up from the start of what Redis keeps)."""
        self._task = self.link.spawn(self._tail())

    def stop(self) -> None:
        """Stop tailing (a standby that became the writer)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def reached(self, revision: int) -> None:
        """Wait until the mirror holds ``revision`` (bound it with ``asyncio.timeout``)."""
        if self.service.revision >= revision:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        await fut

    def _wake(self) -> None:
        rev = self.service.revision
        keep = []
        for want, fut in self._waiters:
            if want <= rev:
                if not fut.done():
                    fut.set_result(None)
            elif not fut.done():
                keep.append((want, fut))
        self._waiters = keep

    async def reload(self) -> None:
        """Take the full state from Redis (a gap, or Redis restarted)."""
        state = await load_state(self.link)
        if state is not None and state[0] != self.service.revision:
            self.reloads += 1
            self.service.adopt(state[0], state[1])
            self._wake()

    async def _tail(self) -> None:
        log_key = self.link.keys.settings_log
        while True:
            try:
                if self.last_id == "0-0":
                    await self.reload()
                batch = await self.link.call(lambda: self.link.redis.xread(
                    {log_key: self.last_id}, count=500, block=1000))
            except RedisDownError:
                await asyncio.sleep(0.2)
                self.last_id = "0-0"  # Redis may come back empty: start over from the state
                continue
            for _stream, entries in batch or []:
                for entry_id, fields in entries:
                    self.last_id = entry_id.decode()
                    await self._apply(fields)

    async def _apply(self, fields: dict[bytes, bytes]) -> None:
        revision = int(fields[b"rev"])
        msg = sc.decode_body(fields[b"delta"])
        if not isinstance(msg, sc.Delta):
            return
        origin = self.origin_of(fields.get(b"origin", b"").decode())
        if not msg.entries:
            # a writer's full state marker: reload when it is ahead of this mirror
            if revision > self.service.revision:
                await self.reload()
            return
        if not self.service.apply_committed(revision, msg.entries, origin):
            await self.reload()
            return
        self._wake()
