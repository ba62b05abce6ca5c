"""The BatchQueue (§4.8, §10): batching, replacement, priority, validation, bounds, retry; and
its acknowledgements from the real server."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from graphwire.client import BatchQueue, Client
from graphwire.protocol.client_positions import decode_client_positions

from .conftest import Harness


class Wire:
    """A send function that keeps what it was handed (or refuses, when ``up`` is False)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.up = True
        self.called = asyncio.Event()

    def __call__(self, frame: bytes, batch: int) -> bool:
        self.called.set()
        if self.up:
            self.frames.append(frame)
        return self.up

    async def next_call(self) -> None:
        """Wait for the queue's next attempt to send."""
        self.called.clear()
        async with asyncio.timeout(2):
            await self.called.wait()

    def batches(self) -> list[tuple[int, list[int], np.ndarray]]:
        out = []
        for f in self.frames:
            b = decode_client_positions(f)
            out.append((b.batch, b.ids.tolist(), b.pos))
        return out


async def test_batches_of_50_and_the_flush_interval() -> None:
    wire = Wire()
    q = BatchQueue(wire, flush_interval=0.05)
    for i in range(120):
        assert q.enqueue(i, i, 0, 0) is None
    sizes = [len(ids) for _, ids, _ in wire.batches()]
    assert sizes == [50, 50]  # each whole batch goes out at once
    await asyncio.sleep(0.15)  # the remaining 20 wait for the flush interval
    assert [len(ids) for _, ids, _ in wire.batches()] == [50, 50, 20]
    assert [b for b, _, _ in wire.batches()] == [1, 2, 3]
    assert q.counters.queued == 120 and q.counters.sent == 120 and q.counters.batches == 3
    q.close()


async def test_the_newest_update_of_a_node_replaces_the_older() -> None:
    wire = Wire()
    q = BatchQueue(wire, flush_interval=10)
    q.enqueue(1, 1, 1, 1)
    q.enqueue(2, 2, 2, 2)
    q.enqueue(1, 9, 9, 9)
    q.flush()
    ((_, ids, pos),) = wire.batches()
    assert ids == [1, 2]  # node 1 keeps its place, with its newest position
    assert pos[0].tolist() == [9, 9, 9]
    assert q.counters.replaced == 1 and q.counters.sent == 2
    q.close()


async def test_agent_nodes_go_first() -> None:
    wire = Wire()
    agents = {7, 8}
    q = BatchQueue(wire, flush_interval=10, batch_size=3, is_agent=agents.__contains__)
    for i in (1, 2, 7, 3, 8):
        q.enqueue(i, 0, 0, 0)
    assert wire.batches()[0][1] == [7, 1, 2]  # a whole batch was waiting at the third
    q.flush()
    assert wire.batches()[1][1] == [8, 3]
    q.close()


async def test_invalid_items_are_rejected_before_queuing_and_reported() -> None:
    wire = Wire()
    reported: list[tuple[int, str]] = []
    q = BatchQueue(wire, bounds=lambda: 100.0, is_known=lambda i: i < 10,
                   on_reject=lambda i, r: reported.append((i, r)), flush_interval=10)
    assert q.enqueue(1, math.nan, 0, 0) == "not_finite"
    assert q.enqueue(1, math.inf, 0, 0) == "not_finite"
    assert q.enqueue(1, 0, 101, 0) == "out_of_bounds"
    assert q.enqueue(11, 0, 0, 0) == "unknown_node"
    assert q.enqueue(-1, 0, 0, 0) == "invalid_id"
    assert q.enqueue(1, 0, 100, 0) is None
    assert reported == [(1, "not_finite"), (1, "not_finite"), (1, "out_of_bounds"),
                        (11, "unknown_node"), (-1, "invalid_id")]
    assert q.counters.rejected == 5 and q.pending["queued"] == 1
    with pytest.raises(ValueError):
        q.enqueue(1, 0, 0, 0, mode="teleport")  # type: ignore[arg-type]
    q.close()


async def test_the_queue_is_bounded_oldest_dropped_first() -> None:
    wire = Wire()
    q = BatchQueue(wire, max_queued=5, batch_size=50, flush_interval=10)
    for i in range(8):
        q.enqueue(i, 0, 0, 0)
    assert q.counters.dropped == 3 and q.pending["queued"] == 5
    q.flush()
    assert wire.batches()[0][1] == [3, 4, 5, 6, 7]
    q.close()


async def test_unanswered_and_rate_limited_batches_are_retried_with_backoff() -> None:
    wire = Wire()
    q = BatchQueue(wire, flush_interval=0.01, ack_timeout=0.05, retry_base=0.05, retry_max=0.2,
                   max_attempts=3)
    q.enqueue(1, 1, 2, 3)
    await asyncio.sleep(0.03)
    assert len(wire.frames) == 1  # sent, not answered yet
    # unanswered: retried after ack_timeout + retry_base (then + 2 × retry_base)
    await asyncio.sleep(0.2)
    assert len(wire.frames) == 2 and q.counters.retried == 1
    # a whole batch refused for rate_limited: retried too
    batch = decode_client_positions(wire.frames[-1]).batch
    q.on_ack({"batch": batch, "accepted": 0, "rejected": [{"id": 1, "reason": "rate_limited"}]})
    await asyncio.sleep(0.25)
    assert len(wire.frames) == 3 and q.counters.retried == 2
    # the third attempt is the last: unanswered, it is given up and counted
    await asyncio.sleep(0.5)
    assert len(wire.frames) == 3 and q.counters.failed == 1
    # a send function that refuses (socket down) also retries; an ack settles the batch
    wire.up = False
    q.enqueue(2, 0, 0, 0)
    await wire.next_call()  # refused
    await wire.next_call()  # the retry, refused too
    assert q.counters.retried == 3
    wire.up = True
    await wire.next_call()  # the next retry goes out
    assert decode_client_positions(wire.frames[-1]).ids.tolist() == [2]
    last = decode_client_positions(wire.frames[-1])
    q.on_ack({"batch": last.batch, "accepted": 1, "rejected": []})
    assert q.counters.acked == 1 and q.counters.accepted == 1 and q.pending["inflight"] == 0
    # stale_epoch is not retried
    q.enqueue(3, 0, 0, 0)
    await asyncio.sleep(0.03)
    b = decode_client_positions(wire.frames[-1]).batch
    q.on_ack({"batch": b, "accepted": 0, "rejected": [{"id": 3, "reason": "stale_epoch"}]})
    sent = len(wire.frames)
    await asyncio.sleep(0.3)
    assert len(wire.frames) == sent and q.counters.rejected_by_server == 1
    q.close()


