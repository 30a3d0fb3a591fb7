"""Pixel-grid geometry: back-projection, projection, normals and image pyramids (torch)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32, stride: int = 1,
               offset: float = 0.0):
    """(u, v) pixel coordinates of a stride-subsampled grid, each [h, w].

    With offset=0 the samples are the pixel indices; with stride s and offset (s-1)/2 they
    are the centres of s x s blocks.
    """
    v = torch.arange(0, height, stride, device=device, dtype=dtype) + offset
    u = torch.arange(0, width, stride, device=device, dtype=dtype) + offset
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return uu, vv


def backproject(depth: torch.Tensor, K: torch.Tensor, u: torch.Tensor | None = None,
                v: torch.Tensor | None = None) -> torch.Tensor:
    """Depth [H, W] (or sampled depth with matching u, v) -> camera points [..., 3]."""
    if u is None:
        u, v = pixel_grid(depth.shape[-2], depth.shape[-1], depth.device, depth.dtype)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x = (u - cx) / fx * depth
    y = (v - cy) / fy * depth
    return torch.stack([x, y, depth], dim=-1)


def project(points: torch.Tensor, K: torch.Tensor):
    """Camera points [..., 3] -> (u, v, z)."""
    z = points[..., 2]
    zs = z.clamp(min=1e-6)
    u = K[0, 0] * points[..., 0] / zs + K[0, 2]
    v = K[1, 1] * points[..., 1] / zs + K[1, 2]
    return u, v, z


def normals_from_points(points: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normals of an organised point image [H, W, 3] by central differences.

    Returns (normals [H, W, 3] facing the camera, valid mask). A pixel needs all four
    neighbours valid; the edge ring is invalid.
    """
    H, W, _ = points.shape
    n = torch.zeros_like(points)
    ok = torch.zeros_like(valid)
    dx = points[1:-1, 2:] - points[1:-1, :-2]
    dy = points[2:, 1:-1] - points[:-2, 1:-1]
    c = torch.cross(dx, dy, dim=-1)
    norm = c.norm(dim=-1, keepdim=True)
    nn_ = c / norm.clamp(min=1e-12)
    # Face the camera (the ray from the point to the origin).
    flip = (nn_ * points[1:-1, 1:-1]).sum(-1, keepdim=True) > 0
    nn_ = torch.where(flip, -nn_, nn_)
    vc = (valid[1:-1, 2:] & valid[1:-1, :-2] & valid[2:, 1:-1] & valid[:-2, 1:-1]
          & valid[1:-1, 1:-1] & (norm[..., 0] > 0))
    n[1:-1, 1:-1] = nn_
    ok[1:-1, 1:-1] = vc
    return n, ok


def downsample_depth(depth: torch.Tensor) -> torch.Tensor:
    """Halve a depth map, averaging only valid (>0) pixels of each 2x2 block.

    Blocks whose valid depths disagree by more than 5% (an occlusion edge) become invalid
    rather than a depth in mid-air.
    """
    d = depth[None, None]
    H, W = depth.shape
    d = d[..., : H // 2 * 2, : W // 2 * 2]
    valid = (d > 0).float()
    s = F.avg_pool2d(d * valid, 2) * 4
    c = F.avg_pool2d(valid, 2) * 4
    mean = s / c.clamp(min=1)
    big = F.max_pool2d(d, 2)
    small = -F.max_pool2d(-torch.where(d > 0, d, torch.full_like(d, 1e9)), 2)
    bad = (c == 0) | (big - small > 0.05 * mean)
    return torch.where(bad, torch.zeros_like(mean), mean)[0, 0]


def downsample_image(img: torch.Tensor) -> torch.Tensor:
    """Halve an [H, W] or [H, W, C] image by 2x2 averaging."""
    if img.dim() == 2:
        return F.avg_pool2d(img[None, None], 2)[0, 0]
    return F.avg_pool2d(img.permute(2, 0, 1)[None], 2)[0].permute(1, 2, 0)


def image_gradients(img: torch.Tensor):
    """Central-difference gradients (gx, gy) of an [H, W] image; zero on the border."""
    gx = torch.zeros_like(img)
    gy = torch.zeros_like(img)
    gx[:, 1:-1] = 0.5 * (img[:, 2:] - img[:, :-2])
    gy[1:-1, :] = 0.5 * (img[2:, :] - img[:-2, :])
    return gx, gy


def bilinear_sample(img: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Sample an [H, W] or [H, W, C] image at float pixel coords (border clamped)."""
    H, W = img.shape[:2]
    gx = (u + 0.5) / W * 2 - 1
    gy = (v + 0.5) / H * 2 - 1
    grid = torch.stack([gx, gy], dim=-1).reshape(1, -1, 1, 2)
    src = img[None, None] if img.dim() == 2 else img.permute(2, 0, 1)[None]
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = out[0, :, :, 0]  # [C, P]
    if img.dim() == 2:
        return out[0].reshape(u.shape)
    return out.t().reshape(u.shape + (img.shape[2],))


def bilateral_depth(depth: torch.Tensor, radius: int = 2, sigma_px: float = 1.5,
                    sigma_rel: float = 0.01) -> torch.Tensor:
    """Edge-preserving smoothing of a depth map (KinectFusion's pre-filter).

    Neighbours within `radius` are weighted by pixel distance and by depth difference
    relative to the centre depth, so surfaces are smoothed but never blended across
    occlusion edges. Invalid (0) pixels neither contribute nor get filled.
    """
    H, W = depth.shape
    k = 2 * radius + 1
    pad = F.pad(depth[None, None], (radius, radius, radius, radius))
    patches = F.unfold(pad, k)[0].reshape(k * k, H, W)           # [k*k, H, W]
    dy, dx = torch.meshgrid(torch.arange(-radius, radius + 1, device=depth.device),
                            torch.arange(-radius, radius + 1, device=depth.device), indexing="ij")
    w_sp = torch.exp(-(dx ** 2 + dy ** 2).to(depth.dtype) / (2 * sigma_px ** 2)).reshape(-1, 1, 1)
    rel = (patches - depth[None]) / depth.clamp(min=1e-3)[None]
    w = w_sp * torch.exp(-(rel ** 2) / (2 * sigma_rel ** 2)) * (patches > 0)
    out = (w * patches).sum(0) / w.sum(0).clamp(min=1e-12)
    return torch.where(depth > 0, out, torch.zeros_like(out))
