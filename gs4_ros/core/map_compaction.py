"""How much each Gaussian shows in the views the map was built from, and dropping those that
barely show anywhere.

Why: the opacity prune keeps an opaque Gaussian that sits behind a surface or has shrunk to
a speck; such rows cost memory, rendering and every later kNN but add nothing to a view.
Measured by rendering, not by a geometric test, so occlusion counts as the rasteriser
sees it (the plain composite: the surface blend of the published views only recolours).

The weight comes from the rasteriser's own gradient: a view's rendered channel is
sum_i w_i(p) c_i, so with c = 1 the gradient of the image's sum with respect to c_i is
sum_p w_i(p), Gaussian i's share of that view in pixels. Both rasterisers give it, so no
per-Gaussian accumulation kernel is needed (gsplat has none in its Python API).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .frame import Intrinsics
from .gaussian_map import GaussianMap
from .render.base import Rasterizer, raster_intrinsics
from . import se3


def view_weights(rasterizer: Rasterizer, gmap: GaussianMap, poses_c2w: Sequence[torch.Tensor],
                 intr: Intrinsics, scale: float = 0.5) -> torch.Tensor:
    """[N] each Gaussian's largest share of any one view, in full-size pixels.

    The views are rendered at `scale` of the camera's size (a stride-8 Gaussian still
    spans several pixels at half size) and the shares scaled back by 1 / scale^2. The
    rasteriser's fixed 0.3 px^2 dilation then counts as 0.3 / scale^2 full-size px^2, so
    a speck reads as up to 2 pi 0.3 / scale^2 px (7.5 at half size): thresholds well above
    that are unaffected.
    """
    n = len(gmap)
    dev = gmap.means.device
    best = torch.zeros(n, device=dev)
    if n == 0 or not len(poses_c2w):
        return best
    small = intr.scaled(max(1, round(intr.width * scale)), max(1, round(intr.height * scale)))
    K = raster_intrinsics(small.K(dev)[None])
    area = (intr.width * intr.height) / float(small.width * small.height)
    p = gmap.params()
    means, quats, scales, opac = (t.detach() for t in (p.means, p.quats, p.scales, p.opacities))
    for pose in poses_c2w:
        ones = torch.ones(n, 3, device=dev, requires_grad=True)
        vm = se3.inv(pose.detach().to(dev).float()[None])
        out = rasterizer.rasterize(means, quats, scales, opac, ones, vm, K, small.width, small.height)
        (g,) = torch.autograd.grad(out.features[..., 0].sum(), ones)
        best = torch.maximum(best, g[:, 0] * area)
    return best


def compact(rasterizer: Rasterizer, gmap: GaussianMap, poses_c2w: Sequence[torch.Tensor],
            intr: Intrinsics, min_pixels: float, scale: float = 0.5) -> int:
    """Drop the Gaussians that cover less than `min_pixels` (full-size pixels of blending
    weight) in every one of these views; returns how many went."""
    if min_pixels <= 0 or len(gmap) == 0 or not len(poses_c2w):
        return 0
    keep = view_weights(rasterizer, gmap, poses_c2w, intr, scale) >= min_pixels
    removed = int((~keep).sum())
    if removed:
        gmap.keep(keep)
    return removed
