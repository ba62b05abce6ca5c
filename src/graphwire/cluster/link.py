"""One process's connection to the cluster's Redis: fenced writes, ordered subscriptions,
command and reply plumbing, and an honest account of whether Redis is reachable.

Redis being down is a normal state, not a crash: every loop here catches connection errors,
marks the link down (``up`` is False, ``errors`` counts, the reason is logged once per outage),
retries with a capped backoff, and on reconnecting re-subscribes and calls the owner's
``on_reconnect`` hooks so it can catch up on what it missed (pub/sub messages published while a
subscriber is away are gone; the last frames and the settings log are kept in keys and streams
for exactly this).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .keys import Keys
from .lease import FENCED_PUBLISH, Lease, LeaseLostError

log = logging.getLogger("graphwire.cluster")

RECONNECT_MIN = 0.1
RECONNECT_MAX = 2.0
"""Backoff between attempts to reach Redis: short, because clients wait on it, capped low
because a reconnect attempt costs one TCP connect."""

COMMANDS_MAXLEN = 10_000
"""Commands kept in the command stream (older ones are stale anyway: callers time out)."""

SETTINGS_LOG_MAXLEN = 10_000
"""Settings change sets kept in the Redis log: a process further behind loads the full state."""

_FENCED_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
                      'rev', ARGV[2], 'delta', ARGV[3], 'origin', ARGV[4])
redis.call('HSET', KEYS[3], 'revision', ARGV[2])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
return id
"""
"""KEYS: lease, settings log, settings state; ARGV: lease value, revision, Delta body, origin,
log length, then path id / encoded value pairs. -1 when the caller lost the lease."""

_FENCED_SET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

Handler = Callable[[bytes], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]


CANCEL_GRACE = 1.0
"""Seconds :meth:`Link.close` gives cancelled loops before it closes their connections."""
CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`Link.close` then waits for them, each round, before it gives up on them."""


def _raise_if_cancelling(exc: BaseException) -> None:
    """Re-raise a cancellation that redis-py turned into an error.

    A task cancelled while redis-py waits under its own timeout can see the cancellation come
    out as a Redis ``TimeoutError`` (Python 3.11's ``asyncio.timeout`` loses an outside
    cancel that races its expiry); a loop that retries on Redis errors would then run on,
    cancelled, for ever. The task still counts the cancellation (``cancelling()``), so it is
    raised again here."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError() from exc


class RedisDownError(Exception):
    """Redis cannot be reached now (the operation may be retried later)."""


class RedisConfigError(Exception):
    """Redis answers, and says this URL can never work (a database index it does not have, a
    refused password): retrying would wait for ever."""


