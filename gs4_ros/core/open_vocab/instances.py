"""A query's matches split into objects: "the couch" is where a robot should go, and two
chairs are two places. Matching Gaussian centres are put on a voxel grid and joined when
their voxels touch (26-neighbours), so objects apart by more than about a voxel stay
apart. Sparse (sorted voxel keys and scipy's connected components), so a large map costs
what its matches cost, not what its bounding volume would.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

# The 13 of the 26 neighbour offsets that come first in lexicographic order: each touching
# pair of voxels is found once.
_HALF = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                  if (i, j, k) > (0, 0, 0)], np.int64)


@dataclass
class Instance:
    centroid: np.ndarray        # [3] metres, map frame
    bbox_min: np.ndarray        # [3]
    bbox_max: np.ndarray        # [3]
    count: int                  # Gaussians
    relevance: float            # their mean relevance
    rows: np.ndarray            # their indices in the map
    colour: str = ""            # its colour's name (QueryResult.instances fills it in)


def split_instances(points: np.ndarray, relevance: np.ndarray, rows: np.ndarray, voxel: float = 0.1,
                    min_count: int = 10) -> List[Instance]:
    """Connected groups of `points` [M, 3] (largest first); groups of fewer than
    `min_count` points are left out as specks."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if voxel <= 0:
        raise ValueError(f"instance voxel size must be positive, got {voxel}")
    if len(points) == 0:
        return []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    cells = np.floor(points / voxel).astype(np.int64)
    lo = cells.min(0) - 1                       # a margin so every neighbour key is valid
    span = cells.max(0) - lo + 2

    def key(v):
        v = v - lo
        return (v[:, 0] * span[1] + v[:, 1]) * span[2] + v[:, 2]

    # Unique 1-d keys rather than unique rows: a sort of integers, several times faster.
    ks, first, inv = np.unique(key(cells), return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    vox = cells[first]
    src, dst = [], []
    for off in _HALF:
        kn = key(vox + off)
        pos = np.minimum(np.searchsorted(ks, kn), len(ks) - 1)   # ks is sorted: position = voxel
        hit = ks[pos] == kn
        src.append(np.nonzero(hit)[0])
        dst.append(pos[hit])
    src, dst = np.concatenate(src), np.concatenate(dst)
    n = len(vox)
    graph = coo_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n, n))
    _, lab = connected_components(graph, directed=False)
    lab = lab[inv]
    # Group the points by component with one sort (not a mask per component: a speckled
    # match has thousands of them).
    by = np.argsort(lab, kind="stable")
    counts = np.bincount(lab)
    ends = np.cumsum(counts)
    rows = np.asarray(rows)
    relevance = np.asarray(relevance)
    out = []
    for c in np.flatnonzero(counts >= min_count):
        idx = by[ends[c] - counts[c]:ends[c]]
        p = points[idx]
        out.append(Instance(p.mean(0), p.min(0), p.max(0), int(counts[c]), float(relevance[idx].mean()), rows[idx]))
    return sorted(out, key=lambda i: -i.count)
