"""Vectorised zigzag LEB128 varints (unsigned 7-bit groups, low group first, high bit = more).

Used by the compact stream (kind 0x03) for small integers: a move of a few grid steps costs one
byte. Encoding and decoding run over whole numpy arrays; no per-value Python loop.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .errors import malformed

MAX_VARINT_BYTES = 5
"""A u32 needs at most five 7-bit groups."""

U8 = npt.NDArray[np.uint8]


def zigzag(values: npt.NDArray[np.integer]) -> npt.NDArray[np.uint32]:
    """Map signed int32 to unsigned so small magnitudes stay small: 0,-1,1,-2 → 0,1,2,3."""
    v = values.astype(np.int64)
    if v.size and (int(v.min()) < -(2**31) or int(v.max()) > 2**31 - 1):
        raise ValueError("zigzag input must fit in int32")
    return ((v << 1) ^ (v >> 63)).astype(np.uint32)


def unzigzag(values: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
    """Inverse of :func:`zigzag`."""
    v = values.astype(np.int64)
    return (v >> 1) ^ -(v & 1)


def varint_lengths(values: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
    """Bytes each unsigned value takes as a varint."""
    v = values.astype(np.uint64)
    return (
        1
        + (v >= 1 << 7).astype(np.int64)
        + (v >= 1 << 14)
        + (v >= 1 << 21)
        + (v >= 1 << 28)
    )


def encode_varints(values: npt.NDArray[np.uint32]) -> bytes:
    """Concatenated varints of unsigned 32-bit values."""
    v = values.astype(np.uint64).reshape(-1)
    lengths = varint_lengths(v.astype(np.uint32))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.empty(int(ends[-1]) if v.size else 0, np.uint8)
    for k in range(MAX_VARINT_BYTES):
        has = lengths > k
        if not has.any():
            break
        group = ((v[has] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        more = (lengths[has] > k + 1).astype(np.uint8) << 7
        out[starts[has] + k] = group | more
    return out.tobytes()


def decode_varints(data: bytes | memoryview | U8, count: int, what: str) -> npt.NDArray[np.uint32]:
    """Exactly ``count`` varints that fill ``data`` completely, or a ProtocolError."""
    raw = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    if count == 0:
        if raw.size:
            raise malformed(f"{what}: {raw.size} bytes where no values were expected")
        return np.empty(0, np.uint32)
    if raw.size < count or raw.size > MAX_VARINT_BYTES * count:
        raise malformed(f"{what}: {raw.size} bytes cannot hold exactly {count} varints")
    last = (raw & 0x80) == 0
    ends = np.flatnonzero(last)
    if ends.size != count or not last[-1]:
        raise malformed(f"{what}: found {ends.size} complete varints, expected {count}")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if int(lengths.max()) > MAX_VARINT_BYTES:
        raise malformed(f"{what}: a varint is longer than {MAX_VARINT_BYTES} bytes")
    value_of_byte = np.repeat(np.arange(count), lengths)
    shift = (np.arange(raw.size) - starts[value_of_byte]) * 7
    parts = (raw & 0x7F).astype(np.uint64) << shift.astype(np.uint64)
    values = np.bitwise_or.reduceat(parts, starts)
    if int(values.max()) > 0xFFFFFFFF:
        raise malformed(f"{what}: a varint exceeds 32 bits")
    return values.astype(np.uint32)
