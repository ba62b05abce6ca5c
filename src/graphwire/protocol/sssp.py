"""SSSP frames, kind 0x05 (docs/protocol.md §4.9): distance and parent of every node id.

Payload ``u32 source | u32 count | count × f32 distance | count × i32 parent``, indexed by node id,
where ``count`` is the highest id assigned in the epoch + 1. ``source`` is ``0xFFFFFFFF`` when
no source is set. Compressed when the payload is over 256 bytes and gzip makes it smaller.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .compression import MAX_INFLATED, gunzip_bounded, maybe_gzip
from .errors import malformed
from .header import (
    HEADER_SIZE,
    Flags,
    FrameHeader,
    Kind,
    check_flag_bits,
    pack_header,
    unpack_header,
)

NO_SOURCE = 0xFFFFFFFF
_PREFIX = struct.Struct("<II")


@dataclass(frozen=True, slots=True, eq=False)
class SsspFrame:
    """A decoded SSSP frame. ``source`` is None when cleared."""

    header: FrameHeader
    source: int | None
    distance: npt.NDArray[np.float32]
    parent: npt.NDArray[np.int32]


def encode_sssp(
    source: int | None,
    distance: npt.ArrayLike,
    parent: npt.ArrayLike,
    *,
    seq: int,
    epoch: int,
    settled: bool = False,
) -> bytes:
    """Encode an SSSP frame for snapshot ``seq``; gzip the payload where it pays."""
    dist = np.ascontiguousarray(distance, dtype="<f4").reshape(-1)
    par = np.ascontiguousarray(parent, dtype="<i4").reshape(-1)
    if dist.shape != par.shape:
        raise ValueError("distance and parent must have one entry per node id")
    src = NO_SOURCE if source is None else source
    payload = _PREFIX.pack(src, dist.shape[0]) + dist.tobytes() + par.tobytes()
    body, packed = maybe_gzip(payload)
    flags = (Flags.COMPRESSED if packed else 0) | (Flags.SETTLED if settled else 0)
    return pack_header(Kind.SSSP, flags, epoch, seq) + body


def decode_sssp(data: bytes | memoryview, *, max_inflated: int = MAX_INFLATED) -> SsspFrame:
    """Decode an SSSP frame, inflating at most ``max_inflated`` bytes."""
    header = unpack_header(data, Kind.SSSP)
    check_flag_bits(header.flags, Flags.COMPRESSED | Flags.SETTLED, Kind.SSSP)
    body = memoryview(data)[HEADER_SIZE:]
    payload = gunzip_bounded(body, max_inflated) if header.compressed else bytes(body)
    if len(payload) < _PREFIX.size:
        raise malformed("SSSP payload is shorter than its 8-byte prefix")
    src, count = _PREFIX.unpack_from(payload, 0)
    if len(payload) != _PREFIX.size + 8 * count:
        raise malformed(
            f"SSSP payload of {len(payload)} bytes does not hold {count} distances and parents"
        )
    dist = np.frombuffer(payload, "<f4", count, _PREFIX.size)
    par = np.frombuffer(payload, "<i4", count, _PREFIX.size + 4 * count)
    if src != NO_SOURCE and src >= count:
        raise malformed(f"SSSP source {src} is outside the {count} node ids")
    return SsspFrame(header, None if src == NO_SOURCE else src, dist, par)
