"""The force-directed 3D layout engine: numba kernels, settle detection, shortest paths."""

from .engine import Simulation, Snapshot, initial_positions
from .params import PhysicsParams
from .sssp import ShortestPaths, no_paths, shortest_paths

__all__ = ["PhysicsParams", "ShortestPaths", "Simulation", "Snapshot", "initial_positions",
           "no_paths", "shortest_paths"]
