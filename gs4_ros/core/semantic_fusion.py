"""Multi-view fusion of per-Gaussian semantics.

A Gaussian's class logits come from the one keyframe that created it, and a single view's
prediction (the semantic head's, or an external segmenter's label image) is noisy: far,
oblique or cut-off views of an object are the ones it gets wrong. Later keyframes see the
same surface again, so each keyframe's class evidence is averaged into the Gaussians it
sees, as SemanticFusion does per surfel. The average is a running mean of
log-probabilities (a geometric mean of the per-view distributions, whose argmax is the
naive-Bayes one) over at most `max_count` views, after which it becomes an exponential
average, so the map can still follow a scene that changes.
"""
from __future__ import annotations

import torch

from . import se3
from .config import MappingConfig
from .initializer import labels_to_logits


@torch.no_grad()
def fuse_semantics(gmap, pose: torch.Tensor, K: torch.Tensor, cfg: MappingConfig, grid_shape,
                   block_depth: torch.Tensor, block_valid: torch.Tensor, evidence: torch.Tensor,
                   num_rows: int) -> torch.Tensor:
    """Average one keyframe's class evidence into the first `num_rows` Gaussians it sees.

    The evidence lives on the keyframe's block grid (cfg.stride x cfg.stride pixel blocks,
    `grid_shape` = (rows, cols), flattened row-major like the initialisers' blocks):
    `evidence` is [T, K] logits, or [T] integer labels (>= K: no evidence). A Gaussian
    takes the block its centre projects into when that block has depth (`block_valid`) and
    its depth (`block_depth`) is within cfg.semantic_fusion_gate + 2% of depth of the
    Gaussian's, so surfaces hidden behind the observed one get nothing. Rows from num_rows
    on (those this keyframe just inserted, from the same evidence) are left alone. A
    Gaussian averages at most cfg.semantic_fusion_max_views views (0: no fusion). Returns
    how many rows were updated (a 0-d tensor: reading it would wait for the GPU).
    """
    n = min(int(num_rows), len(gmap))
    kc = gmap.num_classes
    max_count, stride = cfg.semantic_fusion_max_views, cfg.stride
    if n == 0 or kc == 0 or max_count <= 0:
        return torch.zeros((), dtype=torch.long)
    hb, wb = grid_shape
    mc = se3.transform_points(se3.inv(pose), gmap.means[:n])
    z = mc[:, 2]
    zs = z.clamp(min=1e-3)
    off = 0.5 * (stride - 1)                        # block (0, 0) is centred on pixel (s-1)/2
    u = torch.round((K[0, 0] * mc[:, 0] / zs + K[0, 2] - off) / stride).long()
    v = torch.round((K[1, 1] * mc[:, 1] / zs + K[1, 2] - off) / stride).long()
    ok = (z > 1e-3) & (u >= 0) & (u < wb) & (v >= 0) & (v < hb)
    t = v.clamp(0, hb - 1) * wb + u.clamp(0, wb - 1)
    d = block_depth[t]
    ok &= block_valid[t] & (d > 0) & ((z - d).abs() < cfg.semantic_fusion_gate + 0.02 * d)
    ev = evidence[t]
    if ev.dim() == 1:                               # labels
        ok &= ev < kc
        ev = labels_to_logits(ev.clamp(max=kc - 1), kc).to(gmap.sem_logits.dtype)
    lp = torch.log_softmax(ev, -1)
    c = gmap.sem_count[:n].to(lp.dtype)[:, None]
    fused = (c * torch.log_softmax(gmap.sem_logits[:n], -1) + lp) / (c + 1)
    # Masked updates over every row rather than a gather of the seen ones: selecting them
    # (nonzero) would make the host wait for the GPU in mid-frame.
    gmap.sem_logits[:n] = torch.where(ok[:, None], fused, gmap.sem_logits[:n])
    gmap.sem_count[:n] = torch.where(ok, (gmap.sem_count[:n] + 1).clamp(max=max_count), gmap.sem_count[:n])
    return ok.sum()


@torch.no_grad()
def refuse_semantics(gmap, views, cfg: MappingConfig) -> int:
    """Replace the map's class evidence by the fusion of `views` alone, each a tuple (pose,
    K, grid_shape, block_depth, block_valid, evidence) as fuse_semantics takes them; rows no
    view sees keep the evidence they had. Returns how many rows the views re-labelled.

    Why not add the views to what is there: the final pass re-predicts keyframes that the
    map has already fused once, and counting them twice would let the weaker first
    prediction keep half the say."""
    n = len(gmap)
    if n == 0 or gmap.num_classes == 0 or not views:
        return 0
    old_logits, old_count = gmap.sem_logits.clone(), gmap.sem_count.clone()
    gmap.sem_count.zero_()       # count 0: a row's first view replaces its logits
    for pose, K, grid_shape, block_depth, block_valid, evidence in views:
        fuse_semantics(gmap, pose, K, cfg, grid_shape, block_depth, block_valid, evidence, n)
    seen = gmap.sem_count > 0
    gmap.sem_logits.copy_(torch.where(seen[:, None], gmap.sem_logits, old_logits))
    gmap.sem_count.copy_(torch.where(seen, gmap.sem_count, old_count))
    return int(seen.sum())
