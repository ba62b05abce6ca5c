"""Errors of the wire contract (docs/protocol.md §8) and the one exception every decoder raises.

Every decoder in :mod:`graphwire.protocol` turns bad input into a :class:`ProtocolError` that
carries a §8 code, its category and whether retrying helps, so the server can answer it on the
wire without translating exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorCategory(StrEnum):
    """The categories of §8."""

    PROTOCOL = "protocol"
    VALIDATION = "validation"
    RATE_LIMIT = "rate_limit"
    AUTH = "auth"
    SERVER = "server"


class ErrorCode(StrEnum):
    """The error codes of §8 (and the few graphwire adds, documented in docs/protocol.md)."""

    MALFORMED_FRAME = "malformed_frame"
    UNKNOWN_KIND = "unknown_kind"
    UNKNOWN_MESSAGE = "unknown_message"
    FORMAT_UNSUPPORTED = "format_unsupported"
    INVALID_POSITION = "invalid_position"
    UNKNOWN_NODE = "unknown_node"
    STALE_EPOCH = "stale_epoch"
    RATE_LIMITED = "rate_limited"
    BANNED = "banned"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    TOO_LARGE = "too_large"
    INTERNAL = "internal"
    # graphwire additions (validation of REST bodies and settings values)
    INVALID_VALUE = "invalid_value"
    UNKNOWN_PATH = "unknown_path"
    NOT_FOUND = "not_found"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"


_CATEGORY: dict[ErrorCode, ErrorCategory] = {
    ErrorCode.MALFORMED_FRAME: ErrorCategory.PROTOCOL,
    ErrorCode.UNKNOWN_KIND: ErrorCategory.PROTOCOL,
    ErrorCode.UNKNOWN_MESSAGE: ErrorCategory.PROTOCOL,
    ErrorCode.FORMAT_UNSUPPORTED: ErrorCategory.PROTOCOL,
    ErrorCode.TOO_LARGE: ErrorCategory.PROTOCOL,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: ErrorCategory.PROTOCOL,
    ErrorCode.INVALID_POSITION: ErrorCategory.VALIDATION,
    ErrorCode.UNKNOWN_NODE: ErrorCategory.VALIDATION,
    ErrorCode.STALE_EPOCH: ErrorCategory.VALIDATION,
    ErrorCode.INVALID_VALUE: ErrorCategory.VALIDATION,
    ErrorCode.UNKNOWN_PATH: ErrorCategory.VALIDATION,
    ErrorCode.NOT_FOUND: ErrorCategory.VALIDATION,
    ErrorCode.RATE_LIMITED: ErrorCategory.RATE_LIMIT,
    ErrorCode.BANNED: ErrorCategory.RATE_LIMIT,
    ErrorCode.UNAUTHORIZED: ErrorCategory.AUTH,
    ErrorCode.FORBIDDEN: ErrorCategory.AUTH,
    ErrorCode.INTERNAL: ErrorCategory.SERVER,
}

# Retrying the same request helps only when the cause is transient on the server's side.
_RETRYABLE = {ErrorCode.RATE_LIMITED, ErrorCode.BANNED, ErrorCode.INTERNAL, ErrorCode.STALE_EPOCH}


def category_of(code: ErrorCode) -> ErrorCategory:
    """The §8 category of an error code."""
    return _CATEGORY[code]


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """The `error` object of §8: what went wrong, where it belongs and whether to retry."""

    code: ErrorCode
    message: str
    category: ErrorCategory
    retryable: bool
    retry_after_ms: int | None = None

    @classmethod
    def of(cls, code: ErrorCode, message: str, retry_after_ms: int | None = None) -> ErrorInfo:
        """Build the error object for ``code`` with its category and retry hint."""
        return cls(code, message, category_of(code), code in _RETRYABLE, retry_after_ms)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of §8 (camelCase keys)."""
        out: dict[str, Any] = {
            "code": self.code.value,
            "message": self.message,
            "category": self.category.value,
            "retryable": self.retryable,
        }
        if self.retry_after_ms is not None:
            out["retryAfterMs"] = self.retry_after_ms
        return out


class ProtocolError(Exception):
    """The only exception a decoder raises: bad, truncated, oversized or unknown input."""

    def __init__(
        self, code: ErrorCode, message: str, *, retry_after_ms: int | None = None
    ) -> None:
        super().__init__(f"{code.value}: {message}")
        self.info = ErrorInfo.of(code, message, retry_after_ms)

    @property
    def code(self) -> ErrorCode:
        """The §8 error code."""
        return self.info.code

    @property
    def message(self) -> str:
        """The human-readable message."""
        return self.info.message


def malformed(message: str) -> ProtocolError:
    """Shorthand for the most common decode failure."""
    return ProtocolError(ErrorCode.MALFORMED_FRAME, message)
