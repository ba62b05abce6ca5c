"""The simulation lease: one holder at a time, renewed, expiring, fenced by a token.

The lease is one Redis key, ``<namespace>:lease``, whose value is ``"<token>:<holder>"`` and
which expires ``ttl`` after its last renewal. Taking it raises the fencing counter
(``<namespace>:fence``) and stores the new token, atomically (a Lua script). Every write of the
holder to the cluster (envelopes, settings commits) goes through a script that first checks the
lease still holds *its* value: a holder paused past its expiry (GC, SIGSTOP, a partition) finds
its token gone when it wakes, and its writes are refused inside Redis, so two simulations never
publish interleaved.

``ttl`` (default 2.5 s) bounds how long the cluster runs without a simulation after the holder
dies without releasing; renewal every ``ttl / 3`` survives two lost renewals. A standby tries
every ``ttl / 10``, so it takes the lease at most ``ttl + ttl / 10`` after the holder's last
renewal (the issue's budget is 5 s from the kill to the first frame of the new epoch, and the
takeover itself, placing 10,000 nodes and encoding their first keyframes, takes about a second
on a loaded 2-core machine).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from .keys import Keys

DEFAULT_TTL = 2.5
"""Seconds a lease lives without renewal; the worst-case takeover time is about this."""

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

FENCED_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if ARGV[3] == '1' then redis.call('SET', KEYS[3], ARGV[2]) end
return redis.call('PUBLISH', KEYS[2], ARGV[2])
"""
"""KEYS: lease, channel, key to keep the message in; ARGV: lease value, message, keep (1/0).
Returns -1 when the caller no longer holds the lease (nothing published)."""


class LeaseLostError(Exception):
    """A write was refused: this process no longer holds the lease."""


@dataclass(slots=True)
class Lease:
    """One process's claim on the simulation lease."""

    redis: Redis
    keys: Keys
    holder: str
    ttl: float = DEFAULT_TTL
    token: int | None = None

    @property
    def value(self) -> str:
        """The lease key's value while held (what fenced scripts check)."""
        return f"{self.token}:{self.holder}"

    @property
    def renew_interval(self) -> float:
        """How often the holder renews."""
        return self.ttl / 3

    @property
    def retry_interval(self) -> float:
        """How often a standby tries to take the lease."""
        return self.ttl / 10

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; on success ``token`` is the new fencing token."""
        token = await self._eval(_ACQUIRE, [self.keys.lease, self.keys.fence],
                                 [self.holder, int(self.ttl * 1000)])
        if int(token) == 0:
            return False
        self.token = int(token)
        return True

    async def acquire(self) -> None:
        """Wait until this process holds the lease (a standby's wait), trying every
        ``retry_interval``; errors reaching Redis propagate (the caller decides to retry)."""
        while True:
            if await self.try_acquire():
                return
            await asyncio.sleep(self.retry_interval)

    async def renew(self) -> bool:
        """Extend the lease; False when it was lost (expired and maybe taken by another)."""
        if self.token is None:
            return False
        ok = await self._eval(_RENEW, [self.keys.lease], [self.value, int(self.ttl * 1000)])
        if int(ok) != 1:
            self.token = None
            return False
        return True

    async def release(self) -> None:
        """Give the lease up at once (a clean shutdown), so a standby need not wait the ttl."""
        if self.token is not None:
            await self._eval(_RELEASE, [self.keys.lease], [self.value])
            self.token = None

    async def holder_now(self) -> str | None:
        """Who holds the lease now (``"<token>:<holder>"``), or None."""
        value = await self.redis.get(self.keys.lease)
        return None if value is None else (value.decode() if isinstance(value, bytes) else value)

    async def _eval(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return await self.redis.eval(script, len(keys), *keys, *args)
