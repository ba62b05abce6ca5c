"""POSITIONS_V1 (kind 0x01, 34-byte records) and POSITIONS_V2 (kind 0x02, 36-byte records).

docs/protocol.md §4.7. A record is described once as a numpy dtype; a whole frame is built by
filling the fields of one array and taking its bytes once, and decoded as a zero-copy view of the
received bytes. No per-node Python loop runs on either path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import ErrorCode, ProtocolError, malformed
from .header import (
    HEADER_SIZE,
    Flags,
    FrameHeader,
    Kind,
    check_flag_bits,
    pack_header,
    unpack_header,
)

V1_DTYPE = np.dtype(
    [
        ("wire_id", "<u2"),
        ("pos", "<f4", (3,)),
        ("vel", "<f4", (3,)),
        ("dist", "<f4"),
        ("parent", "<i4"),
    ]
)
V2_DTYPE = np.dtype(
    [
        ("wire_id", "<u4"),
        ("pos", "<f4", (3,)),
        ("vel", "<f4", (3,)),
        ("dist", "<f4"),
        ("parent", "<i4"),
    ]
)
assert V1_DTYPE.itemsize == 34 and V2_DTYPE.itemsize == 36

V1_MAX_ID = 0x3FFF
V1_ID_MASK, V1_KNOWLEDGE, V1_AGENT = 0x3FFF, 0x4000, 0x8000
V2_MAX_ID = 0x3FFFFFFF
V2_ID_MASK, V2_KNOWLEDGE, V2_AGENT = 0x3FFFFFFF, 0x40000000, 0x80000000

_ALLOWED_FLAGS = Flags.KEYFRAME | Flags.SETTLED

FloatArray = npt.NDArray[np.float32]


class FrameBuffer:
    """Reusable scratch memory for building frames.

    A 100,000-node V2 frame is 3.6 MB; allocating that fresh for every frame costs more in page
    faults than filling it. With a FrameBuffer the records are built in warm memory and the only
    fresh allocation per frame is the immutable ``bytes`` object that is sent. One buffer per
    encoding thread; it grows to the largest frame built and stays that size.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = np.empty(0, np.uint8)

    def get(self, size: int) -> npt.NDArray[np.uint8]:
        """A writable view of ``size`` bytes (contents undefined)."""
        if self._buf.size < size:
            self._buf = np.empty(max(size, self._buf.size + self._buf.size // 4), np.uint8)
        return self._buf[:size]


@dataclass(frozen=True, slots=True, eq=False)
class NodeRecords:
    """Columns of a position frame: one entry per node, in frame order.

    ``ids`` u32, ``agent`` bool (False = knowledge), ``pos`` and ``vel`` (n, 3) float32,
    ``dist`` float32 (+inf where no path is known) and ``parent`` int32 (-1 where none).
    """

    ids: npt.NDArray[np.uint32]
    agent: npt.NDArray[np.bool_]
    pos: FloatArray
    vel: FloatArray
    dist: FloatArray
    parent: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def build(
        cls,
        ids: npt.ArrayLike,
        pos: npt.ArrayLike,
        *,
        agent: npt.ArrayLike | None = None,
        vel: npt.ArrayLike | None = None,
        dist: npt.ArrayLike | None = None,
        parent: npt.ArrayLike | None = None,
    ) -> NodeRecords:
        """Columns from array-likes, with the §4.7 defaults for what is not given."""
        ids_a = np.asarray(ids, dtype=np.uint32).reshape(-1)
        n = ids_a.shape[0]
        pos_a = np.asarray(pos, dtype=np.float32).reshape(n, 3)
        return cls(
            ids=ids_a,
            agent=np.zeros(n, bool) if agent is None else np.asarray(agent, bool).reshape(n),
            pos=pos_a,
            vel=np.zeros((n, 3), np.float32)
            if vel is None
            else np.asarray(vel, np.float32).reshape(n, 3),
            dist=np.full(n, np.inf, np.float32)
            if dist is None
            else np.asarray(dist, np.float32).reshape(n),
            parent=np.full(n, -1, np.int32)
            if parent is None
            else np.asarray(parent, np.int32).reshape(n),
        )


@dataclass(frozen=True, slots=True, eq=False)
class PositionFrame:
    """A decoded V1 or V2 frame: its header and its node columns (views of the frame bytes)."""

    header: FrameHeader
    nodes: NodeRecords


def _encode(kind: Kind, dtype: np.dtype[np.void], wire_ids: npt.NDArray[np.unsignedinteger],
            flags: int, epoch: int, seq: int, nodes: NodeRecords,
            scratch: FrameBuffer | None) -> bytes:
    n = len(nodes)
    size = HEADER_SIZE + n * dtype.itemsize
    buf = scratch.get(size) if scratch is not None else np.empty(size, np.uint8)
    buf[:HEADER_SIZE] = np.frombuffer(pack_header(kind, flags, epoch, seq), np.uint8)
    rec = buf[HEADER_SIZE:].view(dtype)
    rec["wire_id"] = wire_ids
    rec["pos"] = nodes.pos
    rec["vel"] = nodes.vel
    rec["dist"] = nodes.dist
    rec["parent"] = nodes.parent
    return buf.tobytes()


def _check_flags(flags: int, kind: int) -> int:
    check_flag_bits(flags, _ALLOWED_FLAGS, kind)
    return flags


def encode_v2(nodes: NodeRecords, *, seq: int, epoch: int, flags: int = 0,
              scratch: FrameBuffer | None = None) -> bytes:
    """Encode a V2 frame (kind 0x02). ``flags`` may hold KEYFRAME and SETTLED."""
    _check_flags(flags, Kind.POSITIONS_V2)
    if n_over := int(np.count_nonzero(nodes.ids > V2_MAX_ID)):
        raise ProtocolError(
            ErrorCode.FORMAT_UNSUPPORTED, f"{n_over} node ids exceed the 30-bit V2 id space"
        )
    wire = nodes.ids | np.where(nodes.agent, np.uint32(V2_AGENT), np.uint32(V2_KNOWLEDGE))
    return _encode(Kind.POSITIONS_V2, V2_DTYPE, wire, flags, epoch, seq, nodes, scratch)


def v1_fits(ids: npt.NDArray[np.integer]) -> bool:
    """Whether every id can be written in a V1 record (ids up to 16383)."""
    return ids.shape[0] == 0 or int(ids.max()) <= V1_MAX_ID


def encode_v1(nodes: NodeRecords, *, seq: int, epoch: int, flags: int = 0,
              scratch: FrameBuffer | None = None) -> bytes:
    """Encode a V1 frame (kind 0x01); ids above 16383 are refused, never truncated."""
    _check_flags(flags, Kind.POSITIONS_V1)
    if not v1_fits(nodes.ids):
        raise ProtocolError(
            ErrorCode.FORMAT_UNSUPPORTED,
            f"node id {int(nodes.ids.max())} is above 16383 and cannot be written in V1",
        )
    ids16 = nodes.ids.astype(np.uint16)
    wire = ids16 | np.where(nodes.agent, np.uint16(V1_AGENT), np.uint16(V1_KNOWLEDGE))
    return _encode(Kind.POSITIONS_V1, V1_DTYPE, wire, flags, epoch, seq, nodes, scratch)


def _decode(data: bytes | memoryview, kind: Kind, dtype: np.dtype[np.void], id_mask: int,
            knowledge_bit: int, agent_bit: int) -> PositionFrame:
    header = unpack_header(data, kind)
    if header.compressed:
        raise malformed(f"kind 0x{kind:02x} frames are never compressed")
    _check_flags(header.flags, kind)
    body_len = len(data) - HEADER_SIZE
    if body_len % dtype.itemsize:
        raise malformed(
            f"kind 0x{kind:02x} payload of {body_len} bytes is not a whole number of "
            f"{dtype.itemsize}-byte records"
        )
    rec = np.frombuffer(data, dtype, offset=HEADER_SIZE)
    wire = rec["wire_id"]
    agent = (wire & agent_bit) != 0
    knowledge = (wire & knowledge_bit) != 0
    if np.any(agent == knowledge):
        bad = int(np.flatnonzero(agent == knowledge)[0])
        raise malformed(f"record {bad} must set exactly one of the agent and knowledge bits")
    ids = (wire & id_mask).astype(np.uint32)
    nodes = NodeRecords(ids, agent, rec["pos"], rec["vel"], rec["dist"], rec["parent"])
    return PositionFrame(header, nodes)


def decode_v2(data: bytes | memoryview) -> PositionFrame:
    """Decode a V2 frame; the position columns are views of ``data``."""
    return _decode(data, Kind.POSITIONS_V2, V2_DTYPE, V2_ID_MASK, V2_KNOWLEDGE, V2_AGENT)


def decode_v1(data: bytes | memoryview) -> PositionFrame:
    """Decode a V1 frame; the position columns are views of ``data``."""
    return _decode(data, Kind.POSITIONS_V1, V1_DTYPE, V1_ID_MASK, V1_KNOWLEDGE, V1_AGENT)
