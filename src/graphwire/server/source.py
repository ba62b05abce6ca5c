"""The served source, kept live: its watcher feeds the graph service, and a reload swaps it.

:class:`SourceFollower` is given the parts it drives (the live source, the graph service, the
settings for the epoch, the metrics, and two callables of the runner and the hub) and owns one
lock, so a burst read by the watcher and a ``POST /api/graph/reload`` never interleave.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from graphwire.graph.diff import TopologyDiff
from graphwire.graph.live import LiveSource, SourceUpdate
from graphwire.graph.model import Graph, GraphData
from graphwire.graph.watch import watch_source
from graphwire.settings import SettingsService

from .graph_service import GraphService
from .metrics import Metrics

log = logging.getLogger("graphwire.server.source")


def report_skipped(data: GraphData, metrics: Metrics) -> None:
    """Log and count the parts of a source that a read left out (unreadable vault pages), and
    log what it read only in part (ignored front matter)."""
    for problem in data.skipped:
        metrics.source_errors += 1
        log.warning("%s (left out of the graph until it is fixed)", problem)
    for warning in data.warnings:
        log.warning("%s", warning)


def _names(change: TopologyDiff, most: int = 3) -> str:
    """The nodes a small change added and removed, by key, for a person reading the log."""
    parts = []
    for verb, keys in (("added", [n.key for n in change.added_nodes]),
                       ("removed", change.removed_nodes)):
        if keys:
            more = f" and {len(keys) - most} more" if len(keys) > most else ""
            parts.append(f"{verb} {', '.join(keys[:most])}{more}")
    return f" ({'; '.join(parts)})" if parts else ""


class SourceFollower:
    """Applies every change of the watched source; reloads it on request.

    ``interaction``: run the stream fast for a moment; ``request_snapshot``: publish one at
    once; ``keyframes``: send every subscriber a keyframe with the next snapshot."""

    def __init__(self, source: LiveSource, graph: GraphService, settings: SettingsService,
                 metrics: Metrics, *, interaction: Callable[[], None],
                 request_snapshot: Callable[[], None],
                 keyframes: Callable[[], None]) -> None:
        self.source = source
        self.graph = graph
        self.settings = settings
        self.metrics = metrics
        self.interaction = interaction
        self.request_snapshot = request_snapshot
        self.keyframes = keyframes
        self.lock = asyncio.Lock()

    async def follow(self, ready: asyncio.Event) -> None:
        """Watch the source until cancelled (``ready`` is set once the watch is in place)."""
        v = self.settings.value
        async for update in watch_source(
                self.source, quiet_ms=v("system.source.watchQuietMs"),
                max_wait_ms=v("system.source.watchMaxWaitMs"), ready=ready, lock=self.lock):
            await self.apply(update)

    async def apply(self, update: SourceUpdate) -> None:
        """One burst's update: report its failures, apply its change."""
        for err in update.errors:
            self.metrics.source_errors += 1
            log.warning("%s (%s)", err, "left out of the graph until it is fixed"
                        if err in update.left_out else "the graph keeps its last good version")
        for warning in update.warnings:
            log.warning("%s", warning)
        if update.diff:
            done = await self.graph.apply_change(update.diff)
            self.metrics.source_changes += 1
            log.info("source changed: %s%s", update.diff.summary(), _names(update.diff))
            if done.added_nodes:
                self.interaction()  # stream fast while newcomers find their place
            if done.added_nodes or done.removed_nodes:
                # every subscriber needs a keyframe of the new node set anyway (new ids never
                # come in a delta): send it with the next snapshot, published at once, rather
                # than at each subscriber's next due time
                self.keyframes()

    async def reload(self) -> dict[str, Any]:
        """Read the whole source again and serve it as a new epoch (clients refetch).

        A SourceError (or GraphError) leaves the graph and the epoch as they were."""
        loop = asyncio.get_running_loop()
        async with self.lock:
            data = await loop.run_in_executor(None, self.source.reload)
            graph = Graph.from_data(data)
            epoch = self.settings.start_epoch()
            await self.graph.reload(graph, epoch)
        self.metrics.source_reloads += 1
        report_skipped(data, self.metrics)
        self.request_snapshot()
        return {"epoch": epoch, "nodesCount": graph.node_count, "edgesCount": graph.edge_count,
                "skipped": data.skipped, "warnings": data.warnings}
