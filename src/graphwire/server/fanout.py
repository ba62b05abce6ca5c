"""Fan-out of shared position frames: one WebSocket frame built once, written to every client.

A server-to-client WebSocket frame is never masked (RFC 6455 §5.1), so the whole frame around a
shared payload, header included, is the same bytes for every client. :class:`WireFrame` builds
those bytes once per encoded payload; :func:`deliver` hands them to every connection of a group
in one pass, counting the group once. A connection writes them straight to its transport when
nothing else of its is waiting to be sent (the common case: one ``send`` system call a client a
frame, no task switch, no per-client framing), else queues them behind what is waiting, so the
order of messages on a connection is the order they were sent in (``subscription_confirmed``
and ``graph_changed`` before the frames that follow them, §6).

Backpressure stays with the stream hub: it offers a connection a position frame only when
nothing of its previous one is waiting (neither in its outbox nor in its transport's buffer);
otherwise the client is skipped and later sent the newest frame (docs/protocol.md §4.7, §4).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Protocol

from .metrics import Metrics

_OP_BINARY_FIN = 0x82
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def binary_frame(payload: bytes) -> bytes:
    """The unmasked, unfragmented WebSocket binary frame (RFC 6455 §5.2) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        head = bytes((_OP_BINARY_FIN, n))
    elif n < 1 << 16:
        head = _LEN16.pack(_OP_BINARY_FIN, 126, n)
    else:
        head = _LEN64.pack(_OP_BINARY_FIN, 127, n)
    return head + payload


class WireFrame:
    """An encoded position frame and, built on first use, the WebSocket frame around it."""

    __slots__ = ("_wire", "payload")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        """The whole WebSocket frame (header + payload), the same bytes for every client."""
        if self._wire is None:
            self._wire = binary_frame(self.payload)
        return self._wire

    def __len__(self) -> int:
        return len(self.payload)


class FrameSink(Protocol):
    """What the fan-out needs of a connection."""

    def write_frames(self, frames: Sequence[WireFrame]) -> bool:
        """Send position frames (in order, behind anything already queued on the connection);
        False when the connection is closed and took nothing."""


def deliver(sinks: Sequence[FrameSink], frames: Sequence[WireFrame], metrics: Metrics, fmt: str,
            nodes: int, keyframe: bool) -> None:
    """Send the same frames to every sink of a group; count them once for the group (the
    sinks that took them).

    ``nodes`` is what the last frame holds (the frames before it, when there are any, are the
    keyframe a client needed first); ``keyframe``: the first frame is a keyframe.
    """
    if not sinks:
        return
    for frame in frames:
        frame.wire  # noqa: B018 - build the shared bytes once, before the loop
    count = sum(sink.write_frames(frames) for sink in sinks)  # closed ones take nothing
    if not count:
        return
    for i, frame in enumerate(frames):
        last = i == len(frames) - 1
        metrics.frame(fmt, len(frame), nodes if last else 0, keyframe and i == 0, count)
        metrics.sent(len(frame), count)
