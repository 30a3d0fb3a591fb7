"""gsplat backend (CUDA only). gsplat compiles its kernels on first use (about a minute)."""
from __future__ import annotations

from typing import Optional

import torch
from gsplat import rasterization  # noqa: F401  (ImportError selects the PyTorch backend)

from .base import EPS2D, FAR, NEAR, RasterOutput, Rasterizer


class GsplatRasterizer(Rasterizer):
    name = "gsplat"

    def rasterize(self, means, quats, scales, opacities, features, viewmats, Ks, width: int,
                  height: int, backgrounds: Optional[torch.Tensor] = None) -> RasterOutput:
        D = features.shape[-1]
        img, alpha, meta = rasterization(
            means=means, quats=quats, scales=scales, opacities=opacities, colors=features,
            viewmats=viewmats, Ks=Ks, width=int(width), height=int(height),
            near_plane=NEAR, far_plane=FAR, eps2d=EPS2D, sh_degree=None, packed=False,
            backgrounds=backgrounds, render_mode="RGB+D", rasterize_mode="classic",
            channel_chunk=64,
        )
        radii = meta["radii"]  # [C, N, 2] (or [C, N] in older releases)
        visible = (radii > 0).all(-1) if radii.dim() == 3 else radii > 0
        return RasterOutput(features=img[..., :D], depth=img[..., D], alpha=alpha[..., 0],
                            visible=visible)