async def test_a_retry_is_superseded_by_a_newer_update() -> None:
    wire = Wire()
    q = BatchQueue(wire, flush_interval=10, ack_timeout=0.02, retry_base=0.1)
    q.enqueue(1, 1, 1, 1)
    q.flush()
    await asyncio.sleep(0.05)  # the batch timed out; its retry waits for retry_base
    q.enqueue(1, 5, 5, 5)  # newer: the retry of the old position must not replace it
    await asyncio.sleep(0.12)
    q.flush()
    assert wire.batches()[-1][2][0].tolist() == [5, 5, 5]
    assert q.counters.retried == 0
    q.close()


async def test_a_retry_never_overwrites_a_newer_update_already_sent() -> None:
    wire = Wire()
    q = BatchQueue(wire, flush_interval=10, ack_timeout=10, retry_base=0.05)
    wire.up = False
    q.enqueue(1, 1, 1, 1)
    q.flush()  # refused: its retry waits retry_base
    wire.up = True
    q.enqueue(1, 5, 5, 5)
    q.flush()  # the newer position goes out and is answered before the retry is due
    newer = decode_client_positions(wire.frames[-1])
    assert newer.pos.tolist() == [[5, 5, 5]]
    q.on_ack({"batch": newer.batch, "accepted": 1, "rejected": []})
    q.enqueue(2, 0, 0, 0)  # a marker: sent when the retry timer has fired and been handled
    retry_done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.1, retry_done.set_result, None)
    await retry_done
    q.flush()
    assert [b[1] for b in wire.batches()] == [[1], [2]]  # the old position never went again
    assert q.counters.retried == 0
    q.close()


async def test_each_update_of_a_batch_counts_its_own_attempts() -> None:
    wire = Wire()
    q = BatchQueue(wire, batch_size=2, flush_interval=0.05, ack_timeout=10, retry_base=0.001,
                   retry_max=0.001, max_attempts=2)
    wire.up = False
    q.enqueue(1, 1, 1, 1)
    q.flush()  # node 1's first attempt, refused
    q.enqueue(2, 2, 2, 2)  # waits for a second update to fill a batch
    await wire.next_call()  # node 1's retry fills it: node 1's second attempt, node 2's first
    assert q.counters.failed == 1  # node 1 is given up, node 2 is not
    wire.up = True
    await wire.next_call()  # node 2's retry
    assert [b[1] for b in wire.batches()] == [[2]] and q.counters.failed == 1
    q.close()


async def test_pin_and_release_travel_in_their_own_batches() -> None:
    wire = Wire()
    q = BatchQueue(wire, flush_interval=10)
    q.enqueue(1, 0, 0, 0, "pin")
    q.enqueue(2, 0, 0, 0, "move")
    q.enqueue(3, 0, 0, 0, "pin")
    q.flush()
    flags = [(decode_client_positions(f).pin, decode_client_positions(f).ids.tolist())
             for f in wire.frames]
    assert flags == [(True, [1, 3]), (False, [2])]
    q.close()


async def test_the_server_acknowledges_every_batch(generous_server: Harness) -> None:
    async with Client(generous_server.base, format="q") as client:
        q = client.positions
        ids = client.mirror.live_ids[:120]
        for i in ids:
            assert client.move(int(i), 10.0, 20.0, 30.0, "pin") is None
        assert client.move("nope", 0, 0, 0) == "unknown_node"
        assert client.move(int(ids[0]), 1e9, 0, 0) == "out_of_bounds"  # ±bounds_size
        q.flush()
        async with asyncio.timeout(10):
            while q.counters.acked < 120:
                await client.wait_for("frame")
        assert q.counters.accepted == 120 and q.counters.rejected_by_server == 0
        assert q.counters.rejected == 2 and q.pending == {"queued": 0, "inflight": 0}
        _, state = await generous_server.get("/api/graph/state?positions=1")
        pinned = {p["id"]: (p["x"], p["y"], p["z"]) for p in state["positions"]}
        assert all(pinned[int(i)] == (10.0, 20.0, 30.0) for i in ids)


async def test_the_outgoing_queue_is_bounded_oldest_dropped_and_counted() -> None:
    client = Client("http://127.0.0.1:9", queue_limit=10)  # never started: all of it waits
    for i in range(15):
        assert client.send_json({"type": "ping", "timestamp": i}) is False
    assert client.dropped == 5
    waiting = [int(m.split(b'"timestamp":')[1].rstrip(b"}")) if isinstance(m, bytes)
               else int(m.split('"timestamp":')[1].rstrip("}")) for m in client._outgoing]
    assert waiting == list(range(5, 15))  # in order, the oldest five gone
    await client.close()
