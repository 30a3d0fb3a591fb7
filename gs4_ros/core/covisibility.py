"""Co-visibility test shared by the geometric and the learned mapper: which stride x stride
blocks (one candidate Gaussian each) does the map not explain yet?"""
from __future__ import annotations

import torch

from .fusion import observation_confidence
from .render import render_views


@torch.no_grad()
def unmapped_blocks(rasterizer, gmap, pose, K, width: int, height: int, stride: int,
                    block_depth: torch.Tensor, silhouette_threshold: float = 0.5,
                    front_margin: float = 0.04, render=None) -> torch.Tensor:
    """[hb*wb] bool: the map's silhouette over the block is below the threshold, or the
    observed depth lies clearly (front_margin x depth) in front of the rendered surface.

    render: a geometry render of the map from (nearly) this pose to use instead of
    rendering again (the tracker's reference; blocks are 8 pixels, a few millimetres of
    pose difference do not change which are explained)."""
    s = stride
    hb, wb = height // s, width // s
    if len(gmap) == 0:
        return torch.ones(hb * wb, dtype=torch.bool, device=block_depth.device)
    r = render if render is not None else render_views(rasterizer, gmap.params(), pose, K, width, height,
                                                       geometry=True)
    a = r.alpha[0, : hb * s, : wb * s].reshape(hb, s, wb, s)
    rd = r.surface_depth[0, : hb * s, : wb * s].reshape(hb, s, wb, s)
    solid = (a > 0.5).float()
    n_solid = solid.sum((1, 3)).flatten()
    rdm = (rd * solid).sum((1, 3)).flatten() / n_solid.clamp(min=1)
    unseen = a.mean((1, 3)).flatten() < silhouette_threshold
    in_front = (n_solid > 0) & (block_depth < rdm - front_margin * block_depth)
    return unseen | in_front


def block_confidence(bg, K, stride: int, width: int, height: int) -> torch.Tensor:
    """Depth-fusion confidence of each block's observation (at the block centre)."""
    hb, wb = bg.grid_shape
    dev = bg.depth.device
    vb, ub = torch.meshgrid(torch.arange(hb, device=dev), torch.arange(wb, device=dev), indexing="ij")
    uc = (ub.flatten().float() + 0.5) * stride - 0.5
    vc = (vb.flatten().float() + 0.5) * stride - 0.5
    return observation_confidence(uc, vc, bg.depth, K, width, height)
