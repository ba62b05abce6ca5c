"""Pictures of layouts: 2D projections of 3D layouts, one panel per engine and budget.

A layout is projected onto its two principal axes (the view that shows the most of it), nodes
coloured by community (planted blocks, top-level packages), by row for a grid, or by degree, with
the edges drawn faintly beneath. Needs matplotlib (``pip install 'graphwire[bench]'``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .layout import Case

F64 = npt.NDArray[np.float64]


def principal_plane(pos: npt.ArrayLike) -> F64:
    """Positions (n, 3) projected onto their first two principal axes, (n, 2)."""
    p = np.asarray(pos, np.float64)
    p = p - p.mean(axis=0)
    _, _, vt = np.linalg.svd(p, full_matrices=False)
    out: F64 = p @ vt[:2].T
    return out


def node_colours(case: Case) -> tuple[npt.NDArray[Any], str]:
    """A value per node and the colour map that shows it."""
    if case.community is not None:
        return case.community % 20, "tab20"
    n = case.graph.node_count
    side = math.isqrt(n)
    if case.name == "grid" and side * side == n:
        return np.arange(n) // side, "viridis"
    indptr, _, _ = case.graph.csr()
    return np.log1p(np.diff(indptr)[:n]), "plasma"


def layout_figure(case: Case, layouts: dict[str, F64], path: Path,
                  rows: dict[str, dict[str, Any]]) -> None:
    """One panel per layout of ``case``, titled with its measures, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    colour, cmap = node_colours(case)
    edges = case.edges
    cols = min(4, len(layouts))
    lines = math.ceil(len(layouts) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(4 * cols, 4 * lines), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    size = 6.0 if case.graph.node_count < 3000 else 2.0
    for ax, (label, pos) in zip(axes.ravel(), layouts.items(), strict=False):
        q = principal_plane(pos)
        segments = np.stack([q[edges[:, 0]], q[edges[:, 1]]], axis=1)
        ax.add_collection(LineCollection(list(segments), colors=(0.3, 0.3, 0.3, 0.06),
                                         linewidths=0.3))
        ax.scatter(q[:, 0], q[:, 1], c=colour, cmap=cmap, s=size, linewidths=0)
        ax.set_aspect("equal")
        ax.autoscale_view()
        row = rows.get(label, {})
        share, ratio = row.get("neighbourShare"), row.get("communityRatio")
        title = f"{label}\nshare {share}" + (f", ratio {ratio}" if ratio is not None else "")
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{case.name}: {case.graph.node_count} nodes, {edges.shape[0]} edges")
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.985))  # room for the title above the panels
    fig.savefig(path, dpi=72)
    plt.close(fig)
