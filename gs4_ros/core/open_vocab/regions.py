"""A keyframe's regions and the bank ids of the Gaussians it sees.

SegSplat takes its regions from SAM masks; without a segmentation model we take them from
the map itself: the Gaussians a keyframe sees (centre in a block whose depth agrees, as
semantic fusion gates them) are binned on the keyframe's stride-block grid, each block
takes the argmax of its Gaussians' fused class distribution, and a region is a
4-connected run of blocks of one class. Each region goes through the encoder into the
bank, and every Gaussian in it takes the region's entry id, so the latest keyframe to see
a Gaussian decides its id (as it decides its fused classes).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .. import se3
from ..geometry import project
from .bank import VocabBank
from .encoders import Regions


@torch.no_grad()
def block_depth(depth: torch.Tensor, stride: int):
    """Mean valid depth per stride block, and which blocks are mostly valid."""
    hb, wb = depth.shape[0] // stride, depth.shape[1] // stride
    d = depth[:hb * stride, :wb * stride][None, None]
    v = (d > 0).to(d.dtype)
    s = F.avg_pool2d(d * v, stride)[0, 0]
    c = F.avg_pool2d(v, stride)[0, 0]
    return s / c.clamp(min=1e-6), c > 0.5


@torch.no_grad()
def keyframe_regions(gmap, pose: torch.Tensor, K: torch.Tensor, depth: torch.Tensor, stride: int,
                     gate: float, fresh: Optional[torch.Tensor] = None):
    """(Regions, rows [M] map indices, row_region [M]) for the Gaussians this view sees;
    None when it sees none with semantics. `fresh` [N] marks rows this keyframe just made:
    they need no depth gate (a block's mean depth can miss its own Gaussian at an edge)."""
    n, kc = len(gmap), gmap.num_classes
    if n == 0 or kc == 0:
        return None
    bd, bv = block_depth(depth, stride)
    hb, wb = bd.shape
    px, py, z = project(se3.transform_points(se3.inv(pose), gmap.means), K)
    u = torch.floor((px + 0.5) / stride).long()      # block of the pixel (centres at integers)
    v = torch.floor((py + 0.5) / stride).long()
    ok = (z > 1e-3) & (u >= 0) & (u < wb) & (v >= 0) & (v < hb)
    t = v.clamp(0, hb - 1) * wb + u.clamp(0, wb - 1)
    d = bd.reshape(-1)[t]
    seen = bv.reshape(-1)[t] & ((z - d).abs() < gate + 0.02 * d)
    ok &= seen if fresh is None else (seen | fresh)
    ok &= gmap.labelled()
    rows = torch.nonzero(ok).reshape(-1)
    if rows.numel() == 0:
        return None
    t = t[rows]
    p = torch.softmax(gmap.sem_logits[rows].float(), -1)
    sums = torch.zeros(hb * wb, kc, device=p.device).index_add_(0, t, p)
    cnt = torch.zeros(hb * wb, device=p.device).index_add_(0, t, torch.ones_like(t, dtype=p.dtype))
    sums, cnt, t = sums.cpu().numpy(), cnt.cpu().numpy(), t.cpu().numpy()
    cls = np.where(cnt > 0, sums.argmax(-1), -1).reshape(hb, wb)
    grid = np.full((hb, wb), -1, np.int64)
    nreg = 0
    import cv2

    for c in np.unique(cls[cls >= 0]):
        k, lab = cv2.connectedComponents((cls == c).astype(np.uint8), connectivity=4)
        m = lab > 0
        grid[m] = lab[m] - 1 + nreg
        nreg += k - 1
    flat = grid.reshape(-1)
    has = flat >= 0
    # One bincount per class: np.add.at over the grid was half of this function's time.
    probs = np.stack([np.bincount(flat[has], weights=sums[has, k], minlength=nreg) for k in range(kc)], -1)
    weight = np.bincount(flat[has], weights=cnt[has], minlength=nreg)
    probs /= np.maximum(weight[:, None], 1e-12)
    regions = Regions(grid, stride, probs.astype(np.float32), weight.astype(np.float32))
    return regions, rows, flat[t]


@torch.no_grad()
def assign_bank_ids(gmap, bank: VocabBank, encoder, pose: torch.Tensor, K: torch.Tensor,
                    depth: torch.Tensor, rgb: torch.Tensor, stride: int, gate: float,
                    fresh: Optional[torch.Tensor] = None) -> int:
    """Encode this keyframe's regions into the bank and give their Gaussians the ids;
    returns how many Gaussians got one."""
    found = keyframe_regions(gmap, pose, K, depth, stride, gate, fresh)
    if found is None:
        return 0
    regions, rows, row_region = found
    emb = np.asarray(encoder.encode_regions(rgb, regions), np.float32)
    if emb.shape != (len(regions.weight), bank.dim):
        raise ValueError(f"encoder {encoder.name!r} gave embeddings of shape {emb.shape} for "
                         f"{len(regions.weight)} regions; the bank holds {bank.dim}-d embeddings")
    ids = bank.add(emb, regions.weight)
    gmap.bank_id[rows] = torch.as_tensor(ids[row_region], device=gmap.bank_id.device, dtype=gmap.bank_id.dtype)
    return int(rows.numel())
