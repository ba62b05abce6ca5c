"""The messages a simulation publishes to its gateways, as bytes (no Redis, no sockets).

Every message on the stream channel is one *envelope*:

``b"GW1" | u8 kind | u32 headerLength | header (UTF-8 JSON) | blob bytes ...``

The header is a JSON object that always names the publisher's fencing ``token``, its ``epoch``
and a per-publisher counter ``n`` (gaps tell a gateway it missed messages), plus ``blobs``: the
length of each blob that follows, in order. Blobs are the already-encoded WebSocket frames, so a
gateway hands the very same bytes to its clients; nothing is re-encoded on the way.

Kinds:

- ``FRAMES``: one snapshot. Header: ``seq``, ``topologyVersion``, ``settled``,
  ``kineticEnergy``, ``keyframeAll``, ``rateHz`` and ``frames``: for each encoded stream, its
  name and what a gateway needs to choose between its frames (see :class:`FrameSet`). The first
  three blobs are the raw snapshot (u32 ids, u8 agent flags, f32 positions): gateways answer
  ``/api/graph/state`` from them and a standby simulation resumes the layout from them.
- ``GRAPH_CHANGED``: a ``graph_changed`` message (header ``message``), published before any
  frame that shows the change.
- ``SSSP``: one kind 0x05 frame (one blob).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

MAGIC = b"GW1"
_PREFIX = struct.Struct("<3sBI")


class EnvelopeError(ValueError):
    """Bytes on the channel that are not an envelope this version reads."""


class Kind(IntEnum):
    """What an envelope carries."""

    FRAMES = 1
    GRAPH_CHANGED = 2
    SSSP = 3


@dataclass(slots=True)
class Envelope:
    """A decoded message: its kind, header fields and blobs."""

    kind: Kind
    header: dict[str, Any]
    blobs: list[bytes]

    @property
    def token(self) -> int:
        """The fencing token of the publisher."""
        return int(self.header["token"])

    @property
    def epoch(self) -> int:
        """The epoch the publisher serves."""
        return int(self.header["epoch"])


def encode(kind: Kind, header: dict[str, Any],
           blobs: list[bytes] | tuple[bytes, ...] = ()) -> bytes:
    """An envelope as bytes; ``header`` gains ``blobs`` (their lengths)."""
    head = dict(header)
    head["blobs"] = [len(b) for b in blobs]
    text = json.dumps(head, separators=(",", ":"), allow_nan=False).encode()
    return b"".join([_PREFIX.pack(MAGIC, int(kind), len(text)), text, *blobs])


def decode(data: bytes) -> Envelope:
    """Parse an envelope, or raise :class:`EnvelopeError`."""
    if len(data) < _PREFIX.size:
        raise EnvelopeError("shorter than an envelope prefix")
    magic, kind, size = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeError(f"not a graphwire envelope (magic {magic!r})")
    try:
        k = Kind(kind)
    except ValueError:
        raise EnvelopeError(f"unknown envelope kind {kind}") from None
    start = _PREFIX.size
    try:
        header = json.loads(data[start:start + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"bad envelope header: {exc}") from None
    if not isinstance(header, dict):
        raise EnvelopeError("the envelope header is not an object")
    offset = start + size
    blobs: list[bytes] = []
    for length in header.get("blobs", []):
        if not isinstance(length, int) or length < 0 or offset + length > len(data):
            raise EnvelopeError("a blob runs past the end of the envelope")
        blobs.append(data[offset:offset + length])
        offset += length
    if offset != len(data):
        raise EnvelopeError(f"{len(data) - offset} bytes after the last blob")
    return Envelope(k, header, blobs)


@dataclass(slots=True, eq=False)
class VFrames:
    """A V1/V2 stream's frames for one snapshot: the keyframe, and the delta from seq - 1
    (None when the stream just (re)started) with the number of nodes it holds."""

    key: bytes
    delta: bytes | None
    moved: int


@dataclass(slots=True, eq=False)
class QFrames:
    """A ``q`` lane's frames for one snapshot (as :class:`~graphwire.protocol.q_encoder.QOutput`:
    ``frame`` applies to a client holding keyframe ``base_seq``; ``full`` is keyframe
    ``key_seq`` in full, for a client holding anything else); ``tick``: the lane ticked at this
    snapshot (its members are sent it; between ticks only catch-ups are)."""

    frame: bytes
    base_seq: int | None
    key_seq: int
    keyframe: bool
    moved: int
    full: bytes
    tick: bool = True


@dataclass(slots=True, eq=False)
class FrameSet:
    """One snapshot as published: the raw layout and every stream's encoded frames."""

    seq: int
    epoch: int
    topology_version: int
    settled: bool
    kinetic_energy: float
    keyframe_all: bool
    rate_hz: float
    ids: npt.NDArray[np.uint32]
    agent: npt.NDArray[np.bool_]
    pos: npt.NDArray[np.float32]
    v: dict[str, VFrames] = field(default_factory=dict)
    q: dict[str, QFrames] = field(default_factory=dict)  # by lane stream name

    def encode(self, token: int, n: int) -> bytes:
        """As a FRAMES envelope of publisher ``token``, message number ``n``."""
        blobs = [np.ascontiguousarray(self.ids, np.uint32).tobytes(),
                 np.ascontiguousarray(self.agent, np.uint8).tobytes(),
                 np.ascontiguousarray(self.pos, np.float32).tobytes()]
        streams: list[dict[str, Any]] = []
        for name, vf in self.v.items():
            streams.append({"stream": name, "moved": vf.moved, "delta": vf.delta is not None})
            blobs.append(vf.key)
            if vf.delta is not None:
                blobs.append(vf.delta)
        for name, qf in self.q.items():
            streams.append({"stream": name, "q": True, "baseSeq": qf.base_seq,
                            "keySeq": qf.key_seq, "keyframe": qf.keyframe, "tick": qf.tick,
                            "moved": qf.moved, "sameFull": qf.full is qf.frame})
            blobs.append(qf.frame)
            if qf.full is not qf.frame:
                blobs.append(qf.full)
        header = {"token": token, "n": n, "epoch": self.epoch, "seq": self.seq,
                  "topologyVersion": self.topology_version, "settled": self.settled,
                  "kineticEnergy": self.kinetic_energy, "keyframeAll": self.keyframe_all,
                  "rateHz": self.rate_hz, "frames": streams}
        return encode(Kind.FRAMES, header, blobs)

    @classmethod
    def from_envelope(cls, env: Envelope) -> FrameSet:
        """Rebuild a frame set from a FRAMES envelope (the frames are the published bytes)."""
        if env.kind != Kind.FRAMES:
            raise EnvelopeError(f"not a frame set: {env.kind.name}")
        h = env.header
        try:
            blobs = iter(env.blobs)
            ids = np.frombuffer(next(blobs), np.uint32)
            agent = np.frombuffer(next(blobs), np.uint8).astype(bool)
            pos = np.frombuffer(next(blobs), np.float32).reshape(-1, 3)
            if not ids.shape[0] == agent.shape[0] == pos.shape[0]:
                raise EnvelopeError("ids, agent flags and positions differ in length")
            out = cls(int(h["seq"]), int(h["epoch"]), int(h["topologyVersion"]),
                      bool(h["settled"]), float(h["kineticEnergy"]), bool(h["keyframeAll"]),
                      float(h["rateHz"]), ids, agent, pos)
            for s in h["frames"]:
                if s.get("q"):
                    frame = next(blobs)
                    full = frame if s["sameFull"] else next(blobs)
                    base = s["baseSeq"]
                    out.q[str(s["stream"])] = QFrames(
                        frame, None if base is None else int(base), int(s["keySeq"]),
                        bool(s["keyframe"]), int(s["moved"]), full, bool(s["tick"]))
                else:
                    key = next(blobs)
                    delta = next(blobs) if s["delta"] else None
                    out.v[str(s["stream"])] = VFrames(key, delta, int(s["moved"]))
        except (KeyError, TypeError, StopIteration) as exc:
            raise EnvelopeError(f"a malformed frame set ({exc!r})") from None
        return out
