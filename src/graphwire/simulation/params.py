"""Physics parameters: the defaults of the issue, and what each one does in graphwire's model.

The model (one step, per live unpinned node, forces per unit mass):

- repulsion ``repel_k / (d² + repulsion_softening_epsilon)`` from every node within
  ``repulsion_cutoff`` (per pair at most ``max_force``), switched off smoothly from half the
  cut-off to the cut-off (the CHARMM switching function: a hard edge would make the force jump
  as nodes cross it, and make every Barnes–Hut cell that straddles it an error), computed by
  Barnes–Hut with opening angle ``theta``;
- springs ``spring_k · weight · (d − rest_length)`` along every edge;
- ``center_gravity_k · p`` towards the origin (a spring to the centre) and ``gravity`` towards the
  origin whatever the distance (keeps far components from drifting when the spring is off);
- a soft wall: ``boundary_k · overshoot`` inwards past ``boundary_margin · bounds_size``, and a
  hard clamp at ``±bounds_size`` that reflects half the velocity;
- during the first ``warmup_iterations`` steps all forces ramp up linearly from 0, so the first
  steps from a random start do not explode;
- ``temperature · heat · max_force`` of deterministic noise, where heat starts at 1 and cools by
  ``cooling_rate`` a step (annealing: it shakes nodes out of tangles early, and fades);
- the total force is capped at ``max_force``; then ``v ← (v + F·dt) · damping``,
  ``|v| ≤ max_velocity``, ``p ← p + v·dt``.

Agent nodes (``type: agent``) have a parameter set of their own (the agent graph's settings,
``visualisation.graphs.visionflow.physics.*``): it drives their own forces, the springs that touch
them and their integration (damping, max_velocity, bounds); the repulsion field, ``dt``, warm-up,
cooling and settling belong to the layout and are taken from the knowledge set.

``iterations`` caps the physics steps run between two published snapshots (catch-up work when the
stream is slow); ``enabled`` false freezes the layout. The layout is *settled* once the mean
kinetic energy per node stays under ``settle_energy`` for ``settle_steps`` steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PhysicsParams:
    """Every parameter of the physics, with its default."""

    damping: float = 0.92
    spring_k: float = 0.05
    repel_k: float = 50.0
    max_velocity: float = 200.0
    max_force: float = 50.0
    dt: float = 0.016
    rest_length: float = 35.0
    repulsion_cutoff: float = 80.0
    repulsion_softening_epsilon: float = 0.001
    center_gravity_k: float = 0.02
    bounds_size: float = 500.0
    warmup_iterations: int = 200
    cooling_rate: float = 0.002
    gravity: float = 0.0001
    temperature: float = 0.01
    iterations: int = 100
    enabled: bool = True
    # graphwire's own knobs
    theta: float = 0.8
    boundary_margin: float = 0.85
    boundary_k: float = 2.0
    settle_energy: float = 0.005
    settle_steps: int = 60

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
        checks: list[tuple[str, bool]] = [
            ("damping", 0.0 <= self.damping <= 1.0),
            ("spring_k", self.spring_k >= 0),
            ("repel_k", self.repel_k >= 0),
            ("max_velocity", self.max_velocity > 0),
            ("max_force", self.max_force > 0),
            ("dt", 0 < self.dt <= 1),
            ("rest_length", self.rest_length >= 0),
            ("repulsion_cutoff", self.repulsion_cutoff > 0),
            ("repulsion_softening_epsilon", self.repulsion_softening_epsilon > 0),
            ("center_gravity_k", self.center_gravity_k >= 0),
            ("bounds_size", self.bounds_size > 0),
            ("warmup_iterations", self.warmup_iterations >= 0),
            ("cooling_rate", 0 <= self.cooling_rate < 1),
            ("gravity", self.gravity >= 0),
            ("temperature", self.temperature >= 0),
            ("iterations", self.iterations >= 1),
            ("theta", 0 <= self.theta <= 2),
            ("boundary_margin", 0 < self.boundary_margin <= 1),
            ("boundary_k", self.boundary_k >= 0),
            ("settle_energy", self.settle_energy >= 0),
            ("settle_steps", self.settle_steps >= 1),
        ]
        for name, ok in checks:
            if not ok:
                value = getattr(self, name)
                raise ValueError(f"physics parameter {name} = {value!r} is out of range")

    def as_dict(self) -> dict[str, Any]:
        """Parameters by name."""
        return dataclasses.asdict(self)
