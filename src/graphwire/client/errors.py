"""What the client raises: one base class, and a subclass for each way it can stop or fail."""

from __future__ import annotations

from graphwire.protocol.errors import ErrorInfo
from graphwire.protocol.settings_codec import SettingsErrorCode


class ClientError(Exception):
    """Base class of every exception the graphwire client raises."""


class AuthenticationError(ClientError):
    """The server refused the credentials (close 4401, or a handshake answered 401/403).

    The client stops: reconnecting with the same token cannot succeed.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConnectError(ClientError):
    """The connection could not be (re)established within the allowed attempts."""


class ClientTimeoutError(ClientError, TimeoutError):
    """A call that did not finish within its timeout. What it asked for may still happen: a
    write waits in the outgoing queue while the connection is down and goes out when it
    returns (the mirror then shows it)."""


class RequestError(ClientError):
    """A REST call that reached no server (refused, reset, a name that does not resolve)."""


class ClientClosedError(ClientError):
    """The client was closed (by its owner) while something waited on it."""


class ServerError(ClientError):
    """An ``error`` message from the server (docs/protocol.md §8), as an exception.

    ``code``, ``category``, ``retryable`` and ``retry_after_ms`` are those of the message.
    """

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(f"{info.code.value}: {info.message}")
        self.info = info

    @property
    def code(self) -> str:
        """The §8 error code, e.g. ``format_unsupported``."""
        return self.info.code.value

    @property
    def category(self) -> str:
        """The §8 category: protocol, validation, rate_limit, auth or server."""
        return self.info.category.value

    @property
    def retryable(self) -> bool:
        """Whether retrying the same request may succeed."""
        return self.info.retryable

    @property
    def retry_after_ms(self) -> int | None:
        """How long to wait before retrying, when the server said."""
        return self.info.retry_after_ms


class SettingsError(ClientError):
    """A settings request answered with an Error (docs/protocol.md §5), or not answered in time.

    ``code`` is the §5 error number (1 unknown_path … 7 internal; 0 for a timeout or a lost
    connection) and ``name`` its name.
    """

    @staticmethod
    def name_of(code: int) -> str:
        """The name of a §5 error code (``no_reply`` for 0, ``error_<n>`` for one unknown)."""
        if code == 0:
            return "no_reply"
        try:
            return SettingsErrorCode(code).name.lower()
        except ValueError:
            return f"error_{code}"

    def __init__(self, code: int, message: str, path: str | None = None) -> None:
        name = self.name_of(code)
        where = f" ({path})" if path else ""
        super().__init__(f"{name}{where}: {message}")
        self.code = code
        self.name = name
        self.path = path
        self.message = message
