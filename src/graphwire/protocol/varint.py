"""Zigzag LEB128 varints (7-bit groups, low group first, high bit = more follows).

Used by the compact stream (kind 0x03) for small integers: a move of a few grid steps costs one
byte. The loops are compiled (see ``_kernels``); no per-value Python loop runs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from . import _kernels
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


def unzigzag(values: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
    """Inverse of :func:`zigzag`."""
    v = values.astype(np.int64)
    return (v >> 1) ^ -(v & 1)


def encode_varints(values: npt.NDArray[np.integer]) -> bytes:
    """Concatenated varints of unsigned values below 2^32."""
    v = np.ascontiguousarray(values, dtype=np.int64).reshape(-1)
    if v.size and (int(v.min()) < 0 or int(v.max()) > 0xFFFFFFFF):
        raise ValueError("varint values must be in [0, 2^32)")
    out: U8 = _kernels.write_varints(v)
    return out.tobytes()


_STATUS = {
    1: "ends inside a varint or before the last value",
    3: "has a varint longer than 5 bytes or 32 bits",
    4: "has bytes left after the last value",
}


def decode_varints(data: bytes | memoryview | U8, count: int, what: str) -> npt.NDArray[np.int64]:
    """Exactly ``count`` varints that fill ``data`` completely, or a ProtocolError."""
    raw = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    if raw.size < count or raw.size > MAX_VARINT_BYTES * count:
        raise malformed(f"{what}: {raw.size} bytes cannot hold exactly {count} varints")
    out = np.empty(count, np.int64)
    status = _kernels.read_varints(raw, count, out)
    if status:
        raise malformed(f"{what}: the data {_STATUS.get(status, 'is malformed')}")
    return out
