"""Reconnect delays (docs/protocol.md §10): exponential from 1 s doubling to 30 s, with full jitter.

Full jitter draws each delay uniformly from ``[0, cap)``, where the cap doubles with every failed
attempt. Clients that lost the same server (it restarted) therefore come back spread over the
window instead of all at once, which is what keeps a restarted server from being flattened by
its own clients.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before reconnect attempt ``attempt`` (0 for the first).

    ``base`` (1 s) is the first cap, doubled per attempt up to ``cap`` (30 s). ``max_attempts``
    (None: try forever) stops the client with :class:`~graphwire.client.errors.ConnectError`
    after that many failed attempts in a row.
    """

    base: float = 1.0
    cap: float = 30.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("backoff needs 0 < base <= cap")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None: forever)")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before ``attempt``: ``min(cap, base × 2^attempt)``."""
        return min(self.cap, self.base * 2.0 ** min(max(attempt, 0), 60))

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """A delay drawn uniformly from ``[0, ceiling(attempt))`` (full jitter)."""
        return rand() * self.ceiling(attempt)
