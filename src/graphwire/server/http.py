"""HTTP rules of docs/protocol.md §1 and §8: JSON errors, who may talk to the server, rate limits.

Middlewares, outermost first: every error as a §8 JSON body with the status of the one error
table (``server.errors``); the ``Host`` and ``Origin`` rules and tokens of
:class:`~graphwire.server.access.AccessPolicy`; bans and per identity and route-class rate
limits (429 with ``Retry-After`` and the ``X-RateLimit-*`` headers, bans included); writes must
be JSON (415).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from graphwire.protocol.errors import ErrorCode

from .access import AccessPolicy, hostname_of
from .connections import Connections
from .errors import ApiError, as_api_error
from .metrics import Metrics
from .rate_limit import RateLimiter, TokenBucket

log = logging.getLogger("graphwire.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ADMIN = web.RequestKey("admin", bool)
"""The request presented the admin token."""
IDENTITY = web.RequestKey("identity", str)
"""Who is behind the request, for rate limits and bans (§10)."""


def json_response(data: Any, *, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    """A compact JSON response (NaN and infinities are refused, never sent)."""
    body = data if isinstance(data, bytes) else json.dumps(
        data, separators=(",", ":"), allow_nan=False).encode()
    return web.Response(body=body, status=status, content_type="application/json",
                        headers=headers)


def error_response(err: ApiError) -> web.Response:
    """The §8 JSON answer of an error."""
    return json_response({"error": err.info.to_json()}, status=err.status, headers=err.headers)


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


def rate_limit_headers(bucket: TokenBucket, wait: float) -> dict[str, str]:
    """``Retry-After`` and the ``X-RateLimit-*`` headers of a 429 (§1)."""
    seconds = str(max(1, math.ceil(wait)))
    return {"Retry-After": seconds, "X-RateLimit-Limit": str(round(bucket.rate * 60)),
            "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": seconds}


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as §8 JSON with its status, from the one error table."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return error_response(ApiError(ErrorCode.TOO_LARGE, "the body is too large"))
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response(ApiError(ErrorCode.NOT_FOUND, f"no route {request.path}"))
        if exc.status == 405:
            return error_response(ApiError(ErrorCode.MALFORMED_FRAME, f"{request.method} is "
                                           f"not allowed on {request.path}", status=405))
        raise
    except Exception as exc:
        err = as_api_error(exc)
        if err is None:
            log.exception("request %s %s failed", request.method, request.path)
            err = ApiError(ErrorCode.INTERNAL, "internal error")
        return error_response(err)


def make_middlewares(access: AccessPolicy, limiter: RateLimiter, connections: Connections,
                     metrics: Metrics) -> list[Middleware]:
    """The middlewares of the app, outermost first."""

    @web.middleware
    async def who(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = hostname_of(request.headers.get("Host", ""))
        if not access.host_served(host, request):
            raise ApiError(ErrorCode.FORBIDDEN, f"host {host!r} is not served here")
        origin = request.headers.get("Origin")
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        writes = upgrade or request.method not in ("GET", "HEAD", "OPTIONS")
        if origin is not None and writes and not access.origin_allowed(origin, request):
            raise ApiError(ErrorCode.FORBIDDEN, f"origin {origin} may not use this server")
        token = access.presented_token(request)
        if access.token_needed(request.path) and not access.token_accepted(token):
            raise ApiError(ErrorCode.UNAUTHORIZED, "a valid token is required",
                           headers={"WWW-Authenticate": "Bearer"})
        request[ADMIN] = access.is_admin(token)
        request[IDENTITY] = access.identity_of(request, token)
        return await handler(request)

    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        cls = route_class(request)
        if cls is None:
            return await handler(request)
        identity = request[IDENTITY]
        banned = limiter.banned_for(identity)
        ok, bucket = (False, limiter.http_bucket(identity, cls)) if banned > 0 else \
            limiter.http_take(identity, cls)
        if banned > 0:
            raise ApiError(ErrorCode.BANNED, "banned for too many rate-limit violations",
                           retry_after_ms=math.ceil(banned * 1000),
                           headers=rate_limit_headers(bucket, banned))
        if not ok:
            wait = bucket.retry_after(limiter.clock())
            metrics.rate_limited += 1
            if limiter.violation(identity, cls, wait).banned_now:
                connections.ban(identity, math.ceil(limiter.banned_for(identity) * 1000))
            raise ApiError(ErrorCode.RATE_LIMITED, f"too many {cls} requests",
                           retry_after_ms=max(1, math.ceil(wait * 1000)),
                           headers=rate_limit_headers(bucket, wait))
        # every POST, PUT and PATCH route takes a JSON body (`{}` at least); a DELETE may have
        # none (DELETE /api/graph/nodes/{id}) and then no Content-Type, but one that says it
        # is something other than JSON is refused like any other write
        if (request.method in ("POST", "PUT", "PATCH")
                or (request.method == "DELETE" and (request.can_read_body
                                                    or hdrs.CONTENT_TYPE in request.headers))) \
                and request.content_type != "application/json":
            raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                           "writes must be Content-Type: application/json")
        return await handler(request)

    return [errors, who, limits]
