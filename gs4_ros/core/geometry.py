"""Pixel-grid geometry: back-projection, projection, normals and image pyramids (torch)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def depth_noise_sigma(z: torch.Tensor) -> torch.Tensor:
    """Axial noise standard deviation (m) of structured-light depth at z (m): grows ~z^2
    (Nguyen et al. 2012, Kinect v1; the synthetic sensor uses the same model)."""
    return 0.0012 + 0.0019 * (z - 0.4).clamp(min=0) ** 2


def depth_weight(z: torch.Tensor) -> torch.Tensor:
    """Inverse-variance weight of a depth sample at z (m) under depth_noise_sigma,
    normalised to about 1 at 1 m."""
    return (0.0031 / depth_noise_sigma(z)) ** 2


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


def normals_from_points(points: torch.Tensor, valid: torch.Tensor, radius: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Normals of an organised point image [H, W, 3] by central differences over +-radius
    pixels (a wider baseline averages depth noise out of the normal).

    Returns (normals [H, W, 3] facing the camera, valid mask). A pixel needs all four
    neighbours valid; the edge ring of width radius is invalid.
    """
    r = int(radius)
    n = torch.zeros_like(points)
    ok = torch.zeros_like(valid)
    dx = points[r:-r, 2 * r:] - points[r:-r, :-2 * r]
    dy = points[2 * r:, r:-r] - points[:-2 * r, r:-r]
    c = torch.cross(dx, dy, dim=-1)
    norm = c.norm(dim=-1, keepdim=True)
    nn_ = c / norm.clamp(min=1e-12)
    # Face the camera (the ray from the point to the origin).
    flip = (nn_ * points[r:-r, r:-r]).sum(-1, keepdim=True) > 0
    nn_ = torch.where(flip, -nn_, nn_)
    vc = (valid[r:-r, 2 * r:] & valid[r:-r, :-2 * r] & valid[2 * r:, r:-r] & valid[:-2 * r, r:-r]
          & valid[r:-r, r:-r] & (norm[..., 0] > 0))
    n[r:-r, r:-r] = nn_
    ok[r:-r, r:-r] = vc
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


def sym3_eigh(A: torch.Tensor):
    """Eigenvalues (ascending) and unit eigenvectors (columns) of symmetric 3x3 matrices
    [..., 3, 3], as torch.linalg.eigh returns them, in closed form.

    torch.linalg.eigh on CUDA reads cuSOLVER's status back to the host, a synchronisation
    that keeps the Gaussian predictor out of a CUDA graph and costs a launch-bound round
    trip per call. For 3x3 matrices the trigonometric roots of the characteristic cubic, a
    cross product of (A - lambda I)'s rows and a 2x2 rotation are a few dozen elementwise
    operations. The matrix is scaled to unit max-norm first so float32 keeps
    its precision for the millimetre-sized covariances of depth blocks. Eigenvectors of a
    repeated eigenvalue are any orthonormal completion (as with eigh).
    """
    scale = A.abs().amax(dim=(-2, -1), keepdim=True).clamp(min=1e-30)
    B = A / scale
    eye = torch.eye(3, device=A.device, dtype=A.dtype)
    m = (B[..., 0, 0] + B[..., 1, 1] + B[..., 2, 2]) / 3
    C = B - m[..., None, None] * eye
    p = (C * C).sum((-2, -1)) / 6
    q = _det3(C) / 2
    sp = p.clamp(min=0).sqrt()
    r = (q / (sp ** 3).clamp(min=1e-30)).clamp(-1.0, 1.0)
    phi = torch.acos(r) / 3
    l_hi = m + 2 * sp * torch.cos(phi)
    l_lo = m + 2 * sp * torch.cos(phi + 2 * torch.pi / 3)
    l_md = 3 * m - l_hi - l_lo
    # The eigenvector of the better separated end of the spectrum is well defined from the
    # cubic's root; the other two follow from a 2x2 problem in the plane orthogonal to it,
    # which has a stable closed form even where they (nearly) coincide.
    low_first = (l_md - l_lo) >= (l_hi - l_md)
    v1 = torch.where(low_first[..., None], _null_vector(B - l_lo[..., None, None] * eye),
                     _null_vector(B - l_hi[..., None, None] * eye))
    u = _perpendicular(v1)
    w = torch.cross(v1, u, dim=-1)
    Bu, Bw = (B @ u[..., None])[..., 0], (B @ w[..., None])[..., 0]
    a, b, c = (u * Bu).sum(-1), (u * Bw).sum(-1), (w * Bw).sum(-1)
    theta = 0.5 * torch.atan2(2 * b, a - c)
    e_big = torch.cos(theta)[..., None] * u + torch.sin(theta)[..., None] * w
    e_small = torch.cross(v1, e_big, dim=-1)
    half = torch.sqrt(((a - c) / 2) ** 2 + b ** 2)
    big, small = (a + c) / 2 + half, (a + c) / 2 - half
    r1 = (v1 * (B @ v1[..., None])[..., 0]).sum(-1)     # Rayleigh quotient of v1
    lf = low_first[..., None]
    n = torch.where(lf, v1, e_small)
    t = torch.where(lf, e_big, v1)
    l_min = torch.where(low_first, r1, small)
    l_mid = torch.where(low_first, small, big)
    l_max = torch.where(low_first, big, r1)
    mid = torch.cross(t, n, dim=-1)                      # right-handed [n, mid, t]
    evals = torch.stack([l_min, l_mid, l_max], -1) * scale[..., 0]
    return evals, torch.stack([n, mid, t], -1)


