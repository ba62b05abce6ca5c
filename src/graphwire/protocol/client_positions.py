"""CLIENT_POSITIONS, kind 0x20 (PROTOCOL.md §3.6): nodes a user moved, sent to the server.

Header flags: ``0x02`` pin the nodes where they are put, ``0x04`` release them to the physics;
epoch = the client's epoch (low 16 bits); seq = the client's batch number.
Payload ``n × (u32 id | f32 x | f32 y | f32 z)``. This module only parses; the checks of
§3.6 that need the graph (bounds, existing node, epoch) belong to the server.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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

CLIENT_POSITION_DTYPE = np.dtype([("id", "<u4"), ("pos", "<f4", (3,))])


@dataclass(frozen=True, slots=True, eq=False)
class ClientPositions:
    """A decoded batch: header (seq = batch number), ids and (n, 3) positions."""

    header: FrameHeader
    ids: npt.NDArray[np.uint32]
    pos: npt.NDArray[np.float32]

    @property
    def batch(self) -> int:
        """The client's batch number."""
        return self.header.seq

    @property
    def pin(self) -> bool:
        """Pin these nodes where they are put."""
        return bool(self.header.flags & Flags.PIN)

    @property
    def release(self) -> bool:
        """Release these nodes to the physics."""
        return bool(self.header.flags & Flags.RELEASE)


def encode_client_positions(
    ids: npt.ArrayLike,
    pos: npt.ArrayLike,
    *,
    batch: int,
    epoch: int,
    pin: bool = False,
    release: bool = False,
) -> bytes:
    """Encode a kind 0x20 batch."""
    ids_a = np.asarray(ids, dtype=np.uint32).reshape(-1)
    rec = np.empty(ids_a.shape[0], CLIENT_POSITION_DTYPE)
    rec["id"] = ids_a
    rec["pos"] = np.asarray(pos, dtype=np.float32).reshape(-1, 3)
    flags = (Flags.PIN if pin else 0) | (Flags.RELEASE if release else 0)
    return pack_header(Kind.CLIENT_POSITIONS, flags, epoch, batch) + rec.tobytes()


def decode_client_positions(data: bytes | memoryview) -> ClientPositions:
    """Decode a kind 0x20 batch."""
    header = unpack_header(data, Kind.CLIENT_POSITIONS)
    check_flag_bits(header.flags, Flags.PIN | Flags.RELEASE, Kind.CLIENT_POSITIONS)
    if header.flags & Flags.PIN and header.flags & Flags.RELEASE:
        raise malformed("a client positions batch cannot both pin and release")
    body_len = len(data) - HEADER_SIZE
    if body_len % CLIENT_POSITION_DTYPE.itemsize:
        raise malformed(
            f"client positions payload of {body_len} bytes is not a whole number of "
            f"16-byte entries"
        )
    rec = np.frombuffer(data, CLIENT_POSITION_DTYPE, offset=HEADER_SIZE)
    return ClientPositions(header, rec["id"], rec["pos"])
