"""The two layout measures, on layouts whose answer is known."""

from __future__ import annotations

import numpy as np

from graphwire.bench.graphs import grid
from graphwire.bench.quality import community_ratio, neighbour_share


def test_a_flat_grid_keeps_every_neighbourhood_and_a_random_ball_none() -> None:
    g = grid(20)
    indptr, nbr, _ = g.csr()
    rows, cols = np.divmod(np.arange(400), 20)
    flat = np.stack([cols, rows, np.zeros(400)], axis=1).astype(np.float64)
    assert neighbour_share(flat, indptr, nbr) > 0.99
    ball = np.random.default_rng(1).normal(size=(400, 3))
    assert neighbour_share(ball, indptr, nbr) < 0.05  # about k/n


def test_the_community_ratio_of_separated_and_mixed_blocks() -> None:
    rng = np.random.default_rng(2)
    block = np.repeat(np.arange(5), 100)
    centres = rng.normal(0, 100, (5, 3))
    apart = centres[block] + rng.normal(0, 1, (500, 3))
    assert community_ratio(apart, block) < 0.05
    mixed = rng.normal(0, 1, (500, 3))
    assert abs(community_ratio(mixed, block) - 1.0) < 0.03
