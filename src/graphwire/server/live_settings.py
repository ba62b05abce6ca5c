"""The ``system.*`` and physics settings as the server's parts read them, derived from the schema.

The settings schema (``graphwire.settings.schema``, which takes the physics knobs from
``PhysicsParams``) is the only place a default or a range is written. Each object here is built
from a :data:`~graphwire.settings.schema.Lookup`: the settings service's current values while
the server runs, the schema's defaults (``from_settings()`` with no argument) in tests and
benches. When a ``system.*`` setting changes the server builds them again and hands them to the
parts that read them; nothing here holds a default of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphwire.settings.schema import AGENT_PHYSICS, KNOWLEDGE_PHYSICS, Lookup, default_of
from graphwire.simulation import PhysicsParams

RATE_CLASSES = ("positions", "settings", "control")
"""The rate classes of docs/protocol.md §1 and §10."""

_WS = "system.websocket."
_RATE = "system.rateLimits."


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """What every WebSocket connection reads (``system.websocket.*``), in seconds and bytes."""

    heartbeat_interval: float
    heartbeat_timeout: float
    max_message_size: int
    outbox_limit: int
    error_replies_per_second: int
    resume_window: float
    max_update_rate: float

    @classmethod
    def from_settings(cls, value: Lookup = default_of) -> ConnectionSettings:
        """Read from the settings (the schema's defaults without ``value``)."""
        return cls(
            heartbeat_interval=value(_WS + "heartbeatIntervalMs") / 1000,
            heartbeat_timeout=value(_WS + "heartbeatTimeoutMs") / 1000,
            max_message_size=int(value(_WS + "maxMessageSize")),
            outbox_limit=int(value(_WS + "outboxLimit")),
            error_replies_per_second=int(value(_WS + "errorRepliesPerSecond")),
            resume_window=value(_WS + "resumeWindowMs") / 1000,
            max_update_rate=float(value(_WS + "maxUpdateRate")),
        )


@dataclass(frozen=True, slots=True)
class Cadence:
    """The stream-rate settings the simulation runner reads (``system.websocket.*``)."""

    min_rate: float
    max_rate: float
    motion_threshold: float
    motion_speed: float
    motion_damping: float
    settled_keyframe_interval: float

    @classmethod
    def from_settings(cls, value: Lookup = default_of) -> Cadence:
        """Read from the settings (the schema's defaults without ``value``)."""
        return cls(
            min_rate=float(value(_WS + "minUpdateRate")),
            max_rate=float(value(_WS + "maxUpdateRate")),
            motion_threshold=float(value(_WS + "motionThreshold")),
            motion_speed=float(value(_WS + "motionSpeed")),
            motion_damping=float(value(_WS + "motionDamping")),
            settled_keyframe_interval=value(_WS + "settledKeyframeIntervalMs") / 1000,
        )


@dataclass(frozen=True, slots=True)
class HubSettings:
    """The stream settings the stream hub reads (``system.websocket.*``)."""

    deadband: float
    high_water: int
    slow_timeout: float

    @classmethod
    def from_settings(cls, value: Lookup = default_of) -> HubSettings:
        """Read from the settings (the schema's defaults without ``value``)."""
        return cls(
            deadband=float(value(_WS + "positionDeadband")),
            high_water=int(value(_WS + "slowClientHighWaterBytes")),
            slow_timeout=value(_WS + "slowClientTimeoutMs") / 1000,
        )


@dataclass(frozen=True, slots=True)
class Limits:
    """The rate-limit settings (``system.rateLimits.*``), in seconds."""

    per_minute: dict[str, int]
    burst: dict[str, int]
    ban_threshold: int
    violation_window: float
    ban_duration: float
    idle_timeout: float

    @classmethod
    def from_settings(cls, value: Lookup = default_of) -> Limits:
        """Read from the settings (the schema's defaults without ``value``)."""
        return cls(
            per_minute={c: int(value(f"{_RATE}{c}.perMinute")) for c in RATE_CLASSES},
            burst={c: int(value(f"{_RATE}{c}.burst")) for c in RATE_CLASSES},
            ban_threshold=int(value(_RATE + "banThreshold")),
            violation_window=value(_RATE + "violationWindowMs") / 1000,
            ban_duration=value(_RATE + "banDurationMs") / 1000,
            idle_timeout=value(_RATE + "idleTimeoutMs") / 1000,
        )

    def rate(self, cls: str) -> float:
        """Tokens a second of a class."""
        return self.per_minute[cls] / 60.0

    def as_json(self) -> dict[str, dict[str, int]]:
        """``connection_established.rateLimits``."""
        return {c: {"perMinute": self.per_minute[c], "burst": self.burst[c]}
                for c in RATE_CLASSES}


def physics_params(value: Lookup = default_of, *, agent: bool = False) -> PhysicsParams:
    """The physics of the knowledge graph (of agent nodes with ``agent``) from the settings."""
    prefix = AGENT_PHYSICS if agent else KNOWLEDGE_PHYSICS
    return PhysicsParams(**{name: value(prefix + name)
                            for name in PhysicsParams.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """Every derived object at once: what a ``system.*`` change rebuilds."""

    connection: ConnectionSettings
    cadence: Cadence
    hub: HubSettings
    limits: Limits
    layout_save_interval: float  # seconds (system.layout.saveIntervalMs)

    @classmethod
    def from_settings(cls, value: Lookup = default_of) -> LiveSettings:
        """Read from the settings (the schema's defaults without ``value``)."""
        return cls(ConnectionSettings.from_settings(value), Cadence.from_settings(value),
                   HubSettings.from_settings(value), Limits.from_settings(value),
                   value("system.layout.saveIntervalMs") / 1000)


class SettingsInForce:
    """The :class:`LiveSettings` in force: replaced as a whole when a ``system.*`` setting
    changes; sessions read it on use, so a change reaches every connection."""

    def __init__(self, live: LiveSettings) -> None:
        self.live = live
