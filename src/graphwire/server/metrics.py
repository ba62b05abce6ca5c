"""Server metrics (PROTOCOL.md §8) as JSON (``/api/metrics``) and Prometheus text (``/metrics``).

Plain counters on the event loop: incrementing one costs a dict lookup, so the hot path can
count every frame.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

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
        self.compressed_in = 0  # plain bytes of payloads that were gzip'd
        self.compressed_out = 0  # their gzip'd bytes
        self.connections = 0
        self.connections_total = 0
        self.frames: defaultdict[str, int] = defaultdict(int)
        self.frame_bytes: defaultdict[str, int] = defaultdict(int)
        self.nodes_sent: defaultdict[str, int] = defaultdict(int)
        self.keyframes: defaultdict[str, int] = defaultdict(int)
        self.frames_skipped_slow = 0
        self.keyframes_instead_of_delta = 0
        self.slow_closes = 0
        self.rate_limit_warnings = 0
        self.rate_limited = 0
        self.bans = 0
        self.errors_sent = 0
        self.errors_suppressed = 0
        self.snapshots = 0
        self.source_changes = 0  # topology changes read from the watched source
        self.source_errors = 0  # files of the source that failed to read or parse
        self.source_reloads = 0  # whole re-reads (POST /api/graph/reload)
        self.layout_saves = 0  # layouts written to the database

    def sent(self, nbytes: int) -> None:
        """One message of ``nbytes`` went out."""
        self.messages_sent += 1
        self.bytes_sent += nbytes

    def received(self, nbytes: int) -> None:
        """One message of ``nbytes`` came in."""
        self.messages_received += 1
        self.bytes_received += nbytes

    def frame(self, fmt: str, nbytes: int, nodes: int, keyframe: bool) -> None:
        """One position frame of a format went to one client."""
        self.frames[fmt] += 1
        self.frame_bytes[fmt] += nbytes
        self.nodes_sent[fmt] += nodes
        if keyframe:
            self.keyframes[fmt] += 1

    def compressed(self, plain: int, packed: int) -> None:
        """A payload of ``plain`` bytes was sent as ``packed``."""
        self.compressed_in += plain
        self.compressed_out += packed

    @property
    def compression_ratio(self) -> float:
        """Plain bytes over compressed bytes of every gzip'd payload (1.0 when none)."""
        return self.compressed_in / self.compressed_out if self.compressed_out else 1.0

    def as_json(self) -> dict[str, Any]:
        """The JSON of ``/api/metrics``."""
        per_format = {
            f: {
                "frames": self.frames[f],
                "bytes": self.frame_bytes[f],
                "keyframes": self.keyframes[f],
                "bytesPerNode": round(self.frame_bytes[f] / self.nodes_sent[f], 3)
                if self.nodes_sent[f] else None,
            }
            for f in FORMATS
        }
        return {
            "messagesSent": self.messages_sent,
            "messagesReceived": self.messages_received,
            "bytesSent": self.bytes_sent,
            "bytesReceived": self.bytes_received,
            "compressionRatio": round(self.compression_ratio, 3),
            "deltaMessages": self.delta_messages,
            "fullSyncMessages": self.full_sync_messages,
            "connections": self.connections,
            "connectionsTotal": self.connections_total,
            "formats": per_format,
            "framesSkippedSlow": self.frames_skipped_slow,
            "keyframesInsteadOfDelta": self.keyframes_instead_of_delta,
            "slowClientCloses": self.slow_closes,
            "rateLimitWarnings": self.rate_limit_warnings,
            "rateLimited": self.rate_limited,
            "bans": self.bans,
            "errorsSent": self.errors_sent,
            "errorsSuppressed": self.errors_suppressed,
            "snapshots": self.snapshots,
            "sourceChanges": self.source_changes,
            "sourceErrors": self.source_errors,
            "sourceReloads": self.source_reloads,
            "layoutSaves": self.layout_saves,
            "uptimeSeconds": round(time.time() - self.started, 1),
        }

    def prometheus(self) -> str:
        """The same counters in the Prometheus text exposition format."""
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP graphwire_{name} {help_}")
            lines.append(f"# TYPE graphwire_{name} {kind}")
            for labels, value in samples:
                lines.append(f"graphwire_{name}{labels} {value}")

        metric("messages_sent_total", "counter", "WebSocket messages sent.",
               [("", self.messages_sent)])
        metric("messages_received_total", "counter", "WebSocket messages received.",
               [("", self.messages_received)])
        metric("bytes_sent_total", "counter", "Bytes of WebSocket messages sent.",
               [("", self.bytes_sent)])
        metric("bytes_received_total", "counter", "Bytes of WebSocket messages received.",
               [("", self.bytes_received)])
        metric("compression_ratio", "gauge", "Plain over gzip'd bytes of compressed payloads.",
               [("", round(self.compression_ratio, 4))])
        metric("settings_delta_messages_total", "counter", "Settings Deltas sent.",
               [("", self.delta_messages)])
        metric("settings_full_sync_messages_total", "counter", "Settings Snapshots sent.",
               [("", self.full_sync_messages)])
        metric("connections", "gauge", "Open WebSocket connections.", [("", self.connections)])
        metric("frames_sent_total", "counter", "Position frames sent, by format.",
               [(f'{{format="{f}"}}', self.frames[f]) for f in FORMATS])
        metric("frame_bytes_sent_total", "counter", "Bytes of position frames, by format.",
               [(f'{{format="{f}"}}', self.frame_bytes[f]) for f in FORMATS])
        metric("frame_nodes_sent_total", "counter", "Node entries in position frames, by format.",
               [(f'{{format="{f}"}}', self.nodes_sent[f]) for f in FORMATS])
        metric("keyframes_sent_total", "counter", "Keyframes sent, by format.",
               [(f'{{format="{f}"}}', self.keyframes[f]) for f in FORMATS])
        metric("frames_skipped_slow_total", "counter", "Frames skipped for slow clients.",
               [("", self.frames_skipped_slow)])
        metric("keyframes_instead_of_delta_total", "counter",
               "Keyframes sent to clients that missed the previous frame.",
               [("", self.keyframes_instead_of_delta)])
        metric("rate_limit_warnings_total", "counter", "rate_limit_warning messages sent.",
               [("", self.rate_limit_warnings)])
        metric("rate_limited_total", "counter", "Messages dropped for a rate limit.",
               [("", self.rate_limited)])
        metric("bans_total", "counter", "Identities banned.", [("", self.bans)])
        metric("snapshots_total", "counter", "Snapshots published by the simulation.",
               [("", self.snapshots)])
        metric("source_changes_total", "counter", "Topology changes read from the watched source.",
               [("", self.source_changes)])
        metric("source_errors_total", "counter",
               "Files of the source that failed to read or parse (the graph kept its last "
               "good version).", [("", self.source_errors)])
        metric("source_reloads_total", "counter", "Whole re-reads of the source (new epochs).",
               [("", self.source_reloads)])
        metric("layout_saves_total", "counter", "Layouts saved to the settings database.",
               [("", self.layout_saves)])
        return "\n".join(lines) + "\n"
