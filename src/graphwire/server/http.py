"""HTTP rules of PROTOCOL.md §1 and §7: JSON errors, who may talk to the server, rate limits.

Middlewares, outermost first: errors as §7 JSON with the right status; the ``Host`` must be a
name or address the server was bound as (no DNS rebinding); a WebSocket upgrade or a write with
an ``Origin`` other than the server's own is refused unless ``--allow-origin`` names it; with
``--token`` every ``/ws`` and ``/api`` route needs it; bans; per identity and route-class rate
limits (429 with the four headers); writes must be JSON (415).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from graphwire.protocol.errors import ErrorCode, ErrorInfo, ProtocolError

if TYPE_CHECKING:
    from .app import GraphwireServer

log = logging.getLogger("graphwire.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ADMIN = web.RequestKey("admin", bool)
"""The request presented the admin token."""
IDENTITY = web.RequestKey("identity", str)
"""Who is behind the request, for rate limits and bans (§8)."""

STATUS = {
    ErrorCode.MALFORMED_FRAME: 400, ErrorCode.UNKNOWN_MESSAGE: 400, ErrorCode.UNKNOWN_KIND: 400,
    ErrorCode.FORMAT_UNSUPPORTED: 400, ErrorCode.INVALID_POSITION: 422,
    ErrorCode.INVALID_VALUE: 422, ErrorCode.UNKNOWN_NODE: 404, ErrorCode.UNKNOWN_PATH: 404,
    ErrorCode.NOT_FOUND: 404, ErrorCode.STALE_EPOCH: 409, ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415, ErrorCode.RATE_LIMITED: 429, ErrorCode.BANNED: 429,
    ErrorCode.UNAUTHORIZED: 401, ErrorCode.FORBIDDEN: 403, ErrorCode.INTERNAL: 500,
}


class ApiError(Exception):
    """An HTTP error with a §7 body."""

    def __init__(self, code: ErrorCode, message: str, *, status: int | None = None,
                 retry_after_ms: int | None = None, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.info = ErrorInfo.of(code, message, retry_after_ms)
        self.status = status or STATUS.get(code, 400)
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The JSON response."""
        return json_response({"error": self.info.to_json()}, status=self.status,
                             headers=self.headers)


