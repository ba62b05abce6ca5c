"""gzip for frame payloads (docs/protocol.md §2, §5), with an inflate that never grows past a cap.

Senders compress a payload only when it is over 256 bytes *and* gzip makes it smaller; browsers
inflate it with the native ``DecompressionStream('gzip')``. Receivers inflate with a hard cap
(10 MiB by default): a decompression bomb costs at most the cap in memory, and is refused with
``too_large`` rather than allocated.
"""

from __future__ import annotations

import zlib

from .errors import ErrorCode, ProtocolError, malformed

COMPRESS_THRESHOLD = 256
"""Payloads of at most this many bytes are never compressed (§2.2, §5)."""

MAX_INFLATED = 10 * 1024 * 1024
"""Largest inflated payload accepted (§2, §10: 10 MiB)."""


class GzipTally:
    """Plain and gzip'd bytes of every payload :func:`maybe_gzip` compressed in this process.

    Frames are encoded once and shared by every client, so this counts each payload once, as
    encoded (the server's ``compressionRatio``). Counting is two integer additions; nothing
    else of the codecs keeps state.
    """

    __slots__ = ("packed", "payloads", "plain")

    def __init__(self) -> None:
        self.plain = 0
        self.packed = 0
        self.payloads = 0

    def add(self, plain: int, packed: int) -> None:
        """Count one compressed payload."""
        self.plain += plain
        self.packed += packed
        self.payloads += 1


GZIP_TALLY = GzipTally()
"""Every payload gzip'd by :func:`maybe_gzip` (kinds 0x03, 0x05 and 0x10)."""

# Level 6 is gzip's default; on the frames graphwire sends it is within 2% of level 9 in size
# and about 3x faster (see docs/benchmarks.md).
_LEVEL = 6


def gzip_bytes(data: bytes) -> bytes:
    """gzip ``data`` as one member with a zero mtime, so equal input gives equal bytes."""
    comp = zlib.compressobj(_LEVEL, zlib.DEFLATED, 31)
    return comp.compress(data) + comp.flush()


def maybe_gzip(payload: bytes, threshold: int = COMPRESS_THRESHOLD) -> tuple[bytes, bool]:
    """Compress when the payload is over ``threshold`` bytes and gzip makes it smaller."""
    if len(payload) <= threshold:
        return payload, False
    packed = gzip_bytes(payload)
    if len(packed) < len(payload):
        GZIP_TALLY.add(len(payload), len(packed))
        return packed, True
    return payload, False


def gunzip_bounded(data: bytes | memoryview, limit: int = MAX_INFLATED) -> bytes:
    """Inflate one gzip member, refusing output over ``limit`` and any trailing bytes."""
    inflater = zlib.decompressobj(31)
    try:
        out = inflater.decompress(data, limit)
        over = bool(inflater.unconsumed_tail)
        if not over and len(out) == limit and not inflater.eof:
            # All input consumed at exactly the limit: inflate one more byte to tell a bomb
            # from a truncated stream.
            over = bool(inflater.decompress(b"", 1))
        if over:
            # The output hit the limit with input left over: more output would follow.
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"compressed payload inflates past {limit} bytes"
            )
        if not inflater.eof:
            raise malformed("truncated gzip payload")
        if inflater.unused_data:
            raise malformed("trailing bytes after the gzip payload")
    except zlib.error as exc:
        raise malformed(f"bad gzip payload: {exc}") from None
    return out
