"""The one error table: every error the server answers, as a §8 code and an HTTP status.

Errors keep their type from where they arise to the wire: a decoder raises
:class:`~graphwire.protocol.errors.ProtocolError` (a §8 code), the settings service
:class:`~graphwire.settings.SettingsError` (a §5 code), the graph
:class:`~graphwire.graph.model.GraphError` (its subclass says which). This module maps those
types and codes, never message text, to the §8 code and the HTTP status (docs/protocol.md §1, §8).
The error middleware (``server.http``) and the WebSocket handlers both answer through it.
"""

from __future__ import annotations

from graphwire.graph.model import GraphError, UnknownNodeError
from graphwire.protocol.errors import ErrorCode, ErrorInfo, ProtocolError
from graphwire.protocol.settings_codec import SettingsErrorCode
from graphwire.settings import SettingsError

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.MALFORMED_FRAME: 400, ErrorCode.UNKNOWN_MESSAGE: 400, ErrorCode.UNKNOWN_KIND: 400,
    ErrorCode.FORMAT_UNSUPPORTED: 400, ErrorCode.INVALID_POSITION: 422,
    ErrorCode.INVALID_VALUE: 422, ErrorCode.UNKNOWN_NODE: 404, ErrorCode.UNKNOWN_PATH: 404,
    ErrorCode.NOT_FOUND: 404, ErrorCode.STALE_EPOCH: 409, ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415, ErrorCode.RATE_LIMITED: 429, ErrorCode.BANNED: 429,
    ErrorCode.UNAUTHORIZED: 401, ErrorCode.FORBIDDEN: 403, ErrorCode.INTERNAL: 500,
}
"""The HTTP status of every §8 code."""

SETTINGS_CODES: dict[SettingsErrorCode, ErrorCode] = {
    SettingsErrorCode.UNKNOWN_PATH: ErrorCode.UNKNOWN_PATH,
    SettingsErrorCode.TYPE_MISMATCH: ErrorCode.INVALID_VALUE,
    SettingsErrorCode.INVALID_VALUE: ErrorCode.INVALID_VALUE,
    SettingsErrorCode.MALFORMED: ErrorCode.MALFORMED_FRAME,
    SettingsErrorCode.RATE_LIMITED: ErrorCode.RATE_LIMITED,
    SettingsErrorCode.FORBIDDEN: ErrorCode.FORBIDDEN,
    SettingsErrorCode.INTERNAL: ErrorCode.INTERNAL,
}
"""The §8 code of every §5 settings error code (REST answers settings errors with these)."""

GRAPH_CODES: dict[type[GraphError], ErrorCode] = {
    UnknownNodeError: ErrorCode.UNKNOWN_NODE,
    GraphError: ErrorCode.INVALID_VALUE,
}
"""The §8 code of every graph error type (the most derived type listed wins)."""


class ApiError(Exception):
    """An error answered with a §8 body and an HTTP status (and extra headers)."""

    def __init__(self, code: ErrorCode, message: str, *, status: int | None = None,
                 retry_after_ms: int | None = None, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.info = ErrorInfo.of(code, message, retry_after_ms)
        self.status = status if status is not None else HTTP_STATUS[code]
        self.headers = headers or {}


def graph_code(exc: GraphError) -> ErrorCode:
    """The §8 code of a graph error, by its type."""
    for cls in type(exc).__mro__:
        code = GRAPH_CODES.get(cls)
        if code is not None:
            return code
    return ErrorCode.INVALID_VALUE


def as_protocol_error(exc: ProtocolError | SettingsError | GraphError) -> ProtocolError:
    """Any typed error as the §8 error a WebSocket ``error`` message carries."""
    if isinstance(exc, ProtocolError):
        return exc
    if isinstance(exc, SettingsError):
        return ProtocolError(SETTINGS_CODES[SettingsErrorCode(exc.code)], exc.message)
    return ProtocolError(graph_code(exc), str(exc))


def as_api_error(exc: BaseException) -> ApiError | None:
    """A typed error as the HTTP answer, or None for an exception the table does not know."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ProtocolError | SettingsError | GraphError):
        err = as_protocol_error(exc)
        # a gateway whose simulation did not answer: unavailable for now (retry after)
        unavailable = err.code == ErrorCode.INTERNAL and err.info.retry_after_ms is not None
        return ApiError(err.code, err.message, retry_after_ms=err.info.retry_after_ms,
                        status=503 if unavailable else None)
    return None
