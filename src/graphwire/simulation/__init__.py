"""The force-directed 3D layout engine: numba kernels, settle detection, shortest paths."""

from . import multilevel
from .engine import Change, Simulation, Snapshot, compile_kernels, initial_positions
from .params import PhysicsParams
from .sssp import ShortestPaths, no_paths, shortest_paths

__all__ = ["Change", "PhysicsParams", "ShortestPaths", "Simulation", "Snapshot", "compile_kernels",
           "initial_positions",
           "multilevel", "no_paths", "shortest_paths"]
