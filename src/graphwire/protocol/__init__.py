"""graphwire's wire contract as a pure library: bytes in, typed values out, and back.

Nothing here does I/O, keeps global state or imports anything else of graphwire. Each module
names the section of docs/protocol.md it implements; every decoder raises only
:class:`~graphwire.protocol.errors.ProtocolError`.
"""

from .control import CloseCode, parse_client_message, parse_server_message
from .errors import ErrorCategory, ErrorCode, ErrorInfo, ProtocolError
from .header import HEADER_SIZE, Flags, FrameHeader, Kind, frame_kind, pack_header, unpack_header
from .positions import NodeRecords, PositionFrame, decode_v1, decode_v2, encode_v1, encode_v2
from .q_decoder import QDecoder
from .q_encoder import QStreamEncoder
from .quantized import decode_q
from .settings_codec import Tag, Value, decode_settings, encode_settings
from .sssp import decode_sssp, encode_sssp

__all__ = [
    "HEADER_SIZE",
    "CloseCode",
    "ErrorCategory",
    "ErrorCode",
    "ErrorInfo",
    "Flags",
    "FrameHeader",
    "Kind",
    "NodeRecords",
    "PositionFrame",
    "ProtocolError",
    "QDecoder",
    "QStreamEncoder",
    "Tag",
    "Value",
    "decode_q",
    "decode_settings",
    "decode_sssp",
    "decode_v1",
    "decode_v2",
    "encode_settings",
    "encode_sssp",
    "encode_v1",
    "encode_v2",
    "frame_kind",
    "pack_header",
    "parse_client_message",
    "parse_server_message",
    "unpack_header",
]
