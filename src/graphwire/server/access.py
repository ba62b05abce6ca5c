"""Who may talk to the server and who they are (docs/protocol.md §1, §10): hosts, origins, tokens,
identities. Pure: it reads request headers and addresses, and keeps no state.

- **Host.** A request must name the server by a host it is served as: the address it is bound
  to, every loopback name when that address is a loopback one, the names given with
  ``--server-name``, and, when bound to every address (``0.0.0.0``, ``::``), the machine's own
  names and the address the request actually reached. Anything else is refused on every bind:
  a DNS-rebinding page names its own host.
- **Origin.** A WebSocket upgrade or a write that carries an ``Origin`` must come from the
  server's own origin (a served host, the served port) or one named with ``--allow-origin``,
  which adds to the server's own origin, never replaces it.
- **Identity.** The token with ``--token``; else the peer's address; behind ``--trusted-proxy``
  the address the proxy saw: the right-most ``X-Forwarded-For`` entry that the trusted hops did
  not add themselves. Entries to its left were written by the client and are ignored, so a
  client can neither pose as 127.0.0.1 nor rotate identities.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web

WILDCARD_BINDS = ("0.0.0.0", "::", "")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def hostname_of(value: str) -> str:
    """The host of a ``Host`` header value (lower case, no port, no IPv6 brackets)."""
    try:
        return (urlsplit("//" + value).hostname or "").lower()
    except ValueError:
        return ""


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    ip = _ip(host)
    return ip.is_loopback if ip is not None else host == "localhost"


def machine_names() -> set[str]:
    """Names this machine answers to (its host name and fully qualified name)."""
    names = {"localhost"}
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.lower())
    return names


class AccessPolicy:
    """The §1 rules of one server: built once from its configuration."""

    def __init__(self, *, bind: str, port: int, token: str | None, admin_token: str | None,
                 allow_origins: Iterable[str] = (), server_names: Iterable[str] = (),
                 trusted_proxy: bool = False) -> None:
        self.bind = bind.lower().strip("[]")
        self.port = port
        self.token = token
        self.admin_token = admin_token
        self.allow_origins = set(allow_origins)
        self.trusted_proxy = trusted_proxy
        self.wildcard = self.bind in WILDCARD_BINDS
        hosts = {n.lower().strip("[]") for n in server_names}
        if self.wildcard:
            hosts |= machine_names() | LOOPBACK_NAMES
        else:
            hosts.add(self.bind)
            if _is_loopback(self.bind):
                hosts |= LOOPBACK_NAMES
        self.hosts = frozenset(hosts)

    # -- hosts and origins -----------------------------------------------------------------
    def host_served(self, host: str, request: web.BaseRequest | None = None) -> bool:
        """Whether ``host`` (no port) names this server. Bound to every address, the address a
        request reached (an IP literal) is served too."""
        host = host.strip("[]").lower()
        if host in self.hosts:
            return True
        if self.wildcard and request is not None and request.transport is not None:
            local = request.transport.get_extra_info("sockname")
            ip, own = _ip(host), _ip(str(local[0])) if local else None
            if ip is not None and own is not None:
                if ip == own:
                    return True
                # an IPv4 client on a dual-stack socket sees its address as ::ffff:a.b.c.d
                mapped = getattr(own, "ipv4_mapped", None)
                return mapped is not None and ip == mapped
        return False

    def origin_allowed(self, origin: str, request: web.BaseRequest | None = None) -> bool:
        """Whether an ``Origin`` may drive the server: its own, or one allowed by name."""
        if origin in self.allow_origins or "*" in self.allow_origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.hostname is None:
            return False
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        return port == self.port and self.host_served(parts.hostname, request)

    # -- tokens and identities ----------------------------------------------------------------
    @staticmethod
    def presented_token(request: web.BaseRequest) -> str | None:
        """The bearer token of a request (``?token=`` on ``/ws`` for browsers)."""
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        if request.path == "/ws":
            return request.query.get("token")
        return None

    def token_needed(self, path: str) -> bool:
        """Whether a route needs the token (every ``/ws`` and ``/api`` route with ``--token``)."""
        return self.token is not None and (path == "/ws" or path.startswith("/api/"))

    def token_accepted(self, token: str | None) -> bool:
        """Whether a presented token opens the ``/ws`` and ``/api`` routes."""
        return token is not None and token in {self.token, self.admin_token} - {None}

    def is_admin(self, token: str | None) -> bool:
        """Whether the request presented the admin token."""
        return self.admin_token is not None and token == self.admin_token

    def identity_of(self, request: web.BaseRequest, token: str | None) -> str:
        """Who is behind a request: the token with auth, else the address (§10)."""
        if self.token is not None and token is not None:
            return "token:" + token
        remote = request.remote or "unknown"
        if self.trusted_proxy:
            seen = forwarded_for(request.headers.getall("X-Forwarded-For", []), {remote})
            if seen is not None:
                return seen
        return remote


def forwarded_for(headers: Iterable[str], trusted: set[str]) -> str | None:
    """The client address a trusted proxy saw: the right-most ``X-Forwarded-For`` entry that is
    not itself a trusted hop (None when there is none, or it is not an address)."""
    entries = [e.strip() for h in headers for e in h.split(",") if e.strip()]
    trusted_ips = {_ip(t) for t in trusted} - {None}
    for entry in reversed(entries):
        ip = _ip(entry)
        if ip is None:
            return None  # the proxy writes addresses: anything else is not to be trusted
        if ip in trusted_ips:
            continue
        return str(ip)
    return None
