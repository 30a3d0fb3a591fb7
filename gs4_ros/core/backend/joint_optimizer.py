"""Few-iteration joint optimisation of the visible Gaussians and k keyframe poses (GS4 §5).

When poses change significantly the map and the poses disagree until both adapt; a few
Adam steps on both, against the keyframes' own (downsampled) images, settle them. Each
keyframe pose is parameterised by a right-multiplied se(3) delta (camera frame), zero at
the start, so the step size is the same whatever the absolute pose. Loss per view:
0.8 L1 + 0.2 (1 - SSIM) on colour plus depth_weight x L1 on valid observed depth, all k
views rendered in one call.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from pytorch_msssim import ssim

from .. import se3
from ..config import BackendConfig
from ..gaussian_map import GaussianMap, GaussianParams
from ..render import render_views


@dataclass
class JointView:
    kf_id: int
    pose: torch.Tensor      # [4, 4] camera-to-world
    rgb: torch.Tensor       # [h, w, 3] float in [0, 1]
    depth: torch.Tensor     # [h, w] metres, 0 invalid
    K: torch.Tensor         # [3, 3] for (w, h)


@dataclass
class JointResult:
    poses: Dict[int, torch.Tensor]          # optimised camera-to-world per keyframe id
    losses: List[float]                     # loss at the start of each iteration
    final_loss: Optional[float]             # after the last step (only when asked for)
    iterations: int
    num_gaussians: int
    ms: float
    stats: Dict[str, float] = field(default_factory=dict)


def view_loss(color, depth, rgb, obs_depth, depth_weight: float) -> torch.Tensor:
    """0.8 L1 + 0.2 (1 - SSIM) on colour [C, h, w, 3] plus weighted L1 on valid depth."""
    l1 = (color - rgb).abs().mean()
    a = color.permute(0, 3, 1, 2)
    b = rgb.permute(0, 3, 1, 2)
    win = min(11, min(a.shape[-2:]) // 2 * 2 - 1)
    s = ssim(a, b, data_range=1.0, size_average=True, win_size=max(win, 3))
    loss = 0.8 * l1 + 0.2 * (1.0 - s)
    if depth_weight > 0:
        # Masked mean by sums: no boolean indexing, which would wait for the device.
        valid = (obs_depth > 0).to(depth.dtype)
        loss = loss + depth_weight * ((depth - obs_depth).abs() * valid).sum() / valid.sum().clamp(min=1.0)
    return loss


class JointOptimizer:
    def __init__(self, cfg: BackendConfig):
        self.cfg = cfg

    def run(self, gmap: GaussianMap, rasterizer, views: List[JointView], iterations: Optional[int] = None,
            evaluate_final: bool = False, optimize_poses: bool = True) -> Optional[JointResult]:
        """Optimise in place: map rows of the visible Gaussians are overwritten, the new
        poses returned (the caller feeds them to its keyframes and the graph)."""
        c = self.cfg
        n_it = int(c.joint_iterations if iterations is None else iterations)
        if not views or len(gmap) == 0 or n_it <= 0:
            return None
        t0 = time.perf_counter()
        dev = gmap.device
        h, w = views[0].depth.shape
        P0 = torch.stack([v.pose.to(dev, torch.float32) for v in views])
        Ks = torch.stack([v.K.to(dev, torch.float32) for v in views])
        rgb = torch.stack([v.rgb.to(dev) for v in views])
        obs = torch.stack([v.depth.to(dev) for v in views])
        with torch.no_grad():
            vis = render_views(rasterizer, gmap.params(), P0, Ks, w, h).visible.any(0)
        idx = torch.nonzero(vis).flatten()
        if idx.numel() == 0:
            return None
        leaves = {
            "means": gmap.means[idx].clone().requires_grad_(True),
            "log_scales": gmap.log_scales[idx].clone().requires_grad_(True),
            "quats": gmap.quats[idx].clone().requires_grad_(True),
            "opacity_logits": gmap.opacity_logits[idx].clone().requires_grad_(True),
            "colors": gmap.colors[idx].clone().requires_grad_(True),
        }
        delta = torch.zeros(len(views), 6, device=dev, requires_grad=True)
        groups = [{"params": [leaves["means"]], "lr": c.joint_lr_means},
                  {"params": [leaves["log_scales"]], "lr": c.joint_lr_scales},
                  {"params": [leaves["quats"]], "lr": c.joint_lr_quats},
                  {"params": [leaves["opacity_logits"]], "lr": c.joint_lr_opacity},
                  {"params": [leaves["colors"]], "lr": c.joint_lr_colors}]
        if optimize_poses:
            groups.append({"params": [delta], "lr": c.joint_lr_pose})
        # Fused Adam on CUDA: one kernel per step instead of several per parameter group.
        opt = torch.optim.Adam(groups, fused=dev.type == "cuda")

        def forward():
            q = leaves["quats"]
            p = GaussianParams(means=leaves["means"], quats=q / q.norm(dim=-1, keepdim=True).clamp(min=1e-12),
                               scales=torch.exp(leaves["log_scales"]),
                               opacities=torch.sigmoid(leaves["opacity_logits"]),
                               colors=leaves["colors"].clamp(0, 1))
            poses = P0 @ se3.se3_exp(delta)
            r = render_views(rasterizer, p, poses, Ks, w, h)
            return view_loss(r.color, r.depth, rgb, obs, c.joint_depth_weight)

        losses = []
        for _ in range(n_it):
            opt.zero_grad(set_to_none=True)
            loss = forward()
            loss.backward()
            opt.step()
            losses.append(loss.detach())  # read back once at the end, not once per step
        losses = torch.stack(losses).tolist()
        final = None
        if evaluate_final:
            with torch.no_grad():
                final = float(forward())
        with torch.no_grad():
            for name, t in leaves.items():
                getattr(gmap, name)[idx] = t.detach()
            new_poses = se3.orthonormalize(P0 @ se3.se3_exp(delta.detach()))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return JointResult({v.kf_id: new_poses[i] for i, v in enumerate(views)}, losses, final, n_it,
                           int(idx.numel()), 1000 * (time.perf_counter() - t0))
