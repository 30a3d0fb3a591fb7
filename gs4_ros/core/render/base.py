"""Renderer interface and the map-level `render_views` used by tracking, mapping and eval."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import torch

from .. import se3
from ..gaussian_map import GaussianParams

log = logging.getLogger(__name__)

# Shared image-formation constants (they mirror gsplat's kernels).
EPS2D = 0.3
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
NEAR = 0.01
FAR = 1e10


@dataclass
class RasterOutput:
    """Raw rasteriser output for C cameras."""

    features: torch.Tensor  # [C, H, W, D] alpha-composited features (+ background)
    depth: torch.Tensor     # [C, H, W] accumulated depth sum(w_i z_i)
    alpha: torch.Tensor     # [C, H, W] accumulated opacity (silhouette)
    visible: torch.Tensor   # [C, N] bool: Gaussian touched the image


class Rasterizer:
    """Backend interface. Inputs are activated Gaussians and world-to-camera viewmats."""

    name = "base"

    def rasterize(self, means, quats, scales, opacities, features, viewmats, Ks, width: int,
                  height: int, backgrounds: Optional[torch.Tensor] = None) -> RasterOutput:
        raise NotImplementedError


@dataclass
class RenderOutput:
    color: torch.Tensor                 # [C, H, W, 3]
    depth: torch.Tensor                 # [C, H, W] expected depth (0 where alpha ~ 0)
    alpha: torch.Tensor                 # [C, H, W]
    semantics: Optional[torch.Tensor]   # [C, H, W, K] composited class probabilities
    visible: torch.Tensor               # [C, N]
    depth_acc: torch.Tensor             # [C, H, W] accumulated depth (differentiable target)


def render_views(rasterizer: Rasterizer, params: GaussianParams, poses_c2w: torch.Tensor,
                 K: torch.Tensor, width: int, height: int, semantics: bool = False,
                 background: Optional[torch.Tensor] = None,
                 min_alpha_for_depth: float = 1e-3) -> RenderOutput:
    """Render colour, depth, silhouette and optionally semantics at camera-to-world poses.

    poses_c2w [C, 4, 4] or [4, 4]; K [3, 3] or [C, 3, 3]. Differentiable with respect to
    the Gaussians and the poses.
    """
    if poses_c2w.dim() == 2:
        poses_c2w = poses_c2w[None]
    C = poses_c2w.shape[0]
    Ks = K[None].expand(C, 3, 3) if K.dim() == 2 else K
    viewmats = se3.inv(poses_c2w)
    feats = [params.colors]
    if semantics:
        if params.sem_probs is None:
            raise ValueError("semantic rendering asked for but the Gaussians carry no semantics")
        feats.append(params.sem_probs)
    feats = torch.cat(feats, -1)
    bg = None
    if background is not None:
        bg = torch.zeros(C, feats.shape[-1], device=feats.device, dtype=feats.dtype)
        bg[:, :3] = background.to(feats)
    if len(params) == 0:
        z = torch.zeros(C, height, width, device=poses_c2w.device, dtype=poses_c2w.dtype)
        f = torch.zeros(C, height, width, feats.shape[-1], device=z.device, dtype=z.dtype)
        if bg is not None:
            f = f + bg[:, None, None]
        out = RasterOutput(f, z, z.clone(), torch.zeros(C, 0, dtype=torch.bool, device=z.device))
    else:
        out = rasterizer.rasterize(params.means, params.quats, params.scales, params.opacities,
                                   feats, viewmats, Ks, width, height, bg)
    a = out.alpha
    depth = torch.where(a > min_alpha_for_depth, out.depth / a.clamp(min=1e-8), torch.zeros_like(a))
    return RenderOutput(
        color=out.features[..., :3],
        depth=depth,
        alpha=a,
        semantics=out.features[..., 3:] if semantics else None,
        visible=out.visible,
        depth_acc=out.depth,
    )


def make_rasterizer(backend: str = "auto", device="cpu") -> Rasterizer:
    """'auto' takes gsplat on a CUDA device when it imports, else PyTorch."""
    device = torch.device(device)
    if backend not in ("auto", "gsplat", "torch"):
        raise ValueError(f"unknown renderer backend {backend!r}; use auto, gsplat or torch")
    if backend in ("auto", "gsplat") and device.type == "cuda":
        try:
            from .gsplat_raster import GsplatRasterizer

            return GsplatRasterizer()
        except ImportError as e:
            if backend == "gsplat":
                raise RuntimeError(f"renderer 'gsplat' asked for but gsplat does not import: {e}") from e
            log.warning("gsplat not importable (%s); using the PyTorch rasteriser on %s", e, device)
    elif backend == "gsplat":
        raise RuntimeError("renderer 'gsplat' needs a CUDA device; use --device cuda or backend torch")
    from .torch_raster import TorchRasterizer

    return TorchRasterizer()
