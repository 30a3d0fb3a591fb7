"""Geometric (v0) Gaussian initialiser: one surfel-like Gaussian per stride x stride block.

Each block's valid depth pixels (those near the block's median depth, so blocks on an
occlusion edge keep only the dominant surface) are fitted by PCA: the mean is the
Gaussian centre, the least-variance axis its normal, the tangential extent sets the
in-plane scales and a thin normal-axis scale makes it a disc. Averaging a block's pixels
also removes most of the sensor's per-pixel depth noise. Colour is the block's mean
colour. This is the baseline the learned predictor (networks issue) replaces.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from . import se3
from .config import MappingConfig
from .geometry import depth_noise_sigma, pixel_grid, sym3_eigh


@dataclass
class BlockGaussians:
    """Candidate Gaussians in the camera frame, one per block (rows where valid)."""

    means: torch.Tensor        # [B, 3] camera frame
    rotmats: torch.Tensor      # [B, 3, 3] columns: tangent1, tangent2, normal
    scales: torch.Tensor       # [B, 3]
    colors: torch.Tensor       # [B, 3]
    labels: Optional[torch.Tensor]  # [B] long (255 unknown) or None
    depth: torch.Tensor        # [B] median depth of the block
    valid: torch.Tensor        # [B] bool
    grid_shape: tuple          # (hb, wb)

    def frame(self, b: int) -> "BlockGaussians":
        """Frame b of a batch's blocks (block_gaussians of [F, H, W] depth): each field [F, T, ...] -> [T, ...]."""
        return BlockGaussians(self.means[b], self.rotmats[b], self.scales[b], self.colors[b],
                              None if self.labels is None else self.labels[b], self.depth[b], self.valid[b],
                              self.grid_shape)


