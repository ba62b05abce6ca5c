"""JSON control messages (docs/protocol.md §6) as typed, validated values, and the close codes.

``parse_client_message`` turns a text frame from a client into one of the client message
classes, or raises :class:`ProtocolError`; ``parse_server_message`` does the same for what a
server sends (for the Python client). Every message serialises with ``to_json()`` to the exact
camelCase shape of §6.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, Literal, TypeAlias

from .errors import ErrorCategory, ErrorCode, ErrorInfo, ProtocolError

MessageId: TypeAlias = str | int | float | None
Format: TypeAlias = Literal["v1", "v2", "q"]
FORMATS: tuple[Format, ...] = ("v1", "v2", "q")
PROTOCOL_INFO: dict[str, Any] = {"version": 1, "formats": list(FORMATS), "compression": ["gzip"]}
REJECT_REASONS = ("not_finite", "out_of_bounds", "unknown_node", "stale_epoch", "rate_limited")


class CloseCode(IntEnum):
    """WebSocket close codes (§6) and what a client should do on each."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server restarting: reconnect
    POLICY = 1008  # banned or origin refused: wait retryAfterMs
    TOO_BIG = 1009
    SERVER_ERROR = 1011  # reconnect
    TRY_AGAIN_LATER = 1013  # too slow or overloaded: reconnect with backoff
    TOKEN_REFUSED = 4401  # do not reconnect


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.MALFORMED_FRAME, message)


def _int(d: dict[str, Any], key: str, *, lo: int = 0, hi: int = 2**64 - 1,
         optional: bool = False) -> int | None:
    v = d.get(key)
    if v is None:
        if optional:
            return None
        raise _bad(f"{key!r} is required")
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise _bad(f"{key!r} must be an integer")
    if not lo <= v <= hi:
        raise _bad(f"{key!r} must be between {lo} and {hi}")
    return v


def _req_int(d: dict[str, Any], key: str, *, lo: int = 0, hi: int = 2**64 - 1) -> int:
    v = _int(d, key, lo=lo, hi=hi)
    assert v is not None
    return v


def _bool(d: dict[str, Any], key: str, default: bool | None = None) -> bool | None:
    v = d.get(key, default)
    if v is not None and not isinstance(v, bool):
        raise _bad(f"{key!r} must be true or false")
    return v


def _msg_id(d: dict[str, Any]) -> MessageId:
    v = d.get("id")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise _bad("'id' must be a string or a number")
    if isinstance(v, float) and not math.isfinite(v):
        raise _bad("'id' must be finite")
    if isinstance(v, str) and len(v) > 256:
        raise _bad("'id' is longer than 256 characters")
    return v


def _with_id(out: dict[str, Any], msg_id: MessageId) -> dict[str, Any]:
    if msg_id is not None:
        out["id"] = msg_id
    return out


# ---------------------------------------------------------------------------------------------
# client → server


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Start (or replace) the one position stream of a connection."""

    TYPE: ClassVar[str] = "subscribe"
    format: Format
    interval_ms: float | None = None  # as asked: any number; the server clamps and rounds it
    velocity: bool | None = None
    id: MessageId = None

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        out: dict[str, Any] = {"type": self.TYPE, "format": self.format}
        if self.interval_ms is not None:
            out["intervalMs"] = self.interval_ms
        if self.velocity is not None:
            out["velocity"] = self.velocity
        return _with_id(out, self.id)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Subscribe:
        """Validate and build."""
        fmt = d.get("format")
        if fmt not in FORMATS:
            raise ProtocolError(
                ErrorCode.FORMAT_UNSUPPORTED,
                f"format must be one of {', '.join(FORMATS)}, not {fmt!r}",
            )
        velocity = _bool(d, "velocity")
        if velocity and fmt != "q":
            raise _bad("'velocity' is only for the \"q\" format")
        interval = d.get("intervalMs")
        if interval is not None and (isinstance(interval, bool)
                                     or not isinstance(interval, int | float)
                                     or math.isnan(interval)):
            raise _bad("'intervalMs' must be a number")
        return cls(fmt, interval, velocity, _msg_id(d))


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop the position stream."""

    TYPE: ClassVar[str] = "unsubscribe"
    id: MessageId = None

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        return _with_id({"type": self.TYPE}, self.id)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Unsubscribe:
        """Validate and build."""
        return cls(_msg_id(d))


