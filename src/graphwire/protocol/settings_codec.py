"""The binary settings protocol, kind 0x10 (docs/protocol.md §5): typed values and twelve messages.

Frame: ``0x10 | c | body`` where ``c`` is 0x00 (plain) or 0xFF (gzip of the plain body); senders
compress when the plain body is over 256 bytes and gzip makes it smaller. Values are
``u8 tag | data``. Decoding checks every length against the bytes actually present before it
allocates, limits nesting to 32 levels, and rejects bad utf-8 and trailing bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeAlias

import blake3

from .compression import MAX_INFLATED, gunzip_bounded, gzip_bytes, maybe_gzip
from .errors import ErrorCode, ProtocolError, malformed
from .header import Kind

PLAIN, GZIP = 0x00, 0xFF
MAX_DEPTH = 32
"""Nesting deeper than this is malformed (§5): it bounds the decoder's recursion."""


class Tag(IntEnum):
    """Value tags (§5)."""

    NULL = 0x00
    BOOL = 0x01
    I32 = 0x02
    I64 = 0x03
    F32 = 0x04
    F64 = 0x05
    STRING = 0x06
    BYTES = 0x07
    ARRAY = 0x08
    OBJECT = 0x09


class SettingsErrorCode(IntEnum):
    """Error codes of the settings Error message (§5)."""

    UNKNOWN_PATH = 1
    TYPE_MISMATCH = 2
    INVALID_VALUE = 3
    MALFORMED = 4
    RATE_LIMITED = 5
    FORBIDDEN = 6
    INTERNAL = 7


I32_MIN, I32_MAX = -(2**31), 2**31 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class Value:
    """A typed settings value: its tag and its data (arrays and objects as tuples)."""

    tag: Tag
    data: Any

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def of(cls, obj: Any) -> Value:
        """Infer a tag for a plain Python value: int → I32 (I64 if it does not fit), float → F64."""
        if isinstance(obj, Value):
            return obj
        if obj is None:
            return cls(Tag.NULL, None)
        if isinstance(obj, bool):
            return cls(Tag.BOOL, obj)
        if isinstance(obj, int):
            if I32_MIN <= obj <= I32_MAX:
                return cls(Tag.I32, obj)
            if I64_MIN <= obj <= I64_MAX:
                return cls(Tag.I64, obj)
            raise ValueError(f"integer {obj} does not fit in 64 bits")
        if isinstance(obj, float):
            return cls(Tag.F64, obj)
        if isinstance(obj, str):
            return cls(Tag.STRING, obj)
        if isinstance(obj, bytes | bytearray | memoryview):
            return cls(Tag.BYTES, bytes(obj))
        if isinstance(obj, Mapping):
            items = []
            for k, v in obj.items():
                if not isinstance(k, str):
                    raise ValueError("object keys must be strings")
                items.append((k, cls.of(v)))
            return cls(Tag.OBJECT, tuple(items))
        if isinstance(obj, list | tuple):
            return cls(Tag.ARRAY, tuple(cls.of(v) for v in obj))
        raise ValueError(f"no settings value type for {type(obj).__name__}")

    def to_python(self) -> Any:
        """The plain Python value (arrays as lists, objects as dicts)."""
        if self.tag == Tag.ARRAY:
            return [v.to_python() for v in self.data]
        if self.tag == Tag.OBJECT:
            return {k: v.to_python() for k, v in self.data}
        return self.data

    def encode(self) -> bytes:
        """The value's bytes: ``u8 tag | data``."""
        out = bytearray()
        _encode_value(self, out, 0)
        return bytes(out)


def _encode_value(v: Value, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"value nests deeper than {MAX_DEPTH} levels")
    out.append(v.tag)
    t, d = v.tag, v.data
    if t == Tag.NULL:
        return
    if t == Tag.BOOL:
        out.append(1 if d else 0)
    elif t == Tag.I32:
        out += struct.pack("<i", d)
    elif t == Tag.I64:
        out += struct.pack("<q", d)
    elif t == Tag.F32:
        out += struct.pack("<f", d)
    elif t == Tag.F64:
        out += struct.pack("<d", d)
    elif t == Tag.STRING:
        raw = d.encode("utf-8")
        out += struct.pack("<I", len(raw)) + raw
    elif t == Tag.BYTES:
        out += struct.pack("<I", len(d)) + d
    elif t == Tag.ARRAY:
        out += struct.pack("<I", len(d))
        for item in d:
            _encode_value(item, out, depth + 1)
    elif t == Tag.OBJECT:
        out += struct.pack("<I", len(d))
        for key, item in d:
            raw = key.encode("utf-8")
            out += struct.pack("<I", len(raw)) + raw
            _encode_value(item, out, depth + 1)
    else:  # pragma: no cover - Tag is closed
        raise ValueError(f"unknown tag {t}")


