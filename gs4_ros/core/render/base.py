"""Renderer interface and the map-level `render_views` used by tracking, mapping and eval."""
from __future__ import annotations

import dataclasses
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
    points: Optional[torch.Tensor] = None   # [C, H, W, 3] blended Gaussian centres, camera frame
    normals: Optional[torch.Tensor] = None  # [C, H, W, 3] blended Gaussian normals, camera frame
    surface_depth: Optional[torch.Tensor] = None  # [C, H, W] ray / blended-plane intersection


def gaussian_normals(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """World-frame axis of least extent of each Gaussian (its surface normal when flat)."""
    R = se3.quat_to_rotmat(quats)
    idx = scales.argmin(-1)
    return torch.gather(R, 2, idx[:, None, None].expand(-1, 3, 1))[..., 0]


def raster_intrinsics(Ks: torch.Tensor) -> torch.Tensor:
    """Intrinsics in the rasterisers' pixel convention from the project's.

    The project (the data, backprojection, the tracker) follows OpenCV and ROS: pixel
    (i, j) is centred at coordinate (i, j). gsplat, and the PyTorch rasteriser that mirrors
    it, evaluate pixel (i, j) at (i + 0.5, j + 0.5). Handing them our K unchanged rendered
    every image half a pixel up and left of the data it is compared with (tracking's
    photometric term, co-visibility, evaluation, training losses).
    """
    Kr = Ks.clone()
    Kr[..., 0, 2] += 0.5
    Kr[..., 1, 2] += 0.5
    return Kr


def _geometry_maps(rasterizer, params, poses_c2w, Ks, width, height, base_feats, bg):
    """Render colour(+semantics) together with Gaussian centres and normals, per camera.

    Compositing is linear, so alpha-normalised blended centres of Gaussians on one plane
    stay on that plane and the blended normal is the plane's: a point-to-plane residual
    against these maps is exact for flat regions, unlike the centre-depth of tilted discs
    that plain depth rendering returns.
    """
    normals_w = gaussian_normals(params.quats, params.scales)
    outs = []
    for c in range(poses_c2w.shape[0]):
        cam = poses_c2w[c, :3, 3]
        # Orient every normal towards this camera before blending.
        facing = ((cam - params.means) * normals_w).sum(-1, keepdim=True)
        n = torch.where(facing < 0, -normals_w, normals_w)
        feats = torch.cat([base_feats, params.means, n], -1)
        vm = se3.inv(poses_c2w[c:c + 1])
        outs.append(rasterizer.rasterize(params.means, params.quats, params.scales, params.opacities,
                                         feats, vm, Ks[c:c + 1], width, height,
                                         None if bg is None else torch.cat([bg[c:c + 1], torch.zeros(1, 6, device=bg.device, dtype=bg.dtype)], -1)))
    return RasterOutput(*(torch.cat(x) for x in zip(*[(o.features, o.depth, o.alpha, o.visible) for o in outs])))


def render_views(rasterizer: Rasterizer, params: GaussianParams, poses_c2w: torch.Tensor,
                 K: torch.Tensor, width: int, height: int, semantics: bool = False,
                 background: Optional[torch.Tensor] = None,
                 min_alpha_for_depth: float = 1e-3, geometry: bool = False,
                 viewmats: Optional[torch.Tensor] = None) -> RenderOutput:
    """Render colour, depth, silhouette and optionally semantics at camera-to-world poses.

    poses_c2w [C, 4, 4] or [4, 4]; K [3, 3] or [C, 3, 3]. Differentiable with respect to
    the Gaussians and the poses. viewmats [C, 4, 4] (with poses_c2w None, not with
    geometry): world-to-camera matrices used as given, for callers that form them directly.
    """
    if viewmats is None:
        if poses_c2w.dim() == 2:
            poses_c2w = poses_c2w[None]
        viewmats = se3.inv(poses_c2w)
    elif geometry or poses_c2w is not None:
        raise ValueError("pass either poses_c2w or viewmats (geometry maps need poses_c2w)")
    C = viewmats.shape[0]
    Ks = K[None].expand(C, 3, 3) if K.dim() == 2 else K
    Kr = raster_intrinsics(Ks)
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
        z = torch.zeros(C, height, width, device=viewmats.device, dtype=viewmats.dtype)
        f = torch.zeros(C, height, width, feats.shape[-1] + (6 if geometry else 0), device=z.device, dtype=z.dtype)
        if bg is not None:
            f[..., : bg.shape[-1]] += bg[:, None, None]
        out = RasterOutput(f, z, z.clone(), torch.zeros(C, 0, dtype=torch.bool, device=z.device))
    elif geometry:
        out = _geometry_maps(rasterizer, params, poses_c2w, Kr, width, height, feats, bg)
    else:
        out = rasterizer.rasterize(params.means, params.quats, params.scales, params.opacities,
                                   feats, viewmats, Kr, width, height, bg)
    a = out.alpha
    has = a > min_alpha_for_depth
    ainv = 1.0 / a.clamp(min=1e-8)
    depth = torch.where(has, out.depth * ainv, torch.zeros_like(a))
    nf = 3 + (params.sem_probs.shape[-1] if semantics else 0)
    res = RenderOutput(
        color=out.features[..., :3],
        depth=depth,
        alpha=a,
        semantics=out.features[..., 3:nf] if semantics else None,
        visible=out.visible,
        depth_acc=out.depth,
    )
    if geometry:
        R = viewmats[:, None, None, :3, :3]
        t = viewmats[:, None, None, :3, 3]
        pw = out.features[..., nf:nf + 3] * ainv[..., None]
        pts = (R @ pw[..., None])[..., 0] + t
        nw = out.features[..., nf + 3:nf + 6]
        nrm = (R @ nw[..., None])[..., 0]
        nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp(min=1e-8)
        # Depth where each pixel's ray meets the blended plane (point pts, normal nrm).
        # Pinhole rays in closed form: torch.linalg.inv would synchronise with the host.
        v, u = torch.meshgrid(torch.arange(height, device=a.device, dtype=a.dtype),
                              torch.arange(width, device=a.device, dtype=a.dtype), indexing="ij")
        fx, fy = Ks[:, 0, 0, None, None], Ks[:, 1, 1, None, None]
        cx, cy = Ks[:, 0, 2, None, None], Ks[:, 1, 2, None, None]
        rx = (u[None] - cx - Ks[:, 0, 1, None, None] * (v[None] - cy) / fy) / fx
        rays = torch.stack([rx, (v[None] - cy) / fy, torch.ones_like(rx)], -1)
        den = (nrm * rays).sum(-1)
        zs = (nrm * pts).sum(-1) / torch.where(den.abs() > 1e-3, den, torch.full_like(den, 1e-3))
        ok = has & (den.abs() > 0.1) & (zs > 0)
        res.points = torch.where(has[..., None], pts, torch.zeros_like(pts))
        res.normals = torch.where(has[..., None], nrm, torch.zeros_like(nrm))
        res.surface_depth = torch.where(ok, zs, depth)
    return res


def blend_surface_colour(rasterizer: Rasterizer, params: GaussianParams, out: RenderOutput,
                         poses_c2w: torch.Tensor, K: torch.Tensor, width: int, height: int,
                         opacity_scale: float, depth_tol: float,
                         background: Optional[torch.Tensor] = None, full_alpha: float = 0.0,
                         viewmats: Optional[torch.Tensor] = None) -> RenderOutput:
    """Replace `out`'s colour, where a pixel sees one surface, by the colour of the Gaussians
    on it blended without regard to their depth order.

    Front-to-back compositing of nearly opaque, overlapping discs lets the nearer of two
    neighbours on one surface cover the other, so on a surface seen at an angle the texture
    shifts towards its far side: every view rendered from the map is a little off its image
    and the tracker's photometric term pulls the pose to match (docs/results.md, "Far,
    noisy depth"). A second pass with every opacity times opacity_scale composites almost
    additively; divided by its silhouette it is each pixel's kernel-weighted mean colour.
    Where that pass's depth differs from `out`'s by more than depth_tol x depth, a farther
    surface shows through it (an occlusion edge), and the composited colour stays. The
    result keeps `out`'s silhouette: colour = blended x alpha + background x (1 - alpha),
    except that with full_alpha > 0 a pixel whose silhouette reaches full_alpha shows the
    blended colour at full strength (the silhouette dips between the stride-8 discs of
    one surface, which darkened it there; the surface itself has no gap). viewmats
    (world-to-camera, poses_c2w None) as render_views takes them.
    """
    if opacity_scale <= 0 or len(params) == 0:
        return out
    faint = dataclasses.replace(params, opacities=params.opacities * opacity_scale, sem_probs=None)
    r = render_views(rasterizer, faint, poses_c2w, K, width, height, viewmats=viewmats)
    mean = (r.color / r.alpha.clamp(min=1e-8)[..., None]).clamp(0, 1)
    one = (r.alpha > 1e-4) & (out.depth > 0) & ((r.depth - out.depth).abs() <= depth_tol * out.depth)
    a = out.alpha[..., None]
    if full_alpha > 0:
        a = torch.where(a >= full_alpha, torch.ones_like(a), a)
    blended = mean * a
    if background is not None:
        blended = blended + background.to(blended)[..., :3] * (1 - a)
    out.color = torch.where(one[..., None], blended, out.color)
    return out


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