@dataclass(frozen=True, slots=True)
class Ping:
    """Application-level ping; answered with :class:`Pong` echoing ``timestamp``."""

    TYPE: ClassVar[str] = "ping"
    timestamp: float | int | None = None
    id: MessageId = None

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        out: dict[str, Any] = {"type": self.TYPE}
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        return _with_id(out, self.id)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Ping:
        """Validate and build."""
        ts = d.get("timestamp")
        if ts is not None and (
            isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts)
        ):
            raise _bad("'timestamp' must be a finite number")
        return cls(ts, _msg_id(d))


@dataclass(frozen=True, slots=True)
class RequestKeyframe:
    """Ask for a keyframe of the subscribed format."""

    TYPE: ClassVar[str] = "request_keyframe"
    id: MessageId = None

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        return _with_id({"type": self.TYPE}, self.id)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RequestKeyframe:
        """Validate and build."""
        return cls(_msg_id(d))


@dataclass(frozen=True, slots=True)
class Resume:
    """Sent after a reconnect: where the client was in the stream and the settings."""

    TYPE: ClassVar[str] = "resume"
    epoch: int
    seq: int
    settings_revision: int
    id: MessageId = None

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        out = {"type": self.TYPE, "epoch": self.epoch, "seq": self.seq,
               "settingsRevision": self.settings_revision}
        return _with_id(out, self.id)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Resume:
        """Validate and build."""
        return cls(
            _req_int(d, "epoch", hi=2**32 - 1),
            _req_int(d, "seq", hi=2**32 - 1),
            _req_int(d, "settingsRevision"),
            _msg_id(d),
        )


@dataclass(frozen=True, slots=True)
class SetSsspSource:
    """Set (or clear, with None) the one shortest-path source of the graph."""

    TYPE: ClassVar[str] = "set_sssp_source"
    source: int | None
    id: MessageId = None

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        return _with_id({"type": self.TYPE, "source": self.source}, self.id)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SetSsspSource:
        """Validate and build."""
        if "source" not in d:
            raise _bad("'source' is required (a node id, or null to clear)")
        return cls(_int(d, "source", hi=2**30 - 1, optional=True), _msg_id(d))


ClientMessage: TypeAlias = (
    Subscribe | Unsubscribe | Ping | RequestKeyframe | Resume | SetSsspSource
)
_CLIENT_TYPES: dict[str, Any] = {
    c.TYPE: c for c in (Subscribe, Unsubscribe, Ping, RequestKeyframe, Resume, SetSsspSource)
}


# ---------------------------------------------------------------------------------------------
# server → client


