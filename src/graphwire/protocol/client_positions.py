"""CLIENT_POSITIONS, kind 0x20 (docs/protocol.md §4.8): nodes a user moved, sent to the server.

Header flags: ``0x01`` the payload is gzip (§2.2: any kind may compress its payload; a sender
compresses when it is over 256 bytes and gzip makes it smaller), ``0x02`` pin the nodes where
they are put, ``0x04`` release them to the physics; epoch = the client's epoch (low 16 bits);
seq = the client's batch number.
Payload ``n × (u32 id | f32 x | f32 y | f32 z)``. This module only parses; the checks of
§4.8 that need the graph (bounds, existing node, epoch) belong to the server.
"""

from __future__ import annotations

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
    compress: bool = False,
) -> bytes:
    """Encode a kind 0x20 batch (with ``compress``, gzip'd when that pays)."""
    ids_a = np.asarray(ids, dtype=np.uint32).reshape(-1)
    rec = np.empty(ids_a.shape[0], CLIENT_POSITION_DTYPE)
    rec["id"] = ids_a
    rec["pos"] = np.asarray(pos, dtype=np.float32).reshape(-1, 3)
    flags = (Flags.PIN if pin else 0) | (Flags.RELEASE if release else 0)
    payload, packed = maybe_gzip(rec.tobytes()) if compress else (rec.tobytes(), False)
    if packed:
        flags |= Flags.COMPRESSED
    return pack_header(Kind.CLIENT_POSITIONS, flags, epoch, batch) + payload


def decode_client_positions(data: bytes | memoryview, *,
                            max_inflated: int = MAX_INFLATED) -> ClientPositions:
    """Decode a kind 0x20 batch (a gzip'd payload is inflated, at most ``max_inflated``)."""
    header = unpack_header(data, Kind.CLIENT_POSITIONS)
    check_flag_bits(header.flags, Flags.COMPRESSED | Flags.PIN | Flags.RELEASE,
                    Kind.CLIENT_POSITIONS)
    if header.flags & Flags.PIN and header.flags & Flags.RELEASE:
        raise malformed("a client positions batch cannot both pin and release")
    body = memoryview(data)[HEADER_SIZE:]
    payload = gunzip_bounded(body, max_inflated) if header.compressed else body
    body_len = len(payload)
    if body_len % CLIENT_POSITION_DTYPE.itemsize:
        raise malformed(
            f"client positions payload of {body_len} bytes is not a whole number of "
            f"16-byte entries"
        )
    rec = np.frombuffer(payload, CLIENT_POSITION_DTYPE)
    return ClientPositions(header, rec["id"], rec["pos"])
