"""The connections registry without sockets: client ids, resume windows, bans, broadcast."""

from __future__ import annotations

from typing import Any

from graphwire.server.connections import Connections
from graphwire.server.metrics import Metrics


class Conn:
    """A connection as the registry sees it: records what it is handed."""

    def __init__(self, client_id: str, identity: str = "203.0.113.1") -> None:
        self.client_id = client_id
        self.identity = identity
        self.sent: list[Any] = []
        self.finished: tuple[int, str] | None = None
        self.closed: tuple[int, str] | None = None

    def send_json(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    def finish(self, code: int, reason: str = "") -> None:
        self.finished = (code, reason)

    def close(self, code: int, reason: str = "") -> None:
        self.closed = (code, reason)


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_a_closed_id_may_resume_within_its_window_only() -> None:
    clock = Clock()
    reg = Connections(Metrics(), clock)
    cid, resumed = reg.claim_id(None)
    assert not resumed and len(cid) >= 16
    assert reg.claim_id("never-seen")[1] is False
    first = Conn(cid)
    assert reg.add(first) is None
    assert reg.claim_id(cid) == (cid, True)  # still open: the new one replaces it
    assert reg.remove(first, resume_window=600.0)
    clock.now += 599.0
    assert reg.claim_id(cid) == (cid, True)
    clock.now += 2.0
    assert reg.claim_id(cid)[1] is False
    assert reg.expire() == 1 and reg.resume_deadlines == {}


def test_a_replaced_connection_leaves_its_successor_registered() -> None:
    metrics = Metrics()
    reg = Connections(metrics)
    old, new = Conn("x"), Conn("x")
    reg.add(old)
    assert reg.add(new) is old
    assert not reg.remove(old, 600.0)  # the newer one holds the id
    assert reg.open == {"x": new} and "x" not in reg.resume_deadlines
    assert metrics.connections == 1 and metrics.connections_total == 2


def test_a_ban_reaches_every_connection_of_the_identity_after_what_is_queued() -> None:
    metrics = Metrics()
    reg = Connections(metrics)
    a, b, other = Conn("a", "token:t"), Conn("b", "token:t"), Conn("c", "token:u")
    for c in (a, b, other):
        reg.add(c)
    assert reg.ban("token:t", retry_after_ms=600_000) == 2
    for c in (a, b):
        assert c.sent[-1]["error"]["code"] == "banned"
        assert c.sent[-1]["error"]["retryAfterMs"] == 600_000
        assert c.finished == (1008, "banned") and c.closed is None  # queued first, then closed
    assert other.sent == [] and other.finished is None and metrics.bans == 1


def test_broadcasts_hand_the_same_bytes_to_each() -> None:
    reg = Connections(Metrics())
    conns = [Conn(str(i)) for i in range(3)]
    for c in conns:
        reg.add(c)
    data = b"\x10\x00\x05"
    assert reg.broadcast_bytes(data, exclude=conns[0]) == 2
    assert conns[0].sent == [] and all(c.sent[0] is data for c in conns[1:])
    reg.send_to(["2", "gone"], b"sssp")
    assert conns[2].sent[-1] == b"sssp" and len(conns[1].sent) == 1
    reg.broadcast_json({"type": "graph_changed"})
    assert all(c.sent[-1] == {"type": "graph_changed"} for c in conns)
    reg.close_all(1001, "bye")
    assert all(c.closed == (1001, "bye") for c in conns)