@dataclass(frozen=True, slots=True)
class ConnectionEstablished:
    """The first message on every connection."""

    TYPE: ClassVar[str] = "connection_established"
    client_id: str
    epoch: int
    seq: int
    topology_version: int
    is_reconnection: bool
    settings: dict[str, Any]
    heartbeat: dict[str, Any]
    rate_limits: dict[str, Any]
    protocol: dict[str, Any] = field(default_factory=lambda: dict(PROTOCOL_INFO))

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        return {
            "type": self.TYPE, "clientId": self.client_id, "epoch": self.epoch, "seq": self.seq,
            "topologyVersion": self.topology_version, "isReconnection": self.is_reconnection,
            "protocol": self.protocol, "settings": self.settings, "heartbeat": self.heartbeat,
            "rateLimits": self.rate_limits,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ConnectionEstablished:
        """Validate and build."""
        cid = d.get("clientId")
        if not isinstance(cid, str) or not cid:
            raise _bad("'clientId' must be a non-empty string")
        for key in ("protocol", "settings", "heartbeat", "rateLimits"):
            if not isinstance(d.get(key), dict):
                raise _bad(f"{key!r} must be an object")
        return cls(
            cid, _req_int(d, "epoch", hi=2**32 - 1), _req_int(d, "seq", hi=2**32 - 1),
            _req_int(d, "topologyVersion"), bool(_bool(d, "isReconnection", False)),
            d["settings"], d["heartbeat"], d["rateLimits"], d["protocol"],
        )


@dataclass(frozen=True, slots=True)
class SubscriptionConfirmed:
    """The answer to ``subscribe``: what was granted."""

    TYPE: ClassVar[str] = "subscription_confirmed"
    format: Format
    interval_ms: int
    velocity: bool
    id: MessageId = None

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        out = {"type": self.TYPE, "format": self.format, "intervalMs": self.interval_ms,
               "velocity": self.velocity}
        return _with_id(out, self.id)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SubscriptionConfirmed:
        """Validate and build."""
        fmt = d.get("format")
        if fmt not in FORMATS:
            raise _bad(f"unknown format {fmt!r}")
        return cls(fmt, _req_int(d, "intervalMs"), bool(_bool(d, "velocity", False)), _msg_id(d))


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to ``ping``."""

    TYPE: ClassVar[str] = "pong"
    timestamp: float | int | None = None
    id: MessageId = None

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        return _with_id({"type": self.TYPE, "timestamp": self.timestamp}, self.id)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Pong:
        """Validate and build."""
        return cls(d.get("timestamp"), _msg_id(d))


@dataclass(frozen=True, slots=True)
class Rejected:
    """One rejected entry of a client positions batch."""

    id: int
    reason: str


@dataclass(frozen=True, slots=True)
class PositionsAck:
    """The answer to every client positions batch (§4.8)."""

    TYPE: ClassVar[str] = "positions_ack"
    batch: int
    accepted: int
    rejected: tuple[Rejected, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        return {
            "type": self.TYPE, "batch": self.batch, "accepted": self.accepted,
            "rejected": [{"id": r.id, "reason": r.reason} for r in self.rejected],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PositionsAck:
        """Validate and build."""
        rows = d.get("rejected", [])
        if not isinstance(rows, list):
            raise _bad("'rejected' must be a list")
        rejected = []
        for row in rows:
            if not isinstance(row, dict) or row.get("reason") not in REJECT_REASONS:
                raise _bad("each rejected entry needs an id and a known reason")
            rejected.append(Rejected(_req_int(row, "id", hi=2**32 - 1), row["reason"]))
        return cls(_req_int(d, "batch", hi=2**32 - 1), _req_int(d, "accepted"), tuple(rejected))


@dataclass(frozen=True, slots=True)
class GraphChanged:
    """Topology changed: the change itself, or ``refetch`` when it is too large to send."""

    TYPE: ClassVar[str] = "graph_changed"
    epoch: int
    topology_version: int
    nodes_count: int
    edges_count: int
    added: dict[str, Any] | None = None
    removed: dict[str, Any] | None = None
    refetch: bool = False
    updated: dict[str, Any] | None = None
    """graphwire's extension: nodes whose label, type or metadata changed and edges whose
    weight or type changed, as in ``/api/graph/data`` (sent only when there are some)."""

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        out: dict[str, Any] = {
            "type": self.TYPE, "epoch": self.epoch, "topologyVersion": self.topology_version,
            "nodesCount": self.nodes_count, "edgesCount": self.edges_count,
        }
        if self.refetch:
            out["refetch"] = True
        else:
            out["added"] = self.added or {"nodes": [], "edges": []}
            out["removed"] = self.removed or {"nodes": [], "edges": []}
            if self.updated:
                out["updated"] = self.updated
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GraphChanged:
        """Validate and build."""
        refetch = bool(_bool(d, "refetch", False))
        added, removed, updated = d.get("added"), d.get("removed"), d.get("updated")
        if not refetch and not (isinstance(added, dict) and isinstance(removed, dict)):
            raise _bad("graph_changed needs 'added' and 'removed', or 'refetch'")
        if updated is not None and not isinstance(updated, dict):
            raise _bad("graph_changed 'updated' must be an object")
        return cls(
            _req_int(d, "epoch", hi=2**32 - 1), _req_int(d, "topologyVersion"),
            _req_int(d, "nodesCount"), _req_int(d, "edgesCount"), added, removed, refetch,
            updated,
        )


@dataclass(frozen=True, slots=True)
class RateLimitWarning:
    """A message was dropped for its rate class; ``retry_after_ms`` is the real wait."""

    TYPE: ClassVar[str] = "rate_limit_warning"
    rate_class: str
    message: str
    retry_after_ms: int

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        return {"type": self.TYPE, "class": self.rate_class, "message": self.message,
                "retryAfterMs": self.retry_after_ms}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RateLimitWarning:
        """Validate and build."""
        cls_name, msg = d.get("class"), d.get("message")
        if not isinstance(cls_name, str) or not isinstance(msg, str):
            raise _bad("rate_limit_warning needs 'class' and 'message' strings")
        return cls(cls_name, msg, _req_int(d, "retryAfterMs", lo=1))


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """An ``error`` message (§8)."""

    TYPE: ClassVar[str] = "error"
    error: ErrorInfo
    id: MessageId = None

    def to_json(self) -> dict[str, Any]:
        """The message as JSON."""
        return _with_id({"type": self.TYPE, "error": self.error.to_json()}, self.id)

    @classmethod
    def of(cls, exc: ProtocolError, msg_id: MessageId = None) -> ErrorMessage:
        """The error message answering ``exc``."""
        return cls(exc.info, msg_id)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ErrorMessage:
        """Validate and build."""
        e = d.get("error")
        if not isinstance(e, dict):
            raise _bad("'error' must be an object")
        code, message, category = e.get("code"), e.get("message"), e.get("category")
        if not isinstance(code, str) or not isinstance(message, str):
            raise _bad("an error needs 'code' and 'message' strings")
        try:
            cat = ErrorCategory(str(category))
        except ValueError:
            raise _bad(f"unknown error category {category!r}") from None
        try:
            ecode = ErrorCode(code)
        except ValueError:
            raise _bad(f"unknown error code {code!r}") from None
        info = ErrorInfo(ecode, message, cat, bool(_bool(e, "retryable", False)),
                         _int(e, "retryAfterMs", optional=True))
        return cls(info, _msg_id(d))


ServerMessage: TypeAlias = (
    ConnectionEstablished | SubscriptionConfirmed | Pong | PositionsAck | GraphChanged
    | RateLimitWarning | ErrorMessage
)
_SERVER_TYPES: dict[str, Any] = {
    c.TYPE: c
    for c in (ConnectionEstablished, SubscriptionConfirmed, Pong, PositionsAck, GraphChanged,
              RateLimitWarning, ErrorMessage)
}

MAX_TEXT = 64 * 1024
"""Largest control message accepted from a client; control messages are small."""


def _utf8_size(text: str | bytes, limit: int) -> int:
    """The size of a control message in bytes (UTF-8), encoding only when it could matter: a
    character is one to four bytes."""
    if isinstance(text, bytes) or len(text) > limit or 4 * len(text) <= limit:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _load(text: str | bytes, limit: int) -> dict[str, Any]:
    if _utf8_size(text, limit) > limit:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"control message over {limit} bytes")
    try:
        d = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad("control message is not valid JSON") from None
    if not isinstance(d, dict):
        raise _bad("control message must be a JSON object")
    if not isinstance(d.get("type"), str):
        raise _bad("control message needs a string 'type'")
    return d


def message_id_of(text: str | bytes) -> MessageId:
    """The ``id`` of a client message even when the rest does not validate (for the reply)."""
    try:
        d = json.loads(text)
        return _msg_id(d) if isinstance(d, dict) else None
    except (ValueError, RecursionError, ProtocolError):
        return None


def parse_client_message(text: str | bytes, *, limit: int = MAX_TEXT) -> ClientMessage:
    """A client's text frame as a typed message, or a ProtocolError."""
    d = _load(text, limit)
    cls = _CLIENT_TYPES.get(d["type"])
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"unknown message type {d['type']!r}")
    msg: ClientMessage = cls.from_json(d)
    return msg


def parse_server_message(text: str | bytes, *, limit: int = 64 * 1024 * 1024) -> ServerMessage:
    """A server's text frame as a typed message, or a ProtocolError."""
    d = _load(text, limit)
    cls = _SERVER_TYPES.get(d["type"])
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"unknown message type {d['type']!r}")
    msg: ServerMessage = cls.from_json(d)
    return msg


def dumps(msg: ClientMessage | ServerMessage) -> str:
    """Serialise a message as compact JSON."""
    return json.dumps(msg.to_json(), separators=(",", ":"), allow_nan=False)