class _Reader:
    """Bounds-checked little-endian reader over one plain body."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.remaining():
            raise malformed(f"{what}: needs {n} bytes, {self.remaining()} left")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size, what))

    def u8(self, what: str) -> int:
        return int(self.unpack("<B", what)[0])

    def u16(self, what: str) -> int:
        return int(self.unpack("<H", what)[0])

    def u32(self, what: str) -> int:
        return int(self.unpack("<I", what)[0])

    def u64(self, what: str) -> int:
        return int(self.unpack("<Q", what)[0])

    def utf8(self, n: int, what: str) -> str:
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise malformed(f"{what} is not valid utf-8") from None

    def count(self, min_item_size: int, what: str) -> int:
        """A u32 count, checked against the bytes left (each item takes at least one byte)."""
        n = self.u32(what)
        if n * min_item_size > self.remaining():
            raise malformed(f"{what}: {n} items cannot fit in {self.remaining()} bytes")
        return n

    def end(self) -> None:
        if self.remaining():
            raise malformed(f"{self.remaining()} trailing bytes after the message")


def _read_value(r: _Reader, depth: int) -> Value:
    if depth > MAX_DEPTH:
        raise malformed(f"value nests deeper than {MAX_DEPTH} levels")
    raw_tag = r.u8("value tag")
    try:
        tag = Tag(raw_tag)
    except ValueError:
        raise malformed(f"unknown value tag 0x{raw_tag:02x}") from None
    if tag == Tag.NULL:
        return Value(tag, None)
    if tag == Tag.BOOL:
        b = r.u8("bool")
        if b > 1:
            raise malformed(f"bool byte {b} is not 0 or 1")
        return Value(tag, b == 1)
    if tag == Tag.I32:
        return Value(tag, r.unpack("<i", "i32")[0])
    if tag == Tag.I64:
        return Value(tag, r.unpack("<q", "i64")[0])
    if tag == Tag.F32:
        return Value(tag, r.unpack("<f", "f32")[0])
    if tag == Tag.F64:
        return Value(tag, r.unpack("<d", "f64")[0])
    if tag == Tag.STRING:
        return Value(tag, r.utf8(r.u32("string length"), "string"))
    if tag == Tag.BYTES:
        return Value(tag, r.take(r.u32("bytes length"), "bytes"))
    if tag == Tag.ARRAY:
        n = r.count(1, "array length")
        return Value(tag, tuple(_read_value(r, depth + 1) for _ in range(n)))
    n = r.count(5, "object length")
    items: list[tuple[str, Value]] = []
    seen: set[str] = set()
    for _ in range(n):
        key = r.utf8(r.u32("object key length"), "object key")
        if key in seen:
            raise malformed(f"object key {key!r} appears twice")
        seen.add(key)
        items.append((key, _read_value(r, depth + 1)))
    return Value(Tag.OBJECT, tuple(items))


def decode_value(data: bytes) -> Value:
    """Decode exactly one value."""
    r = _Reader(bytes(data))
    v = _read_value(r, 0)
    r.end()
    return v


# ---------------------------------------------------------------------------------------------
# messages

Entries: TypeAlias = tuple[tuple[int, Value], ...]


def entries(items: Iterable[tuple[int, Any]]) -> Entries:
    """Normalise (pathId, value) pairs, inferring tags for plain Python values."""
    return tuple((int(pid), Value.of(v)) for pid, v in items)


@dataclass(frozen=True, slots=True)
class Get:
    """0x01 Get, C→S."""

    req: int
    path_id: int


@dataclass(frozen=True, slots=True)
class Set:
    """0x02 Set, C→S."""

    req: int
    path_id: int
    value: Value


@dataclass(frozen=True, slots=True)
class BatchGet:
    """0x03 BatchGet, C→S."""

    req: int
    path_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BatchSet:
    """0x04 BatchSet, C→S: all or nothing."""

    req: int
    entries: Entries


@dataclass(frozen=True, slots=True)
class Delta:
    """0x05 Delta, S→C: one committed change set."""

    revision: int
    entries: Entries


@dataclass(frozen=True, slots=True)
class Response:
    """0x06 Response, S→C: the one reply to a request that succeeded."""

    req: int
    revision: int
    entries: Entries


@dataclass(frozen=True, slots=True)
class Error:
    """0x07 Error, S→C: the one reply to a request that failed."""

    req: int
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Ping:
    """0x08 Ping, both ways."""

    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Pong:
    """0x09 Pong, both ways (timestamp echoed)."""

    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class PathEntry:
    """One row of a PathTable: id, declared tag and dotted path."""

    path_id: int
    tag: Tag
    path: str


@dataclass(frozen=True, slots=True)
class PathTable:
    """0x0A PathTable, S→C."""

    paths: tuple[PathEntry, ...]


@dataclass(frozen=True, slots=True)
class Sync:
    """0x0B Sync, C→S."""

    req: int
    since_revision: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """0x0C Snapshot, S→C: every path, the revision and the digest."""

    req: int
    revision: int
    digest: bytes
    entries: Entries


SettingsMessage: TypeAlias = (
    Get | Set | BatchGet | BatchSet | Delta | Response | Error | Ping | Pong | PathTable | Sync
    | Snapshot
)

MESSAGE_IDS: dict[type, int] = {
    Get: 0x01, Set: 0x02, BatchGet: 0x03, BatchSet: 0x04, Delta: 0x05, Response: 0x06,
    Error: 0x07, Ping: 0x08, Pong: 0x09, PathTable: 0x0A, Sync: 0x0B, Snapshot: 0x0C,
}
REQUESTS = (Get, Set, BatchGet, BatchSet, Sync)


def _put_entries(out: bytearray, items: Entries) -> None:
    out += struct.pack("<I", len(items))
    for pid, value in items:
        out += struct.pack("<I", pid)
        _encode_value(value, out, 0)


def encode_body(msg: SettingsMessage) -> bytes:
    """The plain body of a message (``u8 message | fields``)."""
    out = bytearray([MESSAGE_IDS[type(msg)]])
    if isinstance(msg, Get):
        out += struct.pack("<II", msg.req, msg.path_id)
    elif isinstance(msg, Set):
        out += struct.pack("<II", msg.req, msg.path_id)
        _encode_value(msg.value, out, 0)
    elif isinstance(msg, BatchGet):
        out += struct.pack(f"<II{len(msg.path_ids)}I", msg.req, len(msg.path_ids), *msg.path_ids)
    elif isinstance(msg, BatchSet):
        out += struct.pack("<I", msg.req)
        _put_entries(out, msg.entries)
    elif isinstance(msg, Delta):
        out += struct.pack("<Q", msg.revision)
        _put_entries(out, msg.entries)
    elif isinstance(msg, Response):
        out += struct.pack("<IQ", msg.req, msg.revision)
        _put_entries(out, msg.entries)
    elif isinstance(msg, Error):
        raw = msg.message.encode("utf-8")
        out += struct.pack("<IHI", msg.req, msg.code, len(raw)) + raw
    elif isinstance(msg, Ping | Pong):
        out += struct.pack("<Q", msg.timestamp_ms)
    elif isinstance(msg, PathTable):
        out += struct.pack("<I", len(msg.paths))
        for p in msg.paths:
            raw = p.path.encode("utf-8")
            out += struct.pack("<IBH", p.path_id, p.tag, len(raw)) + raw
    elif isinstance(msg, Sync):
        out += struct.pack("<IQ", msg.req, msg.since_revision)
    elif isinstance(msg, Snapshot):
        if len(msg.digest) != 32:
            raise ValueError("a snapshot digest is 32 bytes")
        out += struct.pack("<IQ", msg.req, msg.revision) + msg.digest
        _put_entries(out, msg.entries)
    return bytes(out)


def encode_settings(msg: SettingsMessage, *, compress: bool | None = None) -> bytes:
    """A whole kind 0x10 frame; by default gzip when the body is over 256 bytes and shrinks."""
    body = encode_body(msg)
    if compress is None:
        packed, did = maybe_gzip(body)
        return bytes([Kind.SETTINGS, GZIP if did else PLAIN]) + packed
    if compress:
        return bytes([Kind.SETTINGS, GZIP]) + gzip_bytes(body)
    return bytes([Kind.SETTINGS, PLAIN]) + body


def _get_entries(r: _Reader) -> Entries:
    n = r.count(5, "entry count")
    return tuple((r.u32("path id"), _read_value(r, 0)) for _ in range(n))


def settings_body(data: bytes | memoryview, *, max_inflated: int = MAX_INFLATED) -> bytes:
    """The plain body of a kind 0x10 frame (inflated when ``c`` is 0xFF)."""
    if len(data) < 3:
        raise malformed("settings frame is shorter than kind, compression byte and message")
    if data[0] != Kind.SETTINGS:
        raise malformed(f"expected kind 0x10, got 0x{data[0]:02x}")
    c = data[1]
    if c == PLAIN:
        return bytes(data[2:])
    if c == GZIP:
        body = gunzip_bounded(memoryview(data)[2:], max_inflated)
        if not body:
            raise malformed("compressed settings body is empty")
        return body
    raise malformed(f"settings compression byte 0x{c:02x} is neither 0x00 nor 0xff")


def _read_path_table(r: _Reader) -> PathTable:
    n = r.count(7, "path count")
    rows = []
    for _ in range(n):
        pid, raw_tag, length = r.u32("path id"), r.u8("value tag"), r.u16("path length")
        try:
            tag = Tag(raw_tag)
        except ValueError:
            raise malformed(f"unknown value tag 0x{raw_tag:02x} in path table") from None
        rows.append(PathEntry(pid, tag, r.utf8(length, "path")))
    return PathTable(tuple(rows))


def _read_batch_get(r: _Reader) -> BatchGet:
    req = r.u32("req")
    n = r.count(4, "path count")
    return BatchGet(req, tuple(r.u32("path id") for _ in range(n)))


def _read_error(r: _Reader) -> Error:
    req, code = r.u32("req"), r.u16("error code")
    return Error(req, code, r.utf8(r.u32("message length"), "error message"))


def _read_snapshot(r: _Reader) -> Snapshot:
    req, rev = r.u32("req"), r.u64("revision")
    return Snapshot(req, rev, r.take(32, "digest"), _get_entries(r))


_READERS: dict[type, Callable[[_Reader], SettingsMessage]] = {
    Get: lambda r: Get(r.u32("req"), r.u32("path id")),
    Set: lambda r: Set(r.u32("req"), r.u32("path id"), _read_value(r, 0)),
    BatchGet: _read_batch_get,
    BatchSet: lambda r: BatchSet(r.u32("req"), _get_entries(r)),
    Delta: lambda r: Delta(r.u64("revision"), _get_entries(r)),
    Response: lambda r: Response(r.u32("req"), r.u64("revision"), _get_entries(r)),
    Error: _read_error,
    Ping: lambda r: Ping(r.u64("timestamp")),
    Pong: lambda r: Pong(r.u64("timestamp")),
    PathTable: _read_path_table,
    Sync: lambda r: Sync(r.u32("req"), r.u64("since revision")),
    Snapshot: _read_snapshot,
}
"""How each message's fields are read, by class: with :data:`MESSAGE_IDS`, the one table."""

