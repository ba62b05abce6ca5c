"""The simulation role: hold the lease, publish every snapshot's frames, serve the gateways'
commands; or wait, warm, as a standby.

A simulation process loads its source and compiles its kernels at start, whether or not it gets
the lease, so a standby that takes over only has to place the nodes where the last holder
published them and start stepping. While it holds the lease it:

- publishes, in one ordered queue, each snapshot's :class:`~graphwire.cluster.envelope.FrameSet`
  (every stream a gateway or a local client uses, each encoded once), ``graph_changed`` (after
  writing the new graph document) and SSSP frames, each through the fenced publish script;
- runs the gateways' commands in order and replies;
- is the single writer of settings revisions
  (:class:`~graphwire.cluster.settings_sync.SettingsWriter`);
- renews the lease every ``ttl / 3``. A renewal that finds the lease gone, or that could not
  reach Redis for a whole ttl, stops everything above at once (another process may hold the
  lease now) and the process goes back to waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from graphwire.cluster import envelope
from graphwire.cluster.commands import CommandServer
from graphwire.cluster.envelope import FrameSet
from graphwire.cluster.lease import Lease, LeaseLostError
from graphwire.cluster.link import CANCEL_GRACE, Link, RedisDownError, settle_tasks
from graphwire.cluster.settings_sync import SettingsReplica, SettingsWriter
from graphwire.graph.model import GraphError
from graphwire.graph.sources import SourceError
from graphwire.protocol.control import GraphChanged
from graphwire.protocol.errors import ErrorCode, ProtocolError
from graphwire.settings import SettingsError, SettingsService

from .errors import graph_code
from .graph_service import GraphService
from .runner import SimulationRunner
from .settings_writes import commit_here, delta_b64, delta_of_b64
from .stream_hub import StreamHub, is_stream_name

log = logging.getLogger("graphwire.cluster")

STREAM_TTL = 10.0
"""Seconds a stream a gateway asked for stays encoded without a reminder."""

OUTBOX_FRAMES = 32
"""Frame sets queued for Redis before new ones are dropped (Redis slower than the stream):
events (graph_changed, SSSP) are never dropped."""

Job = Callable[[], Awaitable[None]]


def command_error(exc: Exception) -> dict[str, Any] | None:
    """A refusal as a reply error (None: a bug, logged and answered ``internal``)."""
    if isinstance(exc, GraphError):  # with its §8 code: the gateway answers what we would
        return {"kind": "graph", "code": graph_code(exc).value, "message": str(exc)}
    if isinstance(exc, SettingsError):
        return {"kind": "settings", "code": int(exc.code), "message": exc.message}
    if isinstance(exc, ProtocolError):
        return {"kind": "protocol", "code": exc.code.value, "message": exc.message}
    return None


class ClusterSimulation:
    """One simulation process of a cluster: lease holder or standby."""

    def __init__(self, link: Link, lease: Lease, graph: GraphService, hub: StreamHub,
                 runner: SimulationRunner, settings: SettingsService,
                 set_epoch: Callable[[int], None]) -> None:
        self.link = link
        self.lease = lease
        self.graph = graph
        self.hub = hub
        self.runner = runner
        self.settings = settings
        self.set_epoch = set_epoch
        self.holding = False
        self.fresh = False  # the next snapshot is the first of an epoch: keyframes for all
        self.takeovers = 0
        self.published = 0
        self.dropped = 0
        self.epoch = 0
        self._n = 0
        self._streams: dict[str, float] = {}
        self._outbox: asyncio.Queue[tuple[Job, bool]] = asyncio.Queue()
        self._frames_queued = 0
        self._runner_started = False
        self._contending: asyncio.Task[None] | None = None
        self._stopping = False
        self.writer = SettingsWriter(link, lease, settings)
        self.replica = SettingsReplica(link, settings)
        self.commands = CommandServer(link, {
            "positions": self._positions, "add": self._add, "remove_node": self._remove_node,
            "add_edges": self._add_edges, "remove_edges": self._remove_edges,
            "sssp": self._sssp, "settings": self._settings, "streams": self._streams_cmd,
            "request_snapshot": self._request_snapshot, "reload": self._reload,
        }, command_error)
        self._said_standby = False  # the standby's one log line, again after each holding
        # reads the served source again as a new epoch (the app's source follower)
        self.reload_source: Callable[[], Awaitable[dict[str, Any]]] | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Follow the settings as a replica and contend for the lease."""
        self.replica.start()
        self._contending = self.link.spawn(self._lease_loop())
        self.link.spawn(self._publish_loop())

    async def _lease_loop(self) -> None:
        while not self._stopping:
            try:
                got = await self.link.call(self.lease.try_acquire)
            except RedisDownError:
                got = False
            if self._stopping:  # stop() came while Redis answered: never take it back
                return
            if not got:
                await self._note_epoch()
                if not self._said_standby:
                    self._said_standby = True
                    with contextlib.suppress(RedisDownError):
                        holder = await self.link.call(
                            lambda: self.link.redis.get(self.link.keys.lease))
                        log.warning("simulation: standing by (the lease is held by %s)",
                                    bytes(holder).decode(errors="replace") if holder else "?")
                await asyncio.sleep(self.lease.retry_interval)
                continue
            self._said_standby = False
            # renewed from the moment it is taken: a takeover of a large graph can take longer
            # than the ttl, and a lease that expired during it would be taken again and lost
            # again, for ever (seen at 100,000 nodes)
            holding = self.link.spawn(self._hold())
            taking = asyncio.ensure_future(self._take_over())
            try:
                # a lease lost during the takeover ends it
                await asyncio.wait({holding, taking}, return_when=asyncio.FIRST_COMPLETED)
                if taking.done():
                    taking.result()  # raises what the takeover raised
                    await holding
                else:
                    holding.result()  # lost (it said so), or raises what renewing raised
            except (RedisDownError, LeaseLostError) as exc:
                log.warning("simulation: takeover failed (%s); waiting again", exc)
            except Exception:  # a bug must not end the contention: log it, try again
                log.exception("simulation: the takeover failed; waiting again")
                await asyncio.sleep(self.lease.retry_interval)
            finally:
                for task in (taking, holding):
                    task.cancel()
                await settle_tasks([taking, holding], CANCEL_GRACE)
            self._stand_down()

    async def _take_over(self) -> None:
        """This process just got the lease: a new epoch, the last published layout, the
        settings state, then publish."""
        t0 = time.monotonic()
        self.replica.stop()
        if self.takeovers and self.reload_source is not None:
            # a holder again: serve the source as it is on disk, as any standby would (what
            # was added through the API while this process held the lease went with it)
            try:
                await self.reload_source()
            except (SourceError, GraphError) as exc:
                log.warning("simulation: the source cannot be read again (%s); serving the "
                            "graph as it was", exc)
        keys = self.link.keys
        epoch = int(await self.link.call(lambda: self.link.redis.incr(keys.epoch)))
        local = self.settings.store.bump_epoch()
        if local > epoch:
            epoch = local
            await self.link.call(lambda: self.link.redis.set(keys.epoch, epoch))
        self.settings.store.set_epoch(epoch)
        self.epoch = epoch
        self.set_epoch(epoch)
        placed = await self._resume_layout()
        await self.writer.take_over()
        await self._load_streams()
        self.fresh = True
        self.hub.restart()
        self.holding = True
        self.takeovers += 1
        await self._write_graph()
        self._enqueue(self._sssp_frame_job(self.graph.sssp_frame(), self.graph.sssp_seq,
                                           self.graph.sssp.source), frames=False)
        await self.commands.start()
        if not self._runner_started:
            self.runner.start()
            self._runner_started = True
        self.runner.request_snapshot()
        log.warning("simulation: holding the lease (token %s, epoch %d); resumed %d node "
                    "positions in %.0f ms", self.lease.token, epoch, placed,
                    (time.monotonic() - t0) * 1000)

    async def _note_epoch(self) -> None:
        """A standby remembers the cluster's epoch (in its settings file): if Redis comes back
        empty, the epoch it takes over with still goes past every epoch clients have seen."""
        with contextlib.suppress(RedisDownError, ValueError, TypeError):
            raw = await self.link.call(lambda: self.link.redis.get(self.link.keys.epoch))
            seen = int(raw) if raw is not None else 0
            if seen > self.settings.store.epoch:
                self.settings.store.set_epoch(seen)

    async def _resume_layout(self) -> int:
        """Place the nodes where the previous holder last published them, matched by key
        through the graph it last published; warn when that graph is mostly another one (two
        simulations started on different sources). Returns how many nodes were placed."""
        keys = self.link.keys
        raw = await self.link.call(lambda: self.link.redis.get(keys.last_frames))
        doc = await self.link.call(lambda: self.link.redis.get(keys.graph))
        if raw is None or doc is None:
            return 0
        last = FrameSet.from_envelope(envelope.decode(bytes(raw)))
        key_of = {int(n["id"]): str(n["key"]) for n in json.loads(bytes(doc))["nodes"]}
        ids = last.ids.astype(np.int64).tolist()
        named = [(i, key_of[nid]) for i, nid in enumerate(ids) if nid in key_of]
        placed = 0
        if named:
            rows = np.asarray([i for i, _ in named], np.int64)
            placed = await self.graph.restore_positions([k for _, k in named],
                                                        last.pos[rows].astype(np.float32))
        ours = self.graph.graph.node_count
        if key_of and placed < 0.5 * min(len(key_of), ours):
            log.warning("simulation: the previous lease holder served another graph (%d of "
                        "its %d nodes are here, of %d): are the simulations started on the "
                        "same source?", placed, len(key_of), ours)
        return placed

    async def _hold(self) -> None:
        """Renew until the lease is lost (or cannot be renewed for a whole ttl), from the
        moment it is taken (:meth:`_take_over` runs meanwhile)."""
        last_ok = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(self.lease.renew_interval)
            try:
                if not await self.link.call(self.lease.renew):
                    log.warning("simulation: the lease was lost (expired or taken)")
                    return
                last_ok = time.monotonic()
            except RedisDownError:
                if time.monotonic() - last_ok > self.lease.ttl:
                    log.warning("simulation: could not renew the lease for %.1f s: standing "
                                "down", self.lease.ttl)
                    return

    def _stand_down(self) -> None:
        self.holding = False
        self.lease.token = None
        self.commands.stop()
        self.replica.last_id = "0-0"
        self.replica.start()

    async def stop(self) -> None:
        """Stop contending for the lease, then give it up (a standby takes over at once
        instead of after the ttl). Releasing it with the lease loop still contending would let
        this process take it straight back, while it shuts down."""
        self._stopping = True
        if self._contending is not None:
            # a loop can outlive its cancellation inside redis-py (docs/deploy.md): it is given
            # a moment, and whatever it does afterwards, it no longer takes the lease
            self._contending.cancel()
            await asyncio.wait({self._contending}, timeout=CANCEL_GRACE)
        if self.holding:
            self.commands.stop()
            self.holding = False
        if self.lease.token is not None:  # held, or just taken as stop() came
            with contextlib.suppress(RedisDownError):
                await self.link.call(self.lease.release)

    # -- publishing --------------------------------------------------------------------------------
    def _enqueue(self, job: Job, *, frames: bool) -> None:
        if frames:
            if self._frames_queued >= OUTBOX_FRAMES:
                self.dropped += 1
                return
            self._frames_queued += 1
        self._outbox.put_nowait((job, frames))

    async def _publish_loop(self) -> None:
        while True:
            job, frames = await self._outbox.get()
            if frames:
                self._frames_queued -= 1
            if not self.holding:
                continue
            try:
                await job()
            except RedisDownError:
                self.dropped += 1  # gateways catch up from the kept keys when Redis is back
            except LeaseLostError:
                log.warning("simulation: a publish was refused: the lease is gone")
                self.holding = False

    def _envelope(self, kind: envelope.Kind, header: dict[str, Any],
                  blobs: list[bytes] | tuple[bytes, ...] = ()) -> bytes:
        self._n += 1
        return envelope.encode(kind, {"token": self.lease.token, "n": self._n,
                                      "epoch": self.epoch, **header}, blobs)

    def streams_due(self) -> None:
        """Tell the hub the streams gateways use now, before it takes a snapshot (so a stream a
        gateway just asked for is encoded, and its lane ticks, with that snapshot)."""
        if self.holding:
            now = time.monotonic()
            self.hub.remote_streams = {s for s, until in self._streams.items() if until > now}

    def snapshot(self) -> None:
        """The hub took a snapshot: publish its frames (called on the loop, in order)."""
        if self.holding:
            self._publish_frames(self.hub.export(self.epoch, self.runner.rate))

    def _new_streams(self) -> None:
        """Gateways asked for streams the newest frames lack. On a settled layout the newest
        snapshot is published again with them (same seq: clients that had it get nothing);
        on a moving one the next snapshot is taken at once."""
        if not (self.holding and self.hub.settled) or self.fresh:
            # (fresh: a new epoch's first snapshot is on its way; the newest is the old one's)
            self.runner.request_snapshot()
            return
        self.streams_due()
        self._publish_frames(self.hub.export_added(self.epoch, self.runner.rate))

    def _publish_frames(self, fs: FrameSet | None) -> None:
        if fs is None:
            return
        self._n += 1
        data = fs.encode(self.lease.token or 0, self._n)

        async def job() -> None:
            await self.link.publish(self.lease, data, keep=self.link.keys.last_frames)
            self.published += 1
        self._enqueue(job, frames=True)

    def graph_changed(self, msg: GraphChanged) -> None:
        """Topology changed: write the new graph document, then announce it."""
        if not self.holding:
            return
        message = msg.to_json()
        epoch = msg.epoch if msg.epoch != self.epoch else None
        if epoch is not None:  # the source was read again: the cluster's epoch moves on
            self.epoch, self.fresh = epoch, True

        async def job() -> None:
            if epoch is not None:  # a later holder's epoch must be above this one
                await self.link.fenced_set(self.lease, self.link.keys.epoch,
                                           str(epoch).encode())
            await self._write_graph()
            await self.link.publish(self.lease, self._envelope(
                envelope.Kind.GRAPH_CHANGED, {"message": message}))
        self._enqueue(job, frames=False)

    def sssp_changed(self, frame: bytes, seq: int, source: int | None) -> None:
        """A new SSSP frame for every subscriber."""
        if self.holding:
            self._enqueue(self._sssp_frame_job(frame, seq, source), frames=False)

    def _sssp_frame_job(self, frame: bytes, seq: int, source: int | None) -> Job:
        async def job() -> None:
            await self.link.publish(self.lease, self._envelope(
                envelope.Kind.SSSP, {"seq": seq, "source": source}, [frame]),
                keep=self.link.keys.last_sssp)
        return job

    async def _write_graph(self) -> None:
        doc = await self.graph.graph_doc()
        await self.link.fenced_set(self.lease, self.link.keys.graph, doc)

    # -- commands ----------------------------------------------------------------------------------
    async def _positions(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = np.asarray(body["ids"], np.int64).reshape(-1)
        pos = np.asarray([[math.nan if c is None else float(c) for c in p] for p in body["pos"]],
                         np.float64).reshape(-1, 3)
        result = await self.graph.positions(ids, pos, pin=bool(body["pin"]),
                                            release=bool(body["release"]))
        if result.accepted:
            self.runner.interaction()
        return {"accepted": result.accepted,
                "rejected": [[r.id, r.reason] for r in result.rejected]}

    async def _add(self, body: dict[str, Any]) -> dict[str, Any]:
        nodes = [self.graph.node_spec(n) for n in body["nodes"]]
        edges = [self.graph.edge_spec(e) for e in body["edges"]]
        return {"ids": await self.graph.add(nodes, edges), **self._topology()}

    async def _remove_node(self, body: dict[str, Any]) -> dict[str, Any]:
        await self.graph.remove_node(int(body["id"]))
        return self._topology()

    async def _add_edges(self, body: dict[str, Any]) -> dict[str, Any]:
        written = await self.graph.add_edges([self.graph.edge_spec(e) for e in body["edges"]])
        return {"edges": [self.graph.graph.edge_json(e) for e in written], **self._topology()}

    async def _remove_edges(self, body: dict[str, Any]) -> dict[str, Any]:
        gone = await self.graph.remove_edges([self.graph.edge_spec(e) for e in body["edges"]])
        return {"removed": [[a, b] for a, b in gone], **self._topology()}

    def _topology(self) -> dict[str, Any]:
        """The topology version after a command: the gateway answers its client once its
        mirror shows it (a read after the reply sees the change)."""
        return {"topologyVersion": self.graph.graph.topology_version}

    async def _sssp(self, body: dict[str, Any]) -> dict[str, Any]:
        source = body["source"]
        result = await self.graph.set_sssp_source(None if source is None else int(source))
        return {"source": result.source, "seq": self.graph.sssp_seq}

    async def _reload(self, _: dict[str, Any]) -> dict[str, Any]:
        if self.reload_source is None:
            raise ProtocolError(ErrorCode.INTERNAL, "this simulation cannot reload its source")
        try:
            return await self.reload_source()
        except (SourceError, GraphError) as exc:
            raise ProtocolError(ErrorCode.INVALID_VALUE,
                                f"{exc} (the graph was left as it was)") from None

    async def _settings(self, body: dict[str, Any]) -> dict[str, Any]:
        msg = delta_of_b64(body["delta"])
        done = commit_here(self.settings, msg.entries, admin=bool(body["admin"]),
                           origin=str(body["origin"]))
        if done.written:
            await self.writer.appended_future(done.revision)  # acknowledged in Redis too
        return {"revision": done.revision, "written": delta_b64(done.revision, done.written),
                "previous": delta_b64(0, done.previous)}

    def _register_streams(self, body: dict[str, Any]) -> bool:
        """Note the streams a gateway's clients use; True if one of them is new."""
        until = time.monotonic() + STREAM_TTL
        new = False
        for stream in body.get("streams", []):
            if is_stream_name(stream):
                new = new or self._streams.get(stream, 0.0) < time.monotonic()
                self._streams[stream] = until
        return new

    async def _streams_cmd(self, body: dict[str, Any], *, snapshot: bool = False
                           ) -> dict[str, Any]:
        """``streams`` (and ``request_snapshot``, with ``snapshot``): new streams are
        published, and a snapshot asked for is taken, with one request before any await
        (asking again after it, the runner may have published in between: a second snapshot,
        an empty frame for everyone)."""
        if self._register_streams(body):
            self._new_streams()
        elif snapshot:
            self.runner.request_snapshot()
        await self._save_streams()
        return {}

    async def _load_streams(self) -> None:
        """The streams gateways asked the previous holder for: encoded from the first frame,
        so clients get the new epoch's frames without a round trip."""
        raw = await self.link.call(lambda: self.link.redis.get(self.link.keys.formats))
        if raw is not None:
            until = time.monotonic() + STREAM_TTL
            for stream in json.loads(raw):
                self._streams[str(stream)] = until

    async def _save_streams(self) -> None:
        now = time.monotonic()
        live = sorted(s for s, until in self._streams.items() if until > now)
        with contextlib.suppress(RedisDownError):
            await self.link.call(lambda: self.link.redis.set(
                self.link.keys.formats, json.dumps(live), px=int(STREAM_TTL * 1000)))

    async def _request_snapshot(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._streams_cmd(body, snapshot=True)

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` and the metrics say about this simulation."""
        return {"lease": "held" if self.holding else "standby", "token": self.lease.token,
                "epoch": self.epoch, "takeovers": self.takeovers, "published": self.published,
                "dropped": self.dropped, "settingsAppended": self.writer.appended,
                "commands": self.commands.handled}
