"""The rate limiter without sockets: buckets, violations, bans, decay, cleanup (§10), driven
through the clock it accepts."""

from __future__ import annotations

import dataclasses

import pytest

from graphwire.server.live_settings import Limits
from graphwire.server.rate_limit import RateLimiter, TokenBucket, new_bucket


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_refills_continuously_and_tells_the_real_wait() -> None:
    b = TokenBucket(rate=5.0, burst=2.0)  # 300/min
    assert b.take(0.0) and b.take(0.0) and not b.take(0.0)
    assert b.retry_after(0.0) == pytest.approx(0.2)  # one token in 1/5 s, never a rounded 0
    assert not b.take(0.1)
    assert b.retry_after(0.1) == pytest.approx(0.1)
    assert b.take(0.2)
    assert b.remaining(10.0) == 2  # refills up to the burst, not past it
    b.reconfigure(rate=1.0, burst=1.0)
    assert b.remaining(10.0) == 1  # tokens kept, capped at the new burst


def test_default_limits_are_the_schema_defaults() -> None:
    limits = Limits.from_settings()
    assert limits.as_json() == {"positions": {"perMinute": 300, "burst": 50},
                                "settings": {"perMinute": 600, "burst": 60},
                                "control": {"perMinute": 120, "burst": 20}}
    assert (limits.ban_threshold, limits.violation_window, limits.ban_duration) == (10, 60, 600)
    assert new_bucket(limits, "control").rate == pytest.approx(2.0)


def test_violations_count_once_a_second_per_class_and_ban_at_the_threshold() -> None:
    clock = Clock()
    limits = dataclasses.replace(Limits.from_settings(), ban_threshold=3)
    rl = RateLimiter(limits, auth=True, clock=clock)
    who = "token:abc"
    first = rl.violation(who, "control", 0.5)
    assert first.counted and not first.banned_now
    assert not rl.violation(who, "control", 0.5).counted  # same class, same second
    assert rl.violation(who, "positions", 0.5).counted  # another class counts
    clock.now += 1.0
    verdict = rl.violation(who, "control", 0.5)
    assert verdict.counted and verdict.banned_now
    assert rl.banned_for(who) == pytest.approx(600.0)
    clock.now += 599.0
    assert rl.banned_for(who) == pytest.approx(1.0)
    clock.now += 1.5
    assert rl.banned_for(who) == 0.0  # a ban is never permanent
    assert rl.violations == 3


def test_violations_leave_the_window() -> None:
    clock = Clock()
    rl = RateLimiter(dataclasses.replace(Limits.from_settings(), ban_threshold=2), auth=True,
                     clock=clock)
    rl.violation("token:x", "control", 1.0)
    clock.now += 61.0  # the first violation left the 60 s window
    assert not rl.violation("token:x", "control", 1.0).banned_now
    clock.now += 1.0
    assert rl.violation("token:x", "control", 1.0).banned_now


def test_loopback_is_exempt_only_without_auth() -> None:
    limits = dataclasses.replace(Limits.from_settings(), ban_threshold=1)
    assert not RateLimiter(limits, clock=Clock()).violation("127.0.0.1", "control", 1).banned_now
    assert not RateLimiter(limits, clock=Clock()).violation("::1", "control", 1).banned_now
    assert RateLimiter(limits, clock=Clock()).violation("203.0.113.9", "control", 1).banned_now
    assert RateLimiter(limits, auth=True, clock=Clock()).violation(
        "127.0.0.1", "control", 1).banned_now


def test_http_buckets_per_identity_and_reconfigure() -> None:
    clock = Clock()
    limits = dataclasses.replace(Limits.from_settings(), burst={"positions": 1, "settings": 1,
                                                                "control": 2})
    rl = RateLimiter(limits, clock=clock)
    assert [rl.http_take("a", "control")[0] for _ in range(3)] == [True, True, False]
    assert rl.http_take("b", "control")[0]  # another identity has its own bucket
    rl.reconfigure(dataclasses.replace(limits, per_minute={**limits.per_minute,
                                                           "control": 6000}))
    clock.now += 0.015  # 100/s: a token back
    assert rl.http_take("a", "control")[0]


def test_idle_state_is_dropped_but_bans_are_kept() -> None:
    clock = Clock()
    rl = RateLimiter(dataclasses.replace(Limits.from_settings(), ban_threshold=1,
                                         ban_duration=3600.0), auth=True, clock=clock)
    rl.http_take("idle", "control")
    rl.violation("banned", "control", 1.0)
    assert len(rl) == 2
    clock.now += 601.0  # idleTimeoutMs 10 min
    assert rl.cleanup() == 1 and len(rl) == 1
    assert rl.banned_for("banned") > 0