class Link:
    """A Redis connection shared by one process's cluster parts."""

    def __init__(self, url: str, keys: Keys | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.keys = keys or Keys()
        # one immediate retry on a fresh connection: after a Redis restart every pooled
        # connection is dead, and the first use of each would otherwise fail
        self.redis: Redis = Redis.from_url(
            url, socket_connect_timeout=1.0, socket_timeout=5.0, health_check_interval=5,
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError, RedisTimeoutError])
        # subscriptions do not retry inside redis-py: an outage must reach our loop, which
        # re-subscribes and runs the catch-up hooks (messages published meanwhile are gone)
        self._subscriber: Redis = Redis.from_url(
            url, socket_connect_timeout=1.0, health_check_interval=5,
            retry=Retry(NoBackoff(), 0))
        self.clock = clock
        self.up = False
        self.errors = 0  # operations that failed because Redis could not be reached
        self.outages = 0  # times the link went from up to down
        self.last_error = ""
        self.down_since: float | None = None
        self.on_reconnect: list[Hook] = []
        self.subscribed = asyncio.Event()  # set while the subscriptions listen
        self._tasks: list[asyncio.Task[Any]] = []

    # -- state --------------------------------------------------------------------------------
    def mark_up(self) -> None:
        """Redis answered."""
        if not self.up:
            if self.down_since is not None:
                log.warning("redis: reachable again at %s after %.1f s", self.url,
                            self.clock() - self.down_since)
            self.up = True
            self.down_since = None

    def mark_down(self, exc: BaseException) -> None:
        """Redis did not answer: count it; log once per outage."""
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.up or self.down_since is None:
            self.outages += 1 if self.up else 0
            log.warning("redis: unreachable at %s (%s); clients stay connected, retrying",
                        self.url, self.last_error)
            self.down_since = self.clock()
        self.up = False

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` and the metrics say about Redis."""
        out: dict[str, Any] = {"up": self.up, "errors": self.errors, "outages": self.outages}
        if not self.up:
            out["lastError"] = self.last_error
            if self.down_since is not None:
                out["downForMs"] = int((self.clock() - self.down_since) * 1000)
        return out

    async def call(self, op: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Redis operation; RedisDownError when Redis cannot be reached."""
        try:
            out = await op()
        except (RedisError, OSError) as exc:
            _raise_if_cancelling(exc)
            self.mark_down(exc)
            raise RedisDownError(self.last_error) from exc
        self.mark_up()
        return out

    async def check(self) -> None:
        """At start: RedisConfigError when Redis answers that the URL can never work. Redis
        not being up (yet) is no error here: every part retries until it is."""
        try:
            await self.redis.ping()
        except (ResponseError, AuthenticationError) as exc:
            raise RedisConfigError(f"--redis {self.url}: {exc}") from None
        except (RedisError, OSError):
            return

    # -- fenced writes ------------------------------------------------------------------------
    async def _fenced(self, lease: Lease, script: str, keys: list[str], *args: Any) -> Any:
        """Run a script that writes only while ``lease`` holds (its first key is the lease,
        its first argument the lease's value; it answers -1 when the lease is gone):
        LeaseLostError then, RedisDownError if Redis cannot be reached."""
        if lease.token is None:
            raise LeaseLostError("no lease held")
        out = await self.call(lambda: self.redis.eval(
            script, len(keys) + 1, self.keys.lease, *keys, lease.value, *args))
        if isinstance(out, int) and out < 0:
            raise LeaseLostError(f"lease {lease.value} is gone")
        return out

    async def publish(self, lease: Lease, message: bytes, *, keep: str | None = None) -> int:
        """Publish on the stream channel if ``lease`` still holds (and keep the message under
        ``keep``); LeaseLostError if not, RedisDownError if Redis cannot be reached."""
        k = self.keys
        return int(await self._fenced(lease, FENCED_PUBLISH, [k.stream, keep or k.stream],
                                      message, "1" if keep else "0"))

    async def fenced_set(self, lease: Lease, key: str, value: bytes) -> None:
        """SET ``key`` if ``lease`` still holds; LeaseLostError if not."""
        await self._fenced(lease, _FENCED_SET, [key], value)

    async def commit_settings(self, lease: Lease, revision: int, delta: bytes, origin: str,
                              values: list[tuple[int, bytes]]) -> None:
        """Append a committed change set to the settings log and state, fenced."""
        args: list[Any] = [revision, delta, origin, SETTINGS_LOG_MAXLEN]
        for pid, value in values:
            args += [pid, value]
        await self._fenced(lease, _FENCED_COMMIT, [self.keys.settings_log,
                                                   self.keys.settings_state], *args)

    # -- subscriptions ------------------------------------------------------------------------
    def subscribe(self, channels: list[str], handler: Handler) -> asyncio.Task[None]:
        """Call ``handler`` with every message on ``channels``, one at a time, in order,
        across reconnects (after each reconnect the ``on_reconnect`` hooks run first)."""
        task = asyncio.ensure_future(self._subscription(channels, handler))
        self._tasks.append(task)
        return task

    async def _subscription(self, channels: list[str], handler: Handler) -> None:
        delay = RECONNECT_MIN
        first = True
        while True:
            pubsub = self._subscriber.pubsub()
            try:
                await pubsub.subscribe(*channels)
                self.mark_up()
                self.subscribed.set()
                delay = RECONNECT_MIN
                if not first:
                    for hook in list(self.on_reconnect):
                        await hook()
                first = False
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        await handler(bytes(message["data"]))
                    except (RedisError, OSError):
                        raise
                    except Exception:  # one bad message must not end the subscription
                        log.exception("cluster: a message could not be handled")
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                _raise_if_cancelling(exc)
                self.subscribed.clear()
                self.mark_down(exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            first = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run a loop that belongs to this link (cancelled by :meth:`close`)."""
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        return task

    async def close(self) -> None:
        """Stop every loop and close the connection pools.

        A loop may spawn another as it ends (a simulation standing down starts its settings
        replica): those are stopped too, round after round. A loop can also outlive its
        cancellation inside redis-py, which may turn it into a connection error, retry, and
        wait on a fresh connection: such a loop is cancelled again, once its connections are
        closed. A cancellation of ``close`` itself propagates."""
        while self._tasks:
            tasks, self._tasks = self._tasks, []
            for task in tasks:
                task.cancel()
            pending = await settle_tasks(tasks, CANCEL_GRACE)
            if pending:
                await self._close_pools()
                for task in pending:
                    task.cancel()
                pending = await settle_tasks(pending, CLOSE_TIMEOUT)
            if pending:  # a shutdown must end: log what did not stop and go on
                log.warning("redis: %d loops did not stop in %.0f s: %s", len(pending),
                            CLOSE_TIMEOUT, ", ".join(t.get_name() for t in pending))
        await self._close_pools()

    async def _close_pools(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        with contextlib.suppress(Exception):
            await self._subscriber.aclose()


async def settle_tasks(tasks: list[asyncio.Task[Any]] | set[asyncio.Task[Any]],
                       seconds: float) -> set[asyncio.Task[Any]]:
    """Wait up to ``seconds`` for tasks to end; collect how each ended (so asyncio does not
    report it again); the tasks still running."""
    done, pending = await asyncio.wait(tasks, timeout=seconds)
    for task in done:
        _collect(task)
    for task in pending:  # ending later (a step in a thread): collected then
        task.add_done_callback(_collect)
    return pending


def _collect(task: asyncio.Task[Any]) -> None:
    """Take a finished task's exception, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