def _det3(C: torch.Tensor) -> torch.Tensor:
    # Cofactor expansion: torch.linalg.det on CUDA goes through an LU with a host check.
    return (C[..., 0, 0] * (C[..., 1, 1] * C[..., 2, 2] - C[..., 1, 2] * C[..., 2, 1])
            - C[..., 0, 1] * (C[..., 1, 0] * C[..., 2, 2] - C[..., 1, 2] * C[..., 2, 0])
            + C[..., 0, 2] * (C[..., 1, 0] * C[..., 2, 1] - C[..., 1, 1] * C[..., 2, 0]))


def _null_vector(M: torch.Tensor) -> torch.Tensor:
    """Unit vector of the (near) null space of rank-2 3x3 matrices: the longest cross
    product of two rows (rows of a singular matrix are all orthogonal to it)."""
    r0, r1, r2 = M[..., 0, :], M[..., 1, :], M[..., 2, :]
    c = torch.stack([torch.cross(r0, r1, dim=-1), torch.cross(r0, r2, dim=-1),
                     torch.cross(r1, r2, dim=-1)], -2)                 # [..., 3, 3]
    nrm = c.norm(dim=-1)
    best = nrm.argmax(-1, keepdim=True)
    v = c.gather(-2, best[..., None].expand(*best.shape, 3))[..., 0, :]
    vn = nrm.gather(-1, best)
    # Rank < 2 (a repeated eigenvalue): every direction in the null space qualifies.
    fallback = _perpendicular(M[..., 0, :] + M[..., 1, :] + M[..., 2, :])
    return torch.where(vn > 1e-12, v / vn.clamp(min=1e-30), fallback)


def _perpendicular(v: torch.Tensor) -> torch.Tensor:
    """A unit vector perpendicular to each v (any unit vector where v is zero)."""
    a = v.abs()
    e = torch.zeros_like(v)
    idx = a.argmin(-1, keepdim=True)                     # the axis least aligned with v
    e.scatter_(-1, idx, 1.0)
    w = torch.cross(v, e, dim=-1)
    wn = w.norm(dim=-1, keepdim=True)
    unit_x = torch.zeros_like(v)
    unit_x[..., 0] = 1.0
    return torch.where(wn > 1e-12, w / wn.clamp(min=1e-30), unit_x)
