"""Depth fusion of Gaussian positions: a confidence-weighted running average along each
Gaussian's normal, so the tracking reference averages many views instead of keeping the
first view's sensor errors (depth noise, pixel-dependent depth distortion)."""
from __future__ import annotations

import torch

from . import se3
from .geometry import depth_weight
from .render.base import gaussian_normals


def observation_confidence(u, v, d, K, W: int, H: int) -> torch.Tensor:
    """Weight of a depth sample: structured-light noise grows ~z^2 and lens/depth
    distortion towards the image border, so near, central samples count most."""
    r2 = ((u - K[0, 2]) / (0.5 * W)) ** 2 + ((v - K[1, 2]) / (0.5 * H)) ** 2
    return torch.exp(-r2 / (2 * 0.6 ** 2)) * depth_weight(d)


@torch.no_grad()
def fuse_depth(gmap, depth: torch.Tensor, K: torch.Tensor, pose: torch.Tensor, gate: float,
               max_weight: float, min_depth: float = 0.1, max_depth: float = 8.0) -> torch.Tensor:
    """Move visible Gaussians along their normals towards the observed surface.

    `gmap.obs_weight` accumulates confidence (capped at max_weight, so the map can still
    follow slow changes). Returns how many Gaussians were updated (a 0-d tensor: reading
    it would wait for the GPU).
    """
    if len(gmap) == 0:
        return torch.zeros((), dtype=torch.long)
    H, W = depth.shape
    Tcw = se3.inv(pose)
    mc = se3.transform_points(Tcw, gmap.means)
    z = mc[:, 2]
    zs = z.clamp(min=1e-3)
    uf = K[0, 0] * mc[:, 0] / zs + K[0, 2]
    vf = K[1, 1] * mc[:, 1] / zs + K[1, 2]
    u, v = torch.round(uf).long(), torch.round(vf).long()
    ok = (z > min_depth) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    d = depth[v.clamp(0, H - 1), u.clamp(0, W - 1)]
    ok &= (d > min_depth) & (d < max_depth)
    ray = torch.stack([(u.to(z.dtype) - K[0, 2]) / K[0, 0], (v.to(z.dtype) - K[1, 2]) / K[1, 1],
                       torch.ones_like(z)], -1)
    p_obs = ray * d[:, None]
    n_w = gaussian_normals(gmap.quats, torch.exp(gmap.log_scales))
    n_c = n_w @ Tcw[:3, :3].T
    r = ((p_obs - mc) * n_c).sum(-1)
    cos_view = (n_c * ray).sum(-1).abs() / ray.norm(dim=-1)
    ok &= (r.abs() < gate + 0.01 * d) & (cos_view > 0.3)
    # Masked updates over every row rather than a gather of the fused ones: selecting
    # them (nonzero) would make the host wait for the GPU in mid-frame.
    w_new = torch.where(ok, observation_confidence(u.to(z.dtype), v.to(z.dtype), d, K, W, H) * cos_view,
                        torch.zeros_like(z))
    w_old = gmap.obs_weight
    step = r * w_new / (w_old + w_new).clamp(min=1e-12)
    gmap.means += torch.where(ok, step, torch.zeros_like(step))[:, None] * n_w
    gmap.obs_weight.copy_(torch.where(ok, torch.clamp(w_old + w_new, max=max_weight), w_old))
    return ok.sum()
