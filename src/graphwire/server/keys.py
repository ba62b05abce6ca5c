"""The parts of a running server, as typed keys of the aiohttp application.

``server.app`` builds each part once and stores it under its key; route handlers read the
parts they need with ``request.app[KEY]``. No part holds the application or another part's
owner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from graphwire.settings import SettingsService

from .access import AccessPolicy
from .config import ServerConfig
from .connections import Connections
from .gateway import RemoteGraph, RemoteRunner, RemoteSource
from .graph_service import GraphService
from .metrics import Metrics
from .rate_limit import RateLimiter
from .runner import SimulationRunner
from .settings_writes import LocalSettingsWrites, RemoteSettingsWrites
from .source import SourceFollower
from .stream_hub import StreamHub
from .ws import WebSocketEndpoint

CONFIG = web.AppKey("config", ServerConfig)
"""The command line the server runs with."""
ACCESS = web.AppKey("access", AccessPolicy)
"""Who may talk to the server (hosts, origins, tokens, identities)."""
METRICS = web.AppKey("metrics", Metrics)
"""The §10 counters."""
LIMITER = web.AppKey("limiter", RateLimiter)
"""Violations and bans per identity, HTTP buckets."""
CONNECTIONS = web.AppKey("connections", Connections)
"""The open WebSocket connections, resume deadlines, bans and broadcast."""
SETTINGS = web.AppKey("settings", SettingsService)
"""Every setting's value, and the rules for changing them."""
GRAPH_SERVICE: web.AppKey[GraphService | RemoteGraph] = web.AppKey("graph_service")
"""The graph, its epoch, latest snapshot, shortest paths and commands (a gateway's: the mirror
and the commands it forwards)."""
RUNNER: web.AppKey[SimulationRunner | RemoteRunner] = web.AppKey("runner")
"""The simulation thread (stream rate, snapshot requests, health); a gateway's stand-in."""
SETTINGS_WRITES: web.AppKey[LocalSettingsWrites | RemoteSettingsWrites] = web.AppKey(
    "settings_writes")
"""Where settings writes go: this process's settings, or the cluster's one writer."""
CLUSTER: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("cluster")
"""Scale-out only: Redis, the lease and the feed, for ``/healthz`` and the metrics."""
HUB = web.AppKey("hub", StreamHub)
"""Subscriptions and the encode-once fan-out."""
WEBSOCKETS = web.AppKey("websockets", WebSocketEndpoint)
"""``GET /ws``."""
SOURCE: web.AppKey[SourceFollower | RemoteSource] = web.AppKey("source")
"""The served source: its watcher and reload."""
STREAM_STATE: web.AppKey[Callable[[], dict[str, object]]] = web.AppKey("stream_state")
"""The stream's state for ``/api/metrics`` (rate, seq, settled, subscribers, epoch, ...)."""
