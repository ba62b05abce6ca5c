"""Server metrics (docs/protocol.md §10): one set of counters, read by ``/api/metrics`` (JSON) and
``/metrics`` (Prometheus text, written by ``prometheus_client``).

The counters are plain integers on the event loop: the send path counts every frame for every
client, and an integer addition costs a fraction of what a ``prometheus_client.Counter.inc``
(a lock per call) costs there. A custom collector hands the same integers to
``prometheus_client`` at scrape time, so both views read one source. :data:`METRICS` lists every
metric once: its JSON name (the contract's), its Prometheus name, kind and help.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from graphwire.protocol.compression import GZIP_TALLY

FORMATS = ("v1", "v2", "q")


class Metrics:
    """Counters of what the server sent, received, skipped and refused."""

    def __init__(self) -> None:
        self.started = time.time()
        self.messages_sent = 0
        self.messages_received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.delta_messages = 0  # settings Deltas sent
        self.full_sync_messages = 0  # settings Snapshots sent
        self.connections = 0  # open now
        self.connections_total = 0  # opened since the start
        self.frames = dict.fromkeys(FORMATS, 0)
        self.frame_bytes = dict.fromkeys(FORMATS, 0)
        self.nodes_sent = dict.fromkeys(FORMATS, 0)
        self.keyframes = dict.fromkeys(FORMATS, 0)
        self.frames_skipped_slow = 0
        self.keyframes_instead_of_delta = 0
        self.slow_closes = 0
        self.rate_limit_warnings = 0
        self.rate_limited = 0
        self.bans = 0
        self.errors_sent = 0
        self.errors_suppressed = 0
        self.snapshots = 0
        self.snapshots_coalesced = 0  # replaced by a newer one before the loop took them
        self.source_changes = 0  # topology changes read from the watched source
        self.source_errors = 0  # files of the source that failed to read or parse
        self.source_reloads = 0  # whole re-reads (POST /api/graph/reload)
        self.layout_saves = 0  # layouts written to the settings database
        # when each recent snapshot was published, (seq, unix time): stream latency from outside
        self.publish_times: deque[tuple[int, float]] = deque(maxlen=4096)
        # compression is counted where payloads are encoded (once, whoever receives them)
        self._gzip_plain0 = GZIP_TALLY.plain
        self._gzip_packed0 = GZIP_TALLY.packed
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def sent(self, nbytes: int, count: int = 1) -> None:
        """``count`` messages of ``nbytes`` each went out."""
        self.messages_sent += count
        self.bytes_sent += nbytes * count

    def received(self, nbytes: int) -> None:
        """One message of ``nbytes`` came in."""
        self.messages_received += 1
        self.bytes_received += nbytes

    def snapshot_published(self, seq: int) -> None:
        """The simulation published snapshot ``seq`` now (any thread)."""
        self.publish_times.append((seq, time.time()))

    def frame(self, fmt: str, nbytes: int, nodes: int, keyframe: bool, count: int = 1) -> None:
        """One position frame of a format went to ``count`` clients (counted once a group)."""
        self.frames[fmt] += count
        self.frame_bytes[fmt] += nbytes * count
        self.nodes_sent[fmt] += nodes * count
        if keyframe:
            self.keyframes[fmt] += count

    @property
    def compression_ratio(self) -> float:
        """Plain bytes over gzip'd bytes of every payload compressed since the start (position,
        SSSP and settings frames; 1.0 when none)."""
        plain = GZIP_TALLY.plain - self._gzip_plain0
        packed = GZIP_TALLY.packed - self._gzip_packed0
        return plain / packed if packed > 0 else 1.0

    def bytes_per_node(self, fmt: str) -> float | None:
        """Position-frame bytes sent per node entry of a format (None before any)."""
        nodes = self.nodes_sent[fmt]
        return self.frame_bytes[fmt] / nodes if nodes else None

    def uptime(self) -> float:
        """Seconds since the server started."""
        return time.time() - self.started

    def as_json(self) -> dict[str, Any]:
        """The JSON of ``/api/metrics`` (the stream's state is added by the route)."""
        out: dict[str, Any] = {}
        for m in METRICS:
            value = m.read(self)
            if m.per_format:
                formats = out.setdefault("formats", {f: {} for f in FORMATS})
                for f in FORMATS:
                    v = value[f]
                    formats[f][m.json] = round(v, 3) if isinstance(v, float) else v
            else:
                out[m.json] = round(value, 3) if isinstance(value, float) else value
        return out

    def prometheus(self) -> bytes:
        """The same counters in the Prometheus text exposition format."""
        return generate_latest(self.registry)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric in both views."""

    json: str  # the name in /api/metrics (under "formats" when per format)
    prom: str  # the name in /metrics, without the graphwire_ prefix (counters end in _total)
    kind: str  # "counter" or "gauge"
    help: str
    read: Callable[[Metrics], Any]  # a number, or {format: number} when per_format
    per_format: bool = False


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("messagesSent", "messages_sent_total", "counter", "WebSocket messages sent.",
               lambda m: m.messages_sent),
    MetricSpec("messagesReceived", "messages_received_total", "counter",
               "WebSocket messages received.", lambda m: m.messages_received),
    MetricSpec("bytesSent", "bytes_sent_total", "counter", "Bytes of WebSocket messages sent.",
               lambda m: m.bytes_sent),
    MetricSpec("bytesReceived", "bytes_received_total", "counter",
               "Bytes of WebSocket messages received.", lambda m: m.bytes_received),
    MetricSpec("compressionRatio", "compression_ratio", "gauge",
               "Plain over gzip'd bytes of every compressed payload.",
               lambda m: m.compression_ratio),
    MetricSpec("deltaMessages", "settings_delta_messages_total", "counter",
               "Settings Deltas sent.", lambda m: m.delta_messages),
    MetricSpec("fullSyncMessages", "settings_full_sync_messages_total", "counter",
               "Settings Snapshots sent.", lambda m: m.full_sync_messages),
    MetricSpec("connections", "connections", "gauge", "Open WebSocket connections.",
               lambda m: m.connections),
    MetricSpec("connectionsTotal", "connections_opened_total", "counter",
               "WebSocket connections opened.", lambda m: m.connections_total),
    MetricSpec("frames", "frames_sent_total", "counter", "Position frames sent, by format.",
               lambda m: m.frames, per_format=True),
    MetricSpec("bytes", "frame_bytes_sent_total", "counter",
               "Bytes of position frames sent, by format.", lambda m: m.frame_bytes,
               per_format=True),
    MetricSpec("nodes", "frame_nodes_sent_total", "counter",
               "Node entries in position frames sent, by format.", lambda m: m.nodes_sent,
               per_format=True),
    MetricSpec("keyframes", "keyframes_sent_total", "counter", "Keyframes sent, by format.",
               lambda m: m.keyframes, per_format=True),
    MetricSpec("bytesPerNode", "bytes_per_node", "gauge",
               "Position-frame bytes sent per node entry, by format.",
               lambda m: {f: m.bytes_per_node(f) for f in FORMATS}, per_format=True),
    MetricSpec("framesSkippedSlow", "frames_skipped_slow_total", "counter",
               "Frames skipped for slow clients.", lambda m: m.frames_skipped_slow),
    MetricSpec("keyframesInsteadOfDelta", "keyframes_instead_of_delta_total", "counter",
               "Keyframes sent to clients that missed the previous frame.",
               lambda m: m.keyframes_instead_of_delta),
    MetricSpec("slowClientCloses", "slow_client_closes_total", "counter",
               "Clients closed with 1013 for being too slow.", lambda m: m.slow_closes),
    MetricSpec("rateLimitWarnings", "rate_limit_warnings_total", "counter",
               "rate_limit_warning messages sent.", lambda m: m.rate_limit_warnings),
    MetricSpec("rateLimited", "rate_limited_total", "counter",
               "Messages and requests dropped for a rate limit.", lambda m: m.rate_limited),
    MetricSpec("bans", "bans_total", "counter", "Identities banned.", lambda m: m.bans),
    MetricSpec("errorsSent", "error_replies_total", "counter",
               "error replies sent for bad input.", lambda m: m.errors_sent),
    MetricSpec("errorsSuppressed", "error_replies_suppressed_total", "counter",
               "error replies not sent (over errorRepliesPerSecond).",
               lambda m: m.errors_suppressed),
    MetricSpec("snapshots", "snapshots_total", "counter",
               "Snapshots published by the simulation.", lambda m: m.snapshots),
    MetricSpec("snapshotsCoalesced", "snapshots_coalesced_total", "counter",
               "Snapshots replaced by a newer one before the event loop sent them (the loop "
               "was behind).", lambda m: m.snapshots_coalesced),
    MetricSpec("sourceChanges", "source_changes_total", "counter",
               "Topology changes read from the watched source.", lambda m: m.source_changes),
    MetricSpec("sourceErrors", "source_errors_total", "counter",
               "Files of the source that failed to read or parse (the graph kept its last good "
               "version).", lambda m: m.source_errors),
    MetricSpec("sourceReloads", "source_reloads_total", "counter",
               "Whole re-reads of the source (new epochs).", lambda m: m.source_reloads),
    MetricSpec("layoutSaves", "layout_saves_total", "counter",
               "Layouts saved to the settings database.", lambda m: m.layout_saves),
    MetricSpec("uptimeSeconds", "uptime_seconds", "gauge", "Seconds since the server started.",
               lambda m: m.uptime()),
)
"""Every metric, once: what both views are generated from."""


class _Collector(Collector):
    """Hands the counters to ``prometheus_client`` when ``/metrics`` is scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for spec in METRICS:
            name = "graphwire_" + (spec.prom.removesuffix("_total") if spec.kind == "counter"
                                   else spec.prom)
            labels = ["format"] if spec.per_format else []
            family: CounterMetricFamily | GaugeMetricFamily
            if spec.kind == "counter":
                family = CounterMetricFamily(name, spec.help, labels=labels)
            else:
                family = GaugeMetricFamily(name, spec.help, labels=labels)
            value = spec.read(self.metrics)
            if spec.per_format:
                for f in FORMATS:
                    if value[f] is not None:
                        family.add_metric([f], float(value[f]))
            else:
                family.add_metric([], float(value))
            yield family


def cluster_prometheus(state: dict[str, Any]) -> bytes:
    """Scale-out gauges and counters (Redis, the lease, the feed from the simulation) in the
    Prometheus text format, from the state ``/healthz`` reports."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, value: float) -> None:
        lines.extend([f"# HELP graphwire_{name} {help_}", f"# TYPE graphwire_{name} {kind}",
                      f"graphwire_{name} {value}"])

    redis = state["redis"]
    metric("redis_up", "gauge", "1 while Redis answers, else 0.", 1 if redis["up"] else 0)
    metric("redis_errors_total", "counter", "Redis operations that could not reach it.",
           redis["errors"])
    metric("redis_outages_total", "counter", "Times Redis became unreachable.",
           redis["outages"])
    if "lease" in state:
        metric("lease_held", "gauge", "1 while this simulation holds the lease.",
               1 if state["lease"] == "held" else 0)
        metric("takeovers_total", "counter", "Times this simulation took the lease.",
               state["takeovers"])
        metric("cluster_frames_dropped_total", "counter",
               "Frame sets not published (Redis unreachable or slower than the stream).",
               state["dropped"])
    if "received" in state:
        metric("cluster_messages_received_total", "counter",
               "Messages received from the simulation.", state["received"])
        metric("cluster_gaps_total", "counter", "Messages from the simulation that were missed.",
               state["gaps"])
    return ("\n".join(lines) + "\n").encode()
