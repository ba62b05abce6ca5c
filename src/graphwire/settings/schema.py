"""The settings schema: every knob, its type, default and range (docs/protocol.md §5, §10).

One list, in a stable order. Path ids 1–9 are fixed by the contract; every other path gets an
id from the store the first time it sees the path, kept across restarts. A path's declared tag
is its type on the wire: float settings F64, integer settings I64, flags Bool, text String.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from graphwire.protocol.settings_codec import Tag, Value
from graphwire.simulation.params import PhysicsParams

SCHEMA_VERSION = 1

FIXED_PATH_IDS: dict[str, int] = {
    "visualisation.graphs.logseq.physics.damping": 1,
    "visualisation.graphs.logseq.physics.spring_k": 2,
    "visualisation.graphs.logseq.physics.repel_k": 3,
    "visualisation.graphs.logseq.physics.max_velocity": 4,
    "visualisation.graphs.logseq.physics.gravity": 5,
    "visualisation.graphs.logseq.physics.temperature": 6,
    "visualisation.graphs.logseq.physics.bounds_size": 7,
    "visualisation.graphs.logseq.physics.iterations": 8,
    "visualisation.graphs.logseq.physics.enabled": 9,
}

KNOWLEDGE_PHYSICS = "visualisation.graphs.logseq.physics."
AGENT_PHYSICS = "visualisation.graphs.visionflow.physics."

Lookup = Callable[[str], Any]
"""The current value of a dotted path, as a plain Python value (the service's ``value``, or
:func:`default_of` for the schema's defaults)."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its path, declared tag, default and allowed range."""

    path: str
    tag: Tag
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    admin: bool = False  # under system.*: writable only with the admin token, when one is set
    help: str = ""

    @property
    def default_value(self) -> Value:
        """The default as a typed value."""
        return Value(self.tag, self.default)

    def check(self, value: Value) -> str | None:
        """Why a value (already of the declared tag) is out of range, or None."""
        v = value.data
        if self.tag in (Tag.F64, Tag.F32) and not math.isfinite(v):
            return f"{self.path} must be a finite number"
        if self.minimum is not None and v < self.minimum:
            return f"{self.path} must be at least {self.minimum:g}"
        if self.maximum is not None and v > self.maximum:
            return f"{self.path} must be at most {self.maximum:g}"
        if self.choices is not None and v not in self.choices:
            return f"{self.path} must be one of {', '.join(self.choices)}"
        return None


def _f(path: str, default: float, lo: float | None = None, hi: float | None = None,
       help: str = "") -> Setting:
    return Setting(path, Tag.F64, float(default), lo, hi, help=help)


def _i(path: str, default: int, lo: int | None = None, hi: int | None = None,
       help: str = "") -> Setting:
    return Setting(path, Tag.I64, int(default), lo, hi, help=help)


def _b(path: str, default: bool, help: str = "") -> Setting:
    return Setting(path, Tag.BOOL, bool(default), help=help)


def _s(path: str, default: str, choices: tuple[str, ...] | None = None,
       help: str = "") -> Setting:
    return Setting(path, Tag.STRING, default, choices=choices, help=help)


# The fixed ids first, in their order, then the rest of PhysicsParams in declaration order.
_PHYSICS_ORDER = [p.rsplit(".", 1)[1] for p in FIXED_PATH_IDS] + [
    name for name in PhysicsParams.__dataclass_fields__
    if name not in {p.rsplit(".", 1)[1] for p in FIXED_PATH_IDS}
]


def _physics(prefix: str) -> list[Setting]:
    """The physics settings, with the defaults, ranges and help of ``PhysicsParams``."""
    defaults = PhysicsParams()
    ranges, helps = PhysicsParams.ranges(), PhysicsParams.helps()
    out = []
    for name in _PHYSICS_ORDER:
        value = getattr(defaults, name)
        lo, hi = ranges[name]
        if isinstance(value, bool):
            out.append(_b(prefix + name, value, helps[name]))
        elif isinstance(value, int):
            out.append(_i(prefix + name, value, None if lo is None else int(lo),
                          None if hi is None else int(hi), helps[name]))
        else:
            out.append(_f(prefix + name, value, lo, hi, helps[name]))
    return out


def _rendering() -> list[Setting]:
    r = "visualisation.rendering."
    return [
        _s(r + "background", "#0b0e14"),
        _f(r + "nodes.size", 4.0, 0.1, 100.0),
        _s(r + "nodes.knowledgeColor", "#4fc3f7"),
        _s(r + "nodes.agentColor", "#ffb74d"),
        _b(r + "nodes.labels", True, "draw labels of nodes near the camera"),
        _f(r + "nodes.labelDistance", 250.0, 0.0, 1e6),
        _f(r + "edges.opacity", 0.35, 0.0, 1.0),
        _s(r + "edges.color", "#90a4ae"),
        _f(r + "edges.width", 1.0, 0.1, 20.0, "line width, for clients that draw wide lines "
           "(the browser client's WebGL lines are one pixel wide: not in its panel)"),
        _s(r + "sssp.pathColor", "#ff5252"),
        _b(r + "interpolate", True, "ease nodes between frames"),
    ]


def _websocket() -> list[Setting]:
    w = "system.websocket."
    return [
        _f(w + "minUpdateRate", 5.0, 0.1, 240.0, "stream rate (Hz) while the layout is calm"),
        _f(w + "maxUpdateRate", 60.0, 0.1, 240.0, "stream rate (Hz) while it moves fast"),
        _f(w + "motionThreshold", 0.05, 0.0, 1.0,
           "share of nodes faster than motionSpeed that makes the stream go fast"),
        _f(w + "motionSpeed", 10.0, 0.0, 1e6, "speed (units/s) that counts as fast motion"),
        _f(w + "motionDamping", 0.9, 0.0, 0.999, "smoothing of the rate, per 200 ms"),
        _f(w + "positionDeadband", 0.01, 0.0, 1e6,
           "V1/V2 deltas hold nodes that moved more than this since last sent"),
        _i(w + "settledKeyframeIntervalMs", 10_000, 100, 3_600_000),
        _i(w + "heartbeatIntervalMs", 30_000, 10, 3_600_000),
        _i(w + "heartbeatTimeoutMs", 45_000, 10, 3_600_000),
        _i(w + "maxMessageSize", 10 * 1024 * 1024, 1024, 256 * 1024 * 1024),
        _i(w + "slowClientHighWaterBytes", 2 * 1024 * 1024, 1024, 1 << 31,
           "a client whose socket holds more than this is backed up: control messages "
           "past outboxLimit close it (1013)"),
        _i(w + "slowClientTimeoutMs", 30_000, 100, 3_600_000,
           "a client skipped for this long is closed with 1013"),
        _i(w + "outboxLimit", 1000, 10, 1_000_000,
           "control messages waiting for one client before it is closed with 1013"),
        _i(w + "errorRepliesPerSecond", 10, 1, 10_000),
        _i(w + "resumeWindowMs", 600_000, 0, 86_400_000,
           "how long a disconnected clientId is remembered for /ws?resume="),
    ]


def _rate_limits() -> list[Setting]:
    r = "system.rateLimits."
    return [
        *(_i(f"{r}{cls}.{field}", default, 1, 10_000_000)
          for cls, per_minute, burst in (("positions", 300, 50), ("settings", 600, 60),
                                         ("control", 120, 20))
          for field, default in (("perMinute", per_minute), ("burst", burst))),
        _i(r + "banThreshold", 10, 1, 1_000_000, "violations in the window that ban"),
        _i(r + "violationWindowMs", 60_000, 1000, 86_400_000),
        _i(r + "banDurationMs", 600_000, 0, 86_400_000),
        _i(r + "idleTimeoutMs", 600_000, 1000, 86_400_000, "idle rate-limit state is dropped"),
    ]


def _source() -> list[Setting]:
    return [
        _i("system.source.watchQuietMs", 50, 1, 60_000,
           "a burst of file changes is read once no change came for this long"),
        _i("system.source.watchMaxWaitMs", 1000, 10, 600_000,
           "a burst that goes on is read anyway this long after it began"),
        _i("system.layout.saveIntervalMs", 2000, 100, 3_600_000,
           "while the layout moves, its positions are saved at most this often"),
    ]


def build_schema() -> list[Setting]:
    """Every setting, in the stable order ids are first assigned in."""
    items = [*_physics(KNOWLEDGE_PHYSICS), *_physics(AGENT_PHYSICS), *_rendering(),
             *_websocket(), *_rate_limits(), *_source()]
    return [
        Setting(s.path, s.tag, s.default, s.minimum, s.maximum, s.choices,
                admin=s.path.startswith("system."), help=s.help)
        for s in items
    ]


@functools.cache
def _defaults() -> dict[str, Any]:
    return {s.path: s.default for s in build_schema()}


def default_of(path: str) -> Any:
    """The schema's default of a path (KeyError for a path the schema lacks): the
    :data:`Lookup` every derived settings object falls back on."""
    return _defaults()[path]


def reference() -> str:
    """``docs/settings.md``: every setting as a Markdown table (generated, kept in the repo)."""
    lines = [
        "# Settings",
        "",
        "Every setting of graphwire: dotted path, type on the wire, default, range and what it",
        "does. Generated from `graphwire.settings.schema` (`graphwire settings reference >",
        "docs/settings.md`; a test keeps this file equal to it). Paths under `system.*` need",
        "the admin token when the server has one. Path ids 1–9 are fixed by the contract",
        "(marked); the others are assigned per database. The agent graph's physics",
        "(`visualisation.graphs.visionflow.physics.*`) has the same knobs as the knowledge",
        "graph's; the model they drive is described in `docs/layout.md`.",
        "",
        "| path | type | default | range | what it does |",
        "|---|---|---|---|---|",
    ]
    for st in build_schema():
        fixed = FIXED_PATH_IDS.get(st.path)
        name = f"`{st.path}`" + (f" (id {fixed})" if fixed else "")
        default = "true" if st.default is True else "false" if st.default is False else st.default
        span = ("" if st.minimum is None and st.maximum is None
                else f"{_num(st.minimum)} … {_num(st.maximum)}")
        if st.choices:
            span = ", ".join(st.choices)
        lines.append(f"| {name} | {st.tag.name} | {default} | {span} | {st.help} |")
    return "\n".join(lines) + "\n"


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


class Schema:
    """The settings schema, by path."""

    def __init__(self, settings: list[Setting] | None = None) -> None:
        self.settings = settings if settings is not None else build_schema()
        self.by_path = {s.path: s for s in self.settings}
        if len(self.by_path) != len(self.settings):
            raise ValueError("a settings path appears twice in the schema")
        for path in FIXED_PATH_IDS:
            if path not in self.by_path:
                raise ValueError(f"the schema lacks the fixed path {path}")

    def __iter__(self) -> Iterator[Setting]:
        return iter(self.settings)

    def __len__(self) -> int:
        return len(self.settings)

    def get(self, path: str) -> Setting | None:
        """The setting at a path."""
        return self.by_path.get(path)

