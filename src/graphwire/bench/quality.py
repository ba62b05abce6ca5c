"""The two measures of a layout's quality, scale-free so any layout engine can be compared.

- **Neighbour share**: for each node with k graph neighbours (k capped at :data:`MAX_K`), the
  fraction of its k nearest other nodes in space (Euclidean, 3D) that are graph neighbours; the
  mean over nodes with at least one neighbour. 1.0 is a layout that keeps every neighbourhood; a
  random ball scores about k/n.
- **Community ratio** (graphs with known communities): the mean distance between nodes of the
  same community over the mean distance between nodes of different communities, over random
  pairs. Lower is better; 1.0 is no separation.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

MAX_K = 50
"""Neighbourhoods larger than this are judged on their 50 nearest (hubs would dominate)."""

PAIRS = 200_000
"""Random pairs of each kind (same community, different communities) for the ratio."""


def neighbour_share(pos: npt.ArrayLike, indptr: npt.NDArray[np.int64],
                    nbr: npt.NDArray[np.integer]) -> float:
    """Mean share of graph neighbours among each node's k nearest nodes in space.

    ``pos`` is (n, 3), row i the node of CSR row i (``indptr`` has n + 1 entries, ``nbr`` the
    neighbour rows; self-loops and repeats are ignored).
    """
    p = np.asarray(pos, np.float64)
    n = p.shape[0]
    if n < 2:
        return float("nan")
    deg = np.diff(indptr)
    kmax = int(min(MAX_K, n - 1, int(deg.max()) if n else 0))
    if kmax == 0:
        return float("nan")
    # coincident points would make "nearest" arbitrary; a tiny jitter breaks ties fairly
    scale = float(np.ptp(p, axis=0).max()) or 1.0
    jitter = np.random.default_rng(0).normal(0, scale * 1e-9, p.shape)
    _, near = cKDTree(p + jitter).query(p + jitter, k=kmax + 1)
    near = near[:, 1:]  # drop the node itself
    shares = np.full(n, np.nan)
    for i in range(n):
        ns = np.unique(nbr[indptr[i]:indptr[i + 1]])
        ns = ns[ns != i]
        k = min(ns.shape[0], MAX_K)
        if k == 0:
            continue
        shares[i] = np.isin(near[i, :k], ns, assume_unique=False).sum() / k
    return float(np.nanmean(shares))


def community_ratio(pos: npt.ArrayLike, community: npt.ArrayLike, *, pairs: int = PAIRS,
                    seed: int = 0) -> float:
    """Mean same-community distance over mean different-community distance (random pairs)."""
    p = np.asarray(pos, np.float64)
    c = np.asarray(community)
    rng = np.random.default_rng(seed)
    n = p.shape[0]
    # different communities: uniform random pairs, kept when the communities differ
    a = rng.integers(0, n, 4 * pairs)
    b = rng.integers(0, n, 4 * pairs)
    other = c[a] != c[b]
    a, b = a[other][:pairs], b[other][:pairs]
    d_other = np.linalg.norm(p[a] - p[b], axis=1).mean()
    # same community: a random node and a random other member of its community
    order = np.argsort(c, kind="stable")
    sorted_c = c[order]
    first = np.searchsorted(sorted_c, sorted_c, side="left")
    last = np.searchsorted(sorted_c, sorted_c, side="right")
    i = rng.integers(0, n, pairs)
    size = last[i] - first[i]
    ok = size > 1
    i, size = i[ok], size[ok]
    j = first[i] + rng.integers(0, size - 1)
    j = np.where(j >= i, j + 1, j)  # skip the node itself (i indexes the sorted order)
    d_same = np.linalg.norm(p[order[i]] - p[order[j]], axis=1).mean()
    return float(d_same / d_other)
