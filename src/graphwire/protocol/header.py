"""Frame kinds (docs/protocol.md §2) and the 8-byte header of kinds 0x01–0x03, 0x05, 0x20 (§2.2).

The first byte of every binary message is its kind and never a version, so one byte routes a
frame. The header is ``u8 kind | u8 flags | u16 epoch low 16 bits | u32 seq``, little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from .errors import ErrorCode, ProtocolError, malformed

HEADER_SIZE = 8
_HEADER = struct.Struct("<BBHI")


class Kind(IntEnum):
    """Binary frame kinds (§2)."""

    POSITIONS_V1 = 0x01
    POSITIONS_V2 = 0x02
    POSITIONS_Q = 0x03
    SSSP = 0x05
    SETTINGS = 0x10
    CLIENT_POSITIONS = 0x20


class Flags(IntFlag):
    """Header flag bits (§2.2). Bits 3–7 are zero unless a kind defines them."""

    NONE = 0
    COMPRESSED = 0x01
    KEYFRAME = 0x02
    SETTLED = 0x04

    # kind 0x20 reuses bits 1 and 2 (§4.8)
    PIN = 0x02
    RELEASE = 0x04


KNOWN_KINDS = frozenset(int(k) for k in Kind)
U32_MAX = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The decoded 8-byte header: kind, flags, the epoch's low 16 bits and seq."""

    kind: int
    flags: int
    epoch16: int
    seq: int

    def pack(self) -> bytes:
        """The 8 header bytes."""
        return pack_header(self.kind, self.flags, self.epoch16, self.seq)

    @property
    def compressed(self) -> bool:
        """Whether the payload is gzip-compressed."""
        return bool(self.flags & Flags.COMPRESSED)

    @property
    def keyframe(self) -> bool:
        """Whether the frame holds every live node."""
        return bool(self.flags & Flags.KEYFRAME)

    @property
    def settled(self) -> bool:
        """Whether the layout was settled at this snapshot."""
        return bool(self.flags & Flags.SETTLED)


def pack_header(kind: int, flags: int, epoch: int, seq: int) -> bytes:
    """Pack a header. ``epoch`` may be the full u32 epoch: only its low 16 bits are written."""
    if not 0 <= seq <= U32_MAX:
        raise ValueError(f"seq {seq} does not fit in u32")
    return _HEADER.pack(kind, flags & 0xFF, epoch & 0xFFFF, seq)


def unpack_header(data: bytes | memoryview, expect_kind: int | None = None) -> FrameHeader:
    """Read the header of a frame; check the kind when ``expect_kind`` is given."""
    if len(data) < HEADER_SIZE:
        raise malformed(f"frame of {len(data)} bytes is shorter than the 8-byte header")
    kind, flags, epoch16, seq = _HEADER.unpack_from(data, 0)
    if kind not in KNOWN_KINDS:
        raise ProtocolError(ErrorCode.UNKNOWN_KIND, f"unknown frame kind 0x{kind:02x}")
    if expect_kind is not None and kind != expect_kind:
        raise malformed(f"expected kind 0x{expect_kind:02x}, got 0x{kind:02x}")
    return FrameHeader(kind, flags, epoch16, seq)


def frame_kind(data: bytes | memoryview) -> Kind:
    """The kind of a binary message (its first byte), or a ProtocolError."""
    if len(data) == 0:
        raise malformed("empty binary message")
    kind = data[0]
    if kind not in KNOWN_KINDS:
        raise ProtocolError(ErrorCode.UNKNOWN_KIND, f"unknown frame kind 0x{kind:02x}")
    return Kind(kind)


def check_flag_bits(flags: int, allowed: int, kind: int) -> None:
    """Reject flag bits a kind does not define (they must be zero, §2.2).

    Plain integers on purpose: the complement of an ``IntFlag`` keeps only its defined members,
    so ``~(Flags.KEYFRAME | Flags.SETTLED)`` would leave the undefined bits 3–7 out of the test.
    """
    extra = int(flags) & ~int(allowed) & 0xFF
    if extra:
        raise malformed(f"kind 0x{kind:02x} does not define flag bits 0x{extra:02x}")