def _blocks(x: torch.Tensor, s: int) -> torch.Tensor:
    """[F, H, W, C] -> [F*hb*wb, s*s, C], frame by frame (crops the ragged border)."""
    F_, H, W, C = x.shape
    hb, wb = H // s, W // s
    x = x[:, : hb * s, : wb * s].reshape(F_, hb, s, wb, s, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(F_ * hb * wb, s * s, C)


def block_gaussians(depth: torch.Tensor, rgb: torch.Tensor, K: torch.Tensor, cfg: MappingConfig,
                    labels: Optional[torch.Tensor] = None, stride: Optional[int] = None) -> BlockGaussians:
    """One frame's blocks (depth [H, W], rgb [H, W, 3], K [3, 3]: fields [T, ...]) or a
    batch's (depth [F, H, W], rgb [F, H, W, 3], K [F, 3, 3]: fields [F, T, ...]).

    Why a batch in one call: every step is per block, so on a GPU F frames go through the
    same few dozen tensor operations as one (blocks_in_one_pass). Called once per frame, a
    training step of 32 frames issued about 5000 small operations for the priors alone,
    which on a GPU cost more than the backbone. On the CPU the frames go one at a time:
    there a frame's blocks (4800 x 64 pixels at 640x480) stay in the cache, and 16 frames
    took 0.31 s that way against 0.67 s in one pass (2 cores). A frame's blocks come out
    the same either way."""
    if depth.dim() == 2:
        return blocks_in_one_pass(depth[None], rgb[None], K[None], cfg, None if labels is None else labels[None],
                                  stride).frame(0)
    if depth.is_cuda:
        return blocks_in_one_pass(depth, rgb, K, cfg, labels, stride)
    return blocks_frame_by_frame(depth, rgb, K, cfg, labels, stride)


def blocks_frame_by_frame(depth: torch.Tensor, rgb: torch.Tensor, K: torch.Tensor, cfg: MappingConfig,
                          labels: Optional[torch.Tensor] = None, stride: Optional[int] = None) -> BlockGaussians:
    """block_gaussians of F frames, one blocks_in_one_pass per frame, fields stacked."""
    each = [blocks_in_one_pass(depth[b:b + 1], rgb[b:b + 1], K[b:b + 1], cfg,
                               None if labels is None else labels[b:b + 1], stride) for b in range(depth.shape[0])]
    fields = zip(*((e.means, e.rotmats, e.scales, e.colors, e.labels, e.depth, e.valid) for e in each))
    return BlockGaussians(*(None if f[0] is None else torch.cat(f) for f in fields), each[0].grid_shape)


def blocks_in_one_pass(depth: torch.Tensor, rgb: torch.Tensor, K: torch.Tensor, cfg: MappingConfig,
                       labels: Optional[torch.Tensor] = None, stride: Optional[int] = None) -> BlockGaussians:
    """block_gaussians of F frames ([F, H, W] depth, [F, 3, 3] K) as one set of F * T blocks."""
    s = stride or cfg.stride
    F_, H, W = depth.shape
    hb, wb = H // s, W // s
    dv = (depth > cfg.min_depth) & (depth < cfg.map_max_depth)
    d = torch.where(dv, depth, torch.zeros_like(depth))
    u, v = pixel_grid(H, W, depth.device, depth.dtype)
    fx, fy, cx, cy = (K[:, i, j, None, None] for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    pts = torch.stack([(u - cx) / fx * d, (v - cy) / fy * d, d], dim=-1)    # backproject, per frame's K
    P = _blocks(pts, s)                                  # [B, s2, 3], B = F * hb * wb blocks
    Dd = P[..., 2]
    V = _blocks(dv[..., None].float(), s)[..., 0] > 0    # [B, s2]
    # Median of valid depths per block (invalid pushed to +inf, then pick the middle valid).
    big = torch.where(V, Dd, torch.full_like(Dd, float("inf")))
    srt, _ = big.sort(-1)
    cnt = V.sum(-1)
    med = srt.gather(-1, ((cnt - 1).clamp(min=0) // 2)[:, None])[:, 0]
    inl = V & ((Dd - med[:, None]).abs() < torch.clamp(0.03 * med[:, None], min=0.01))
    ni = inl.sum(-1)
    w = inl.float()
    wsum = w.sum(-1).clamp(min=1)
    mean = (P * w[..., None]).sum(1) / wsum[:, None]
    X = (P - mean[:, None]) * w[..., None]
    cov = X.transpose(1, 2) @ X / wsum[:, None, None]
    if cfg.normal_noise_compensation > 0:
        # Depth noise moves points along their rays, which adds sigma(z)^2 r r^T (r = the
        # ray with z = 1) to the covariance and tilts the fitted normal away from the
        # viewing direction (several degrees on oblique 8x8 blocks): a systematic error
        # the tracker's point-to-plane residuals turn into a pose bias. Subtract it.
        r = P / Dd.clamp(min=1e-6)[..., None]
        s2 = cfg.normal_noise_compensation * depth_noise_sigma(Dd) ** 2 * w
        cov = cov - (r.transpose(1, 2) @ (r * s2[..., None])) / wsum[:, None, None]
    cov = cov + torch.eye(3, device=cov.device, dtype=cov.dtype) * 1e-10
    # Ascending. Inside a CUDA graph capture the closed form (eigh syncs with the host);
    # eagerly eigh, one kernel instead of the closed form's few dozen.
    if cov.is_cuda and torch.cuda.is_current_stream_capturing():
        evals, evecs = sym3_eigh(cov)
    else:
        evals, evecs = eigh_in_chunks(cov)
    normal = evecs[..., 0]
    # Normal faces the camera.
    flip = (normal * mean).sum(-1) > 0
    normal = torch.where(flip[:, None], -normal, normal)
    # An eigenvector's sign is arbitrary and differs between solvers (eigh on CPU, on CUDA,
    # the closed form in a graph). The predictor applies its rotation residual in this
    # frame, so fix the sign: the major axis points to +x of the camera (then +y, +z).
    t1 = evecs[..., 2]
    key = t1[..., 0] + 1e-3 * t1[..., 1] + 1e-6 * t1[..., 2]
    t1 = torch.where((key < 0)[:, None], -t1, t1)
    t2 = torch.cross(normal, t1, dim=-1)
    R = torch.stack([t1, t2, normal], -1)
    foot = s * med / K[:, 0, None, 0].expand(F_, hb * wb).reshape(-1)   # block side length in metres
    lam = evals.clamp(min=0)
    # A fully covered planar block has sqrt(12 * lambda) equal to its side length.
    ext = torch.sqrt(12.0 * lam[:, 1:])                  # [B, 2]: (minor, major)
    sig_t = cfg.scale_multiplier * ext.clamp(min=0.5 * foot[:, None], max=3.0 * foot[:, None])
    sig_n = (cfg.thickness_ratio * sig_t.min(-1).values).clamp(min=1e-4)
    scales = torch.stack([sig_t[:, 1], sig_t[:, 0], sig_n], -1)
    C = _blocks(rgb, s)
    colors = (C * w[..., None]).sum(1) / wsum[:, None]
    lab = None
    if labels is not None:
        Lb = _blocks(labels[..., None].long(), s)[..., 0]
        Lb = torch.where(inl, Lb, torch.full_like(Lb, 255))
        lab = torch.mode(Lb, dim=-1).values
    valid = ni >= max(3, (s * s) // 4)

    def per_frame(x):
        return None if x is None else x.reshape((F_, hb * wb) + x.shape[1:])
    return BlockGaussians(*(per_frame(x) for x in (mean, R, scales, colors, lab, med, valid)), (hb, wb))


# cuSOLVER's batched 3x3 solver fails with an internal error on large batches: a 32-frame
# training batch (153,600 blocks at stride 8, 640x480) did on an H100 (CUDA 13, torch 2.11),
# while one frame's 4800 always ran. Its matrices are solved independently, so chunks give
# the same result as one call.
EIGH_CHUNK = 8192


def eigh_in_chunks(cov: torch.Tensor, chunk: int = EIGH_CHUNK):
    """torch.linalg.eigh of [B, 3, 3], at most `chunk` matrices per call on a GPU."""
    if not cov.is_cuda or cov.shape[0] <= chunk:
        return torch.linalg.eigh(cov)
    parts = [torch.linalg.eigh(c) for c in cov.split(chunk)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def to_world(bg: BlockGaussians, pose_c2w: torch.Tensor, select: torch.Tensor):
    """World-frame (means, log_scales, quats, colors, labels) of the selected blocks."""
    Rw = pose_c2w[:3, :3]
    means = bg.means[select] @ Rw.T + pose_c2w[:3, 3]
    rot = Rw @ bg.rotmats[select]
    quats = se3.rotmat_to_quat(rot)
    return means, torch.log(bg.scales[select]), quats, bg.colors[select], (
        None if bg.labels is None else bg.labels[select])


def labels_to_logits(labels: torch.Tensor, num_classes: int, confidence: float = 4.0) -> torch.Tensor:
    """Hard labels -> logits (255 = unknown -> uniform)."""
    out = torch.zeros(labels.shape[0], num_classes, device=labels.device)
    known = labels < num_classes
    if known.any():
        out[known] = F.one_hot(labels[known], num_classes).float() * confidence
    return out