_DECODE_BY_ID = {MESSAGE_IDS[cls]: read for cls, read in _READERS.items()}
_REQUEST_IDS = frozenset(MESSAGE_IDS[cls] for cls in REQUESTS)


def decode_body(body: bytes) -> SettingsMessage:
    """Parse a plain body into its message."""
    r = _Reader(body)
    mid = r.u8("message id")
    read = _DECODE_BY_ID.get(mid)
    if read is None:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"unknown settings message 0x{mid:02x}")
    msg = read(r)
    r.end()
    return msg


def decode_settings(
    data: bytes | memoryview, *, max_inflated: int = MAX_INFLATED
) -> SettingsMessage:
    """Decode a whole kind 0x10 frame."""
    return decode_body(settings_body(data, max_inflated=max_inflated))


def request_id(body: bytes) -> int:
    """The ``req`` of a request body that failed to parse, or 0 when it cannot be read."""
    if len(body) >= 5 and body[0] in _REQUEST_IDS:
        return int(struct.unpack_from("<I", body, 1)[0])
    return 0


def settings_digest(items: Sequence[tuple[int, Value]] | Mapping[int, Value]) -> bytes:
    """blake3 over ``u32 pathId | value`` for every path in ascending id (§5)."""
    pairs = sorted(items.items() if isinstance(items, Mapping) else items, key=lambda e: e[0])
    h = blake3.blake3()
    for pid, value in pairs:
        h.update(struct.pack("<I", pid))
        h.update(value.encode())
    return bytes(h.digest())


def value_hash(value: Value) -> bytes:
    """blake3 of a value's encoding: equal hashes mean equal stored values (dedup, §5)."""
    return bytes(blake3.blake3(value.encode()).digest())
