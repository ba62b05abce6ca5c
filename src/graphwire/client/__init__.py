"""The graphwire Python client (issue 10; the contract is docs/protocol.md).

- :class:`Client`: asyncio; a resilient connection (init, resume, backoff with full jitter,
  heartbeats, a bounded outgoing queue, close codes), events as callbacks and an async iterator.
- :class:`GraphMirror` (``client.mirror``): numpy arrays of positions, velocities and SSSP
  distances indexed by node id, kept current from any format, with the node and edge tables.
- :class:`SettingsMirror` (``client.settings``): every setting, ``get``/``set``/``batch_set``,
  subscriptions to a path prefix, digest checks.
- :class:`BatchQueue` (``client.positions``): node moves sent in validated, coalesced,
  prioritised, retried batches; usable on its own with any send function.
- :class:`BlockingClient`: the same for scripts and notebooks, the loop in a background thread.
"""

from .backoff import Backoff
from .batch_queue import BatchQueue, Counters
from .blocking import BlockingClient
from .connection import Client
from .errors import (
    AuthenticationError,
    ClientClosedError,
    ClientError,
    ClientTimeoutError,
    ConnectError,
    RequestError,
    ServerError,
    SettingsError,
)
from .events import (
    Connected,
    Disconnected,
    ErrorEvent,
    Event,
    Frame,
    GraphChanged,
    RateLimitWarning,
    Reconnecting,
    SettingsChanged,
)
from .mirror import GraphMirror, MirrorSnapshot
from .settings_mirror import SettingsMirror

__all__ = [
    "AuthenticationError",
    "Backoff",
    "BatchQueue",
    "BlockingClient",
    "Client",
    "ClientClosedError",
    "ClientError",
    "ClientTimeoutError",
    "ConnectError",
    "Connected",
    "Counters",
    "Disconnected",
    "ErrorEvent",
    "Event",
    "Frame",
    "GraphChanged",
    "GraphMirror",
    "MirrorSnapshot",
    "RateLimitWarning",
    "Reconnecting",
    "RequestError",
    "ServerError",
    "SettingsChanged",
    "SettingsError",
    "SettingsMirror",
]
