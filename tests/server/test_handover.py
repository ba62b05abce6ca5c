"""The snapshot handover: a loop that falls behind gets the newest snapshot, in order around
topology changes (a real event loop and a real simulation thread, no sockets)."""

from __future__ import annotations

import asyncio
import threading

from graphwire.bench.graphs import barabasi_albert
from graphwire.graph.model import NodeSpec
from graphwire.server.handover import SnapshotHandover
from graphwire.server.metrics import Metrics
from graphwire.simulation import Simulation, Snapshot


async def test_a_busy_loop_gets_the_newest_snapshot_and_never_one_across_a_change() -> None:
    loop = asyncio.get_running_loop()
    got: list[tuple[int, int, bool] | str] = []
    done = loop.create_future()
    sim = Simulation(barabasi_albert(50))
    published: list[Snapshot] = []

    def deliver(snap: Snapshot, keyframe_all: bool) -> None:
        got.append((snap.seq, snap.topology_version, keyframe_all))
        if snap is published[-1]:
            done.set_result(None)

    metrics = Metrics()
    handover = SnapshotHandover(loop, deliver, metrics)

    def simulation_thread() -> None:
        def publish(keyframe_all: bool = False) -> None:
            published.append(sim.publish())
            handover.publish(published[-1], keyframe_all)

        publish(keyframe_all=True)  # a keyframe for everyone, then two newer snapshots
        publish()
        publish()
        # a topology change: its announcement is scheduled before the snapshot that shows it
        sim.add([NodeSpec("newcomer")])
        loop.call_soon_threadsafe(got.append, "graph_changed")
        publish()
        publish()

    # the loop is busy (blocked here) for the whole time the simulation publishes
    thread = threading.Thread(target=simulation_thread)
    thread.start()
    thread.join()
    await asyncio.wait_for(done, 5)

    first, last = published[2], published[4]
    assert published[3].topology_version > first.topology_version
    assert got == [(first.seq, first.topology_version, True),  # the keyframe request kept
                   "graph_changed",
                   (last.seq, last.topology_version, False)]
    assert metrics.snapshots_coalesced == 3


async def test_a_loop_that_keeps_up_gets_every_snapshot() -> None:
    loop = asyncio.get_running_loop()
    seqs: list[int] = []
    sim = Simulation(barabasi_albert(50))
    metrics = Metrics()
    arrived = asyncio.Event()

    def deliver(snap: Snapshot, keyframe_all: bool) -> None:
        seqs.append(snap.seq)
        arrived.set()

    handover = SnapshotHandover(loop, deliver, metrics)
    for _ in range(4):
        arrived.clear()
        snap = await asyncio.to_thread(sim.publish)
        await asyncio.to_thread(handover.publish, snap, False)
        await asyncio.wait_for(arrived.wait(), 5)
    assert seqs == list(range(seqs[0], seqs[0] + 4))
    assert metrics.snapshots_coalesced == 0
