"""Rate limits (docs/protocol.md §10): token buckets, violations per identity, bans.

- A :class:`TokenBucket` refills continuously (fractional tokens), so 300/min really is 5 a
  second and ``retry_after`` is the real wait, never a rounded 0.
- Buckets belong to a connection and a class (``positions``, ``settings``, ``control``); over
  HTTP to an identity and a route class.
- A dropped message is a *violation* of its class for the connection's identity, counted at most
  once a second per class. ``banThreshold`` violations inside a sliding window ban the identity
  for ``banDurationMs``. Violations decay: they leave the window, so a ban is never permanent.
- Without auth a loopback address is never banned (it is still limited).
- State idle for ``idleTimeoutMs`` is dropped.

Pure: time comes from a clock function, so the tests drive it.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .live_settings import RATE_CLASSES, Limits

Clock = Callable[[], float]
__all__ = ["RATE_CLASSES", "Limits", "RateLimiter", "TokenBucket", "Verdict", "new_bucket"]


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second up to ``burst``, refilled continuously."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def _refill(self, now: float) -> None:
        if self.tokens < 0:  # a new bucket starts full
            self.tokens, self.stamp = self.burst, now
            return
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are enough."""
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def retry_after(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are there (0 if they are now)."""
        self._refill(now)
        missing = cost - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def remaining(self, now: float) -> int:
        """Whole tokens left now."""
        self._refill(now)
        return int(self.tokens)

    def reconfigure(self, rate: float, burst: float) -> None:
        """New limits; tokens already there are kept (up to the new burst)."""
        self.rate, self.burst = rate, burst
        self.tokens = min(self.tokens, burst)


def new_bucket(limits: Limits, cls: str) -> TokenBucket:
    """A fresh (full) bucket for a rate class."""
    return TokenBucket(limits.rate(cls), float(limits.burst[cls]))


@dataclass(slots=True)
class _Identity:
    violations: deque[float] = field(default_factory=deque)
    last_violation: dict[str, float] = field(default_factory=dict)
    banned_until: float = 0.0
    seen: float = 0.0
    http: dict[str, TokenBucket] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happened to one over-limit message."""

    retry_after: float  # seconds until the bucket has a token again
    counted: bool  # counted as a violation (at most one a second per class)
    banned_now: bool  # this violation banned the identity


def is_loopback(identity: str) -> bool:
    """Whether an identity is a loopback address."""
    try:
        return ipaddress.ip_address(identity.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class RateLimiter:
    """Violations and bans per identity, HTTP buckets per identity and class."""

    def __init__(self, limits: Limits | None = None, *, auth: bool = False,
                 clock: Clock = time.monotonic) -> None:
        self.limits = limits or Limits.from_settings()
        self.auth = auth
        self.clock = clock
        self._ids: dict[str, _Identity] = {}
        self.violations = 0  # violations counted (at most one a second per class and identity)

    def _get(self, identity: str, now: float) -> _Identity:
        st = self._ids.get(identity)
        if st is None:
            st = self._ids[identity] = _Identity()
        st.seen = now
        return st

    def banned_for(self, identity: str) -> float:
        """Seconds the identity stays banned (0 if it is not)."""
        st = self._ids.get(identity)
        if st is None:
            return 0.0
        return max(0.0, st.banned_until - self.clock())

    def violation(self, identity: str, cls: str, retry_after: float) -> Verdict:
        """Record that a message of ``cls`` from ``identity`` was over its limit."""
        now = self.clock()
        st = self._get(identity, now)
        if now - st.last_violation.get(cls, -1e18) < 1.0:
            return Verdict(retry_after, False, False)
        st.last_violation[cls] = now
        st.violations.append(now)
        self.violations += 1
        window = self.limits.violation_window
        while st.violations and st.violations[0] <= now - window:
            st.violations.popleft()
        exempt = not self.auth and is_loopback(identity)
        if (not exempt and len(st.violations) >= self.limits.ban_threshold
                and st.banned_until <= now):
            st.banned_until = now + self.limits.ban_duration
            st.violations.clear()
            return Verdict(retry_after, True, True)
        return Verdict(retry_after, True, False)

    def http_bucket(self, identity: str, cls: str) -> TokenBucket:
        """An identity's HTTP bucket of a class (created full)."""
        st = self._get(identity, self.clock())
        bucket = st.http.get(cls)
        if bucket is None:
            bucket = st.http[cls] = new_bucket(self.limits, cls)
        return bucket

    def http_take(self, identity: str, cls: str) -> tuple[bool, TokenBucket]:
        """Take a token from an identity's HTTP bucket of a class."""
        bucket = self.http_bucket(identity, cls)
        return bucket.take(self.clock()), bucket

    def reconfigure(self, limits: Limits) -> None:
        """New limits for every identity's HTTP buckets (connections reconfigure their own)."""
        self.limits = limits
        for st in self._ids.values():
            for cls, bucket in st.http.items():
                bucket.reconfigure(limits.rate(cls), float(limits.burst[cls]))

    def cleanup(self) -> int:
        """Drop identities idle for ``idle_timeout`` and not banned; returns how many."""
        now = self.clock()
        idle = [k for k, st in self._ids.items()
                if now - st.seen > self.limits.idle_timeout and st.banned_until <= now]
        for k in idle:
            del self._ids[k]
        return len(idle)

    def __len__(self) -> int:
        return len(self._ids)
