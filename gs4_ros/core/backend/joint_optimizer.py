"""Few-iteration joint optimisation of the visible Gaussians and k keyframe poses (GS4 §5).

When poses change significantly the map and the poses disagree until both adapt; a few
Adam steps on both, against the keyframes' own (downsampled) images, settle them. Each
keyframe pose is parameterised by a right-multiplied se(3) delta (camera frame), zero at
the start, so the step size is the same whatever the absolute pose. Loss per view:
0.8 L1 + 0.2 (1 - SSIM) on colour plus depth_weight x L1 on valid observed depth, all k
views rendered in one call.

On a GPU the cost is kernel launches, not arithmetic (a step is ~1.5 ms of device work),
so a step is kept to few kernels: the whole map is optimised (Gaussians no view sees get
a zero gradient, hence exactly zero Adam steps, so no visibility pass, gather or scatter
is needed), the pose delta enters the view matrices through its first-order retraction
(one small matrix product; the returned poses use the exact exponential), and the loss
with its gradient is replayed from a CUDA graph per image shape.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from pytorch_msssim import ssim

from .. import se3
from ..config import BackendConfig
from ..cuda_graph import GraphedCall
from ..gaussian_map import GaussianMap, GaussianParams
from ..render import blend_surface_colour, render_views


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


def ssim_window(channels: int, size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    """SSIM's Gaussian window as pytorch_msssim takes it ([channels, 1, 1, size]); made once
    per run on the device, since the library otherwise builds it on the host every call."""
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return (g / g.sum()).reshape(1, 1, 1, size).repeat(channels, 1, 1, 1).to(device)


def ssim_window_size(h: int, w: int) -> int:
    """11 (SSIM's usual window), smaller for tiny images; always odd and >= 3."""
    return max(min(11, min(h, w) // 2 * 2 - 1), 3)


def view_loss(color, depth, rgb, obs_depth, depth_weight: float,
              win: Optional[torch.Tensor] = None) -> torch.Tensor:
    """0.8 L1 + 0.2 (1 - SSIM) on colour [C, h, w, 3] plus weighted L1 on valid depth."""
    l1 = (color - rgb).abs().mean()
    a = color.permute(0, 3, 1, 2)
    b = rgb.permute(0, 3, 1, 2)
    if win is None:
        win = ssim_window(3, ssim_window_size(*a.shape[-2:]), device=a.device)
    s = ssim(a, b, data_range=1.0, size_average=True, win=win)
    loss = 0.8 * l1 + 0.2 * (1.0 - s)
    if depth_weight > 0:
        # Masked mean by sums: no boolean indexing, which would wait for the device.
        valid = (obs_depth > 0).to(depth.dtype)
        loss = loss + depth_weight * ((depth - obs_depth).abs() * valid).sum() / valid.sum().clamp(min=1.0)
    return loss


def _loss_and_grads(color, depth, rgb, obs_depth, win, depth_weight: float
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """view_loss and its gradients with respect to the rendered colour and depth, with
    fixed shapes, so it can be captured and replayed as one CUDA graph."""
    with torch.enable_grad():
        c = color.detach().requires_grad_(True)
        d = depth.detach().requires_grad_(True)
        loss = view_loss(c, d, rgb, obs_depth, depth_weight, win)
        gc, gd = torch.autograd.grad(loss, (c, d))
    return loss.detach(), gc, gd


# Map fields the optimisation steps, with their widths in the packed parameter.
FIELDS = (("means", 3), ("log_scales", 3), ("quats", 4), ("opacity_logits", 1), ("colors", 3))


class JointOptimizer:
    def __init__(self, cfg: BackendConfig, use_cuda_graphs: bool = True, blend: Optional[dict] = None):
        """blend: blend_surface_colour's settings (PipelineConfig.surface_blend()) to fit the
        colour blended over each surface, the view the pipeline publishes and evaluates,
        instead of the composite; None fits the composite."""
        bad = {k: v for k, v in vars(cfg).items() if k.startswith("joint_lr_") and not v >= 0}
        if bad:
            raise ValueError(f"backend joint learning rates must be >= 0 (0 freezes that part): {bad}")
        self.cfg = cfg
        self.blend = dict(blend) if blend else None
        self._loss_grads = GraphedCall(_loss_and_grads, "joint loss", enabled=use_cuda_graphs)
        # torch.optim's first optimiser imports torch._dynamo (~2 s): pay it here, at
        # start-up, not in the middle of a sequence on the tracking thread.
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])

    def warm_up(self, rasterizer, device) -> Optional[JointResult]:
        """One small optimisation on a throwaway map, so that the first real run (in the
        middle of a sequence, on the tracking thread) does not also pay for loading its
        kernels and cuDNN (about 1 s on an H200)."""
        dev = torch.device(device)
        g = torch.Generator().manual_seed(0)
        n, h, w = 64, 24, 32
        gm = GaussianMap(num_classes=0, device=dev)
        means = torch.rand(n, 3, generator=g) * torch.tensor([1.0, 0.8, 0.5]) - torch.tensor([0.5, 0.4, -1.0])
        gm.insert(means.to(dev), torch.full((n, 3), -3.0, device=dev), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1).to(dev),
                  torch.zeros(n, device=dev), torch.rand(n, 3, generator=g).to(dev))
        K = torch.tensor([[30.0, 0, w / 2], [0, 30.0, h / 2], [0, 0, 1]])
        view = JointView(0, torch.eye(4, device=dev), torch.rand(h, w, 3, generator=g).to(dev),
                         torch.full((h, w), 1.2, device=dev), K)
        return self.run(gm, rasterizer, [view], iterations=2)

    def run(self, gmap: GaussianMap, rasterizer, views: List[JointView], iterations: Optional[int] = None,
            evaluate_final: bool = False, optimize_poses: bool = True) -> Optional[JointResult]:
        """Optimise in place: the map's rows are overwritten (only those a view sees
        change), the new poses returned (the caller feeds them to its keyframes and the
        graph)."""
        c = self.cfg
        n_it = int(c.joint_iterations if iterations is None else iterations)
        if not views or len(gmap) == 0 or n_it <= 0:
            return None
        t0 = time.perf_counter()
        dev = gmap.device
        h, w = views[0].depth.shape
        P0 = torch.stack([v.pose.to(dev, torch.float32) for v in views])
        V0 = se3.inv(P0)
        Ks = torch.stack([v.K.to(dev, torch.float32) for v in views])
        rgb = torch.stack([v.rgb.to(dev) for v in views])
        obs = torch.stack([v.depth.to(dev) for v in views])
        win = ssim_window(3, ssim_window_size(h, w), device=dev)
        G = se3.se3_generators(dev)
        # One Adam parameter group instead of one per field and learning rate: Adam's
        # Python-side cost is per group. Each field is x = x0 + lr * y with y from zero
        # and Adam at lr 1; Adam ignores the gradient's scale, so y's unit steps are the
        # field's lr-sized steps, as with a group per field (eps scaled to keep its
        # effect at most the usual 1e-8). Rows no view sees keep y = 0, so x = x0 exactly.
        # Colours start (and so end) inside the renderer's [0, 1]: one left above 1 renders
        # as 1, and the clamp would stop its gradient for good (a stuck, saturated speck).
        def packed(name, k):
            t = getattr(gmap, name).detach().reshape(len(gmap), k)
            return t.clamp(0, 1) if name == "colors" else t

        X0 = torch.cat([packed(name, k) for name, k in FIELDS], 1)
        lrs = {"means": c.joint_lr_means, "log_scales": c.joint_lr_scales, "quats": c.joint_lr_quats,
               "opacity_logits": c.joint_lr_opacity, "colors": c.joint_lr_colors}
        step = torch.tensor([lrs[name] for name, k in FIELDS for _ in range(k)], device=dev, dtype=X0.dtype)
        Y = torch.zeros_like(X0, requires_grad=True)
        dY = torch.zeros(len(views), 6, device=dev, requires_grad=True)
        optimize_poses = optimize_poses and c.joint_lr_pose > 0
        # A rate of 0 freezes its field (its steps are scaled by 0); it must not set eps to 0,
        # or a row no view sees would step by 0 / 0 = NaN.
        all_lr = [lr for lr in list(lrs.values()) + ([c.joint_lr_pose] if optimize_poses else []) if lr > 0]
        opt = torch.optim.Adam([Y, dY] if optimize_poses else [Y], lr=1.0, eps=1e-8 * min(all_lr, default=1.0),
                               fused=dev.type == "cuda")

        def fields(y):
            X = torch.addcmul(X0, y, step)
            out, i = {}, 0
            for name, k in FIELDS:
                out[name] = X[:, i:i + k] if k > 1 else X[:, i]
                i += k
            return out

        def render():
            f = fields(Y)
            q = f["quats"]
            p = GaussianParams(means=f["means"], quats=q / q.norm(dim=-1, keepdim=True).clamp(min=1e-12),
                               scales=torch.exp(f["log_scales"]), opacities=torch.sigmoid(f["opacity_logits"]),
                               colors=f["colors"].clamp(0, 1))
            # P0 exp(delta) to first order: its inverse is (I - hat(delta)) V0.
            vm = V0 - ((dY * c.joint_lr_pose) @ G).view(-1, 4, 4) @ V0
            r = render_views(rasterizer, p, None, Ks, w, h, viewmats=vm)
            if self.blend:
                r = blend_surface_colour(rasterizer, p, r, None, Ks, w, h, viewmats=vm, **self.blend)
            return r

        losses, visible = [], None
        for _ in range(n_it):
            opt.zero_grad(set_to_none=True)
            r = render()
            if visible is None:
                visible = r.visible.any(0).sum()
            loss, gc, gd = self._loss_grads(r.color, r.depth, rgb, obs, win,
                                            depth_weight=float(c.joint_depth_weight))
            torch.autograd.backward((r.color, r.depth), (gc, gd))
            opt.step()
            losses.append(loss.clone())  # the graph overwrites it; read back once at the end
        head = torch.stack(losses + [visible.to(losses[0].dtype)]).tolist()
        losses, n_visible = head[:-1], int(head[-1])
        final = None
        if evaluate_final:
            with torch.no_grad():
                r = render()
                final = float(view_loss(r.color, r.depth, rgb, obs, c.joint_depth_weight, win))
        with torch.no_grad():
            for name, t in fields(Y.detach()).items():
                getattr(gmap, name).copy_(t.clamp(0, 1) if name == "colors" else t)
            if c.joint_colors_to_tracking:
                gmap.track_colors.copy_(gmap.colors)
            # Frozen poses come back exactly as they went in (their float32 copies, or
            # re-orthonormalising, would move them by rounding, and the caller feeds them to
            # the graph, the keyframes and the map).
            new_poses = (se3.orthonormalize(P0 @ se3.se3_exp(dY.detach() * c.joint_lr_pose)) if optimize_poses
                         else [v.pose for v in views])
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return JointResult({v.kf_id: new_poses[i] for i, v in enumerate(views)}, losses, final, n_it,
                           n_visible, 1000 * (time.perf_counter() - t0))
