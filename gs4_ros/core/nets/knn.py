"""Exact k-nearest neighbours in 3D by chunked brute force (torch.cdist + topk).

The refiner's sets are a few thousand to a few tens of thousands of points, where a
chunked dense search on the GPU is faster than building a spatial index each frame and
needs no extra package; chunking bounds the memory at chunk x N distances.
"""
from __future__ import annotations

import torch


def knn(points: torch.Tensor, k: int, queries: torch.Tensor | None = None, chunk: int = 4096) -> torch.Tensor:
    """Indices [Q, k] into points [N, 3] of each query's k nearest points (the query itself
    included when it is one of the points); k is capped at N."""
    q = points if queries is None else queries
    k = min(int(k), points.shape[0])
    out = []
    p = points.detach()
    for s in range(0, q.shape[0], chunk):
        d = torch.cdist(q[s:s + chunk].detach(), p)
        out.append(d.topk(k, dim=1, largest=False).indices)
    if not out:
        return torch.zeros(0, k, dtype=torch.long, device=points.device)
    return torch.cat(out, 0)