def json_response(data: Any, *, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    """A compact JSON response (NaN and infinities are refused, never sent)."""
    body = data if isinstance(data, bytes) else json.dumps(
        data, separators=(",", ":"), allow_nan=False).encode()
    return web.Response(body=body, status=status, content_type="application/json",
                        headers=headers)


async def read_json(request: web.Request) -> Any:
    """The JSON body of a request, or a 400."""
    try:
        return json.loads(await request.read())
    except (ValueError, RecursionError):
        raise ApiError(ErrorCode.MALFORMED_FRAME, "the body is not valid JSON") from None


def route_class(request: web.Request) -> str | None:
    """The rate class of a route (§1), None for unlimited routes."""
    path = request.path
    if path == "/ws":
        return "control"
    if path == "/api/graph/positions":
        return "positions"
    if path.startswith("/api/settings") and request.method in ("PUT", "PATCH"):
        return "settings"
    if path.startswith("/api/") and path != "/api/metrics":
        return "control"
    return None


def _hostname(value: str) -> str:
    try:
        return (urlsplit("//" + value).hostname or "").lower()
    except ValueError:
        return ""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def allowed_hosts(bind: str) -> set[str] | None:
    """Host names a request may carry; None when bound to every address."""
    if bind in ("0.0.0.0", "::", ""):
        return None
    hosts = {bind.lower().strip("[]")}
    if _is_loopback(bind.strip("[]")):
        hosts |= {"localhost", "127.0.0.1", "::1"}
    return hosts


def make_middlewares(server: GraphwireServer) -> list[Callable[..., Any]]:
    """The middlewares of the app, outermost first."""
    cfg = server.config
    hosts = allowed_hosts(cfg.host)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except ProtocolError as exc:  # a gateway whose simulation did not answer in time
            status = 503 if exc.code == ErrorCode.INTERNAL else None
            return ApiError(exc.code, exc.message, status=status,
                            retry_after_ms=exc.info.retry_after_ms).response()
        except web.HTTPRequestEntityTooLarge:
            return ApiError(ErrorCode.TOO_LARGE, "the body is too large").response()
        except web.HTTPException as exc:
            if exc.status == 404:
                return ApiError(ErrorCode.NOT_FOUND, f"no route {request.path}").response()
            if exc.status == 405:
                return ApiError(ErrorCode.MALFORMED_FRAME, f"{request.method} is not allowed "
                                f"on {request.path}", status=405).response()
            raise
        except Exception:
            log.exception("request %s %s failed", request.method, request.path)
            return ApiError(ErrorCode.INTERNAL, "internal error").response()

    @web.middleware
    async def who(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = _hostname(request.headers.get("Host", ""))
        if hosts is not None and host.strip("[]") not in hosts:
            raise ApiError(ErrorCode.FORBIDDEN, f"host {host!r} is not served here")
        origin = request.headers.get("Origin")
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        writes = upgrade or request.method not in ("GET", "HEAD", "OPTIONS")
        if (origin is not None and writes
                and not origin_allowed(origin, cfg.allow_origins, hosts, cfg.port)):
            raise ApiError(ErrorCode.FORBIDDEN, f"origin {origin} may not use this server")
        token = presented_token(request)
        needs_token = cfg.token is not None and (request.path == "/ws"
                                                 or request.path.startswith("/api/"))
        accepted = {t for t in (cfg.token, cfg.admin_token) if t is not None}
        if needs_token and (token is None or token not in accepted):
            raise ApiError(ErrorCode.UNAUTHORIZED, "a valid token is required",
                           headers={"WWW-Authenticate": "Bearer"})
        request[ADMIN] = cfg.admin_token is not None and token == cfg.admin_token
        request[IDENTITY] = server.identity_of(request, token)
        return await handler(request)

    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        cls = route_class(request)
        if cls is None:
            return await handler(request)
        identity = request[IDENTITY]
        banned = server.limiter.banned_for(identity)
        if banned > 0:
            raise ApiError(ErrorCode.BANNED, "banned for too many rate-limit violations",
                           retry_after_ms=int(banned * 1000),
                           headers={"Retry-After": str(math.ceil(banned))})
        ok, bucket = server.limiter.http_take(identity, cls)
        now = server.limiter.clock()
        if not ok:
            wait = bucket.retry_after(now)
            server.metrics.rate_limited += 1
            verdict = server.limiter.violation(identity, cls, wait)
            if verdict.banned_now:
                server.ban(identity)
            raise ApiError(ErrorCode.RATE_LIMITED, f"too many {cls} requests",
                           retry_after_ms=max(1, math.ceil(wait * 1000)), headers={
                               "Retry-After": str(max(1, math.ceil(wait))),
                               "X-RateLimit-Limit": str(int(bucket.rate * 60)),
                               "X-RateLimit-Remaining": "0",
                               "X-RateLimit-Reset": str(max(1, math.ceil(wait))),
                           })
        if (request.method in ("POST", "PUT", "PATCH", "DELETE") and request.can_read_body
                and request.content_type != "application/json"):
            raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                           "writes must be Content-Type: application/json")
        return await handler(request)

    return [errors, who, limits]


def presented_token(request: web.Request) -> str | None:
    """The bearer token of a request (``?token=`` on ``/ws`` for browsers)."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if request.path == "/ws":
        return request.query.get("token")
    return None


def origin_allowed(origin: str, allow: list[str], hosts: set[str] | None, port: int) -> bool:
    """Whether an ``Origin`` may drive the server."""
    if origin in allow or "*" in allow:
        return True
    if allow:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.hostname is None:
        return False
    host = parts.hostname.lower()
    own_port = parts.port or (443 if parts.scheme == "https" else 80)
    return (hosts is None or host in hosts) and own_port == port
