"""Physics parameters: every knob of the layout, its default, range and help, written once.

The model is ForceAtlas2's (Jacomy et al., PLOS ONE 2014) in 3D with Noack's LinLog springs, a
collision push and a multilevel start; ``docs/layout.md`` says why each part is there and what
it measured. Forces act in *layout units*: a position in the wire's units is ``rest_length`` ×
the layout position, so ``rest_length`` scales a layout without changing its shape. Per live
node:

- repulsion ``repel_k / W · w_i · w_j / d`` from every other node, where ``w = degree + 1``
  when ``degree_repulsion`` (hubs push harder, so communities separate) and W is the graph's
  total weight (so the layout's scale does not depend on its size); Barnes–Hut with opening
  angle ``theta``, softened by ``repulsion_softening_epsilon`` (layout units²), long-range
  unless ``repulsion_cutoff`` (wire units) is above 0;
- springs ``spring_k · weight`` along every edge: a constant pull past one layout unit and a
  linear one inside it (LinLog: tight communities, far apart), or ``spring_k · weight · d``
  when ``linlog`` is off;
- a collision push ``collision_k · (1 − d)`` between nodes closer than one layout unit;
- gravity ``gravity · w`` and a centre spring ``center_gravity_k · w · r``, both measured at
  the centre of the node's connected component: they pull each component into view as a
  whole and bend none of them;
- a shape pull ``shape_gravity · repel_k · w / R`` towards the centre of the node's component,
  where R is the component's radius (so it stands in the same proportion to the repulsion at
  any scale), in components of up to :data:`SHAPE_NODES` nodes, fading as ``SHAPE_NODES / n``
  past that; not on the coarse levels of the multilevel start. A few hubs' repulsion otherwise
  stretches a small graph into a line or a flat sheet, where a large one is held round by the
  repulsion of its many nodes;
- a soft wall ``boundary_k · w · overshoot`` past ``boundary_margin · bounds_size`` and a hard
  clamp at ``±bounds_size``; ``temperature · heat · w`` of deterministic noise (off by
  default); the total at most ``max_force · w``.

Each node then moves by its own speed (ForceAtlas2's swing rule): ``F · s · heat / (1 + √(s ·
swing))``, where swing is how much its force flipped since the last step and the global speed
``s`` adapts to the whole layout's swing against its traction within ``jitter_tolerance``. A
node that oscillates slows down, one pushed steadily keeps moving. Every node has a *heat*
that stays 1 for ``warmup_iterations`` steps and then falls by ``cooling_rate`` a step, so the
layout converges and keeps its quality instead of mixing; a drag, pin or topology change
warms only the nodes within two hops of it, a parameter change warms all. ``1 − damping`` of a
node's previous move is averaged into the next (momentum; none by default). A move is at most
``max_velocity · dt`` wire units; ``dt`` is the time a step stands for (velocities are moves
over ``dt``; the server steps at most ``1/dt`` times a second).

Agent nodes (``type: agent``) have a parameter set of their own (the agent graph's settings,
``visualisation.graphs.visionflow.physics.*``): it drives their own forces, the springs that touch
them and their motion; the unit (``rest_length``), the repulsion tree, the global speed, the
time step, cooling and settling belong to the layout and are taken from the knowledge set.

``iterations`` caps the physics steps run between two published snapshots (catch-up work when the
stream is slow); ``enabled`` false freezes the layout. The layout is *settled* once the mean
squared move of a node stays under ``settle_energy`` (layout units², per step) for
``settle_steps`` steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _knob(default: Any, lo: float | None = None, hi: float | None = None, help: str = "") -> Any:
    """A dataclass field with its range (inclusive) and a line of help in its metadata."""
    return field(default=default, metadata={"range": (lo, hi), "help": help})


SHAPE_NODES = 100
"""Components of up to this many nodes feel the whole shape pull (``shape_gravity``)."""


@dataclass(frozen=True, slots=True)
class PhysicsParams:
    """Every parameter of the physics, with its default, range and help (``ranges``,
    ``helps``)."""

    damping: float = _knob(1.0, 0.2, 1.0, "share of a node's last move it does not carry into "
                           "the next (1: no momentum)")
    spring_k: float = _knob(1.0, 0.0, 100.0, "strength of the springs along edges")
    repel_k: float = _knob(3.0, 0.0, 1e6, "strength of the repulsion between all nodes "
                           "(relative to the graph's total weight): larger spreads the layout")
    max_velocity: float = _knob(10_000.0, 1e-6, 1e7, "largest speed of a node (units/s; "
                                "a move is at most max_velocity · dt)")
    max_force: float = _knob(1000.0, 1e-6, 1e9, "largest force on a node per unit of weight")
    dt: float = _knob(0.016, 1e-6, 1.0, "time a step stands for (s): velocities are moves "
                      "over dt, and the server steps at most 1/dt times a second")
    rest_length: float = _knob(10.0, 1e-3, 1e5, "the layout unit: a short edge, and the "
                               "distance under which nodes push apart")
    repulsion_cutoff: float = _knob(0.0, 0.0, 1e7, "repulsion ends at this distance "
                                    "(0: no cut-off, repulsion reaches every node)")
    repulsion_softening_epsilon: float = _knob(1e-4, 1e-9, 1e6, "softens the repulsion of "
                                               "nodes closer than its square root (layout "
                                               "units)")
    center_gravity_k: float = _knob(0.0, 0.0, 100.0, "spring pulling each connected "
                                    "component's centre to the origin")
    bounds_size: float = _knob(5000.0, 1.0, 1e7, "nodes stay inside ±bounds_size on each axis")
    warmup_iterations: int = _knob(50, 0, 1_000_000, "steps at full heat before the layout "
                                   "starts to cool")
    cooling_rate: float = _knob(0.002, 0.0, 0.999, "share of its heat a node loses each step "
                                "(0: never comes to rest)")
    gravity: float = _knob(0.2, 0.0, 1e6, "constant pull of each connected component towards "
                           "the origin: keeps components in view without bending them")
    temperature: float = _knob(0.0, 0.0, 100.0, "random shaking of hot nodes (0: none)")
    iterations: int = _knob(100, 1, 100_000, "most physics steps run between two snapshots")
    enabled: bool = _knob(True, help="run the physics (false: the layout is frozen)")
    # graphwire's own knobs
    theta: float = _knob(1.0, 0.0, 2.0, "Barnes–Hut opening angle: larger is faster and "
                         "coarser (0: exact)")
    boundary_margin: float = _knob(0.9, 0.01, 1.0, "a soft wall starts at this share of "
                                   "bounds_size")
    boundary_k: float = _knob(1.0, 0.0, 1e6, "stiffness of the soft wall")
    settle_energy: float = _knob(1e-6, 0.0, 1e6, "the layout is calm while a node's mean "
                                 "squared move per step stays under this (layout units²)")
    settle_steps: int = _knob(30, 1, 1_000_000, "calm steps in a row after which the layout "
                              "is settled and stops stepping")
    linlog: bool = _knob(True, help="LinLog springs (a constant pull past one unit: tight "
                         "communities far apart); off: linear springs")
    degree_repulsion: bool = _knob(True, help="nodes repel with weight degree + 1 (hubs push "
                                   "harder, so communities separate); off: all alike")
    jitter_tolerance: float = _knob(1.0, 0.01, 100.0, "how much oscillation the adaptive "
                                    "speed tolerates: larger is faster and less precise")
    collision_k: float = _knob(10.0, 0.0, 1e6, "stiffness of the push between nodes closer "
                               "than rest_length (0: nodes may overlap)")
    multilevel: bool = _knob(True, help="lay a new graph out coarse-to-fine (unfolds grids, "
                             "trees and other large sparse graphs)")
    shape_gravity: float = _knob(0.3, 0.0, 100.0, "pull of each node towards its connected "
                                 "component's centre, relative to the repulsion at the "
                                 "component's edge, fading past 100 nodes: keeps a small "
                                 "graph from stretching into a line (0: none)")

    @staticmethod
    def helps() -> dict[str, str]:
        """A line of help for every parameter."""
        return {f.name: f.metadata["help"] for f in dataclasses.fields(PhysicsParams)}

    @staticmethod
    def ranges() -> dict[str, tuple[float | None, float | None]]:
        """The inclusive range of every numeric parameter (None: unbounded)."""
        return {f.name: f.metadata["range"] for f in dataclasses.fields(PhysicsParams)
                if "range" in f.metadata}

    def replace(self, **changes: Any) -> PhysicsParams:
        """A copy with some parameters changed (unknown names or bad values raise ValueError)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown physics parameter(s): {', '.join(sorted(unknown))}")
        out = dataclasses.replace(self, **changes)
        out.validate()
        return out

    def validate(self) -> None:
        """Raise ValueError naming the first parameter outside its range."""
        for name, (lo, hi) in self.ranges().items():
            value = getattr(self, name)
            if isinstance(value, bool):
                continue
            if (lo is not None and not value >= lo) or (hi is not None and not value <= hi):
                low = "-inf" if lo is None else f"{lo:g}"
                high = "inf" if hi is None else f"{hi:g}"
                raise ValueError(f"physics parameter {name} = {value!r} is out of range "
                                 f"[{low}, {high}]")

    def as_dict(self) -> dict[str, Any]:
        """Parameters by name."""
        return dataclasses.asdict(self)
