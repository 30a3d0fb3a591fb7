#!/usr/bin/env python3
"""How much PSNR can a map with one Gaussian per stride-s block hold at all?

The networks are judged against 28 dB on held-out synthetic views, and every row of the
ablation sits near 23-24 dB. This separates the representation from the predictor: it maps
a sequence with the geometric initialiser (one Gaussian per stride block, the density the
networks predict at), then optimises every Gaussian's position, shape, opacity and colour
against all mapped frames for many Adam steps, as a per-scene 3DGS fit would, with the
tracked poses fixed and no Gaussian added or removed. The PSNR it reaches on the frames it
was fitted to and on held-out frames (every 10th, tracked but never mapped) bounds what any
feed-forward prediction at that density can reach there. The peer row is the map before
optimisation.

    python benchmarks/stride_cap.py --seed 900 --frames 40 --iters 300
    python benchmarks/stride_cap.py --seed 900 --frames 40 --iters 300 --stride 4
    python benchmarks/stride_cap.py --dataset 7scenes:DIR --frames 250:350 --iters 100 --batch 4
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.core.backend.joint_optimizer import view_loss  # noqa: E402
from gs4_ros.core.config import PipelineConfig  # noqa: E402
from gs4_ros.core.pipeline import SLAMPipeline, resolve_device  # noqa: E402
from gs4_ros.core.render import render_views  # noqa: E402
from gs4_ros.eval.runner import evaluate, final_poses, run_frames  # noqa: E402
from gs4_ros.io.datasets import open_dataset  # noqa: E402

FIELDS = {"colors": 1e-2, "opacity_logits": 5e-2, "log_scales": 5e-3, "quats": 1e-3, "means": 1e-4}


def fit_map(pipe: SLAMPipeline, views, iters: int, batch: int, depth_weight: float, seed: int = 0) -> list:
    """Adam on every Gaussian against (rgb [H,W,3] float, depth [H,W], pose) views; the
    joint optimiser's loss (0.8 L1 + 0.2 (1 - SSIM) on colour, L1 on valid depth)."""
    gm, dev = pipe.map, pipe.device
    K = pipe.intrinsics.K(dev)
    W, H = pipe.intrinsics.width, pipe.intrinsics.height
    leaves = {k: getattr(gm, k).detach().clone().requires_grad_(True) for k in FIELDS}
    opt = torch.optim.Adam([{"params": [v], "lr": FIELDS[k]} for k, v in leaves.items()])
    rng = np.random.default_rng(seed)
    losses = []
    for it in range(iters):
        for k, v in leaves.items():
            setattr(gm, k, v)
        p = gm.params()
        pick = rng.choice(len(views), size=min(batch, len(views)), replace=False)
        rgb = torch.stack([views[i][0] for i in pick])
        dep = torch.stack([views[i][1] for i in pick])
        poses = torch.stack([views[i][2] for i in pick])
        out = render_views(pipe.rasterizer, p, poses, K, W, H)
        loss = view_loss(out.color, out.depth, rgb, dep, depth_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        for k, v in leaves.items():
            setattr(gm, k, v.detach())
    return losses


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=900, help="held-out synthetic seed (< 1000)")
    ap.add_argument("--frames", default="40", help="synthetic: how many; a dataset: A:B")
    ap.add_argument("--dataset", default="", help="KIND:PATH of a recorded sequence instead of a synthetic seed")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--batch", type=int, default=2, help="views per Adam step")
    ap.add_argument("--depth-weight", type=float, default=1.0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    if args.dataset:
        ds = open_dataset(args.dataset, frames=args.frames, width=args.width, height=args.height)
        source = f"{args.dataset} frames {args.frames}"
    else:
        ds = open_dataset(f"synthetic:seed={args.seed},frames={int(args.frames)}", width=args.width,
                          height=args.height, device=str(dev))
        source = f"synthetic seed {args.seed}, {args.frames} frames"
    frames = [ds[i] for i in range(len(ds))]
    cfg = PipelineConfig()
    cfg.mapping.stride = args.stride
    pipe = SLAMPipeline(cfg, device=str(dev))
    rec = run_frames(pipe, frames, eval_every=5, holdout_every=10)
    before = evaluate(pipe, rec)
    poses = final_poses(pipe, rec)
    held = set(rec.heldout)
    views = [(torch.from_numpy(f.rgb).to(dev).float() / 255.0, torch.from_numpy(f.depth).to(dev),
              torch.as_tensor(poses[f.index], dtype=torch.float32, device=dev))
             for f in frames if f.index not in held and f.index in poses]
    t = time.perf_counter()
    losses = fit_map(pipe, views, args.iters, args.batch, args.depth_weight)
    fit_s = time.perf_counter() - t
    after = evaluate(pipe, rec)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu")
    print(f"data: {source} at {args.width}x{args.height}, stride "
          f"{args.stride}; {len(views)} mapped views fitted, {len(held)} held out; device: {name} "
          f"({pipe.rasterizer.name})")
    print(f"fit: {args.iters} Adam steps of {args.batch} views in {fit_s:.0f} s, loss {np.mean(losses[:10]):.4f} "
          f"-> {np.mean(losses[-10:]):.4f}")
    print(f"{'map':<44s} {'Gaussians':>9s} {'PSNR':>6s} {'ho PSNR':>7s} {'ho SSIM':>7s} {'ho L1 cm':>8s}")
    for label, m in (("geometric initialiser (peer)", before), (f"same Gaussians after {args.iters} Adam steps", after)):
        print(f"{label:<44s} {m['num_gaussians']:9d} {m['psnr']:6.2f} {m.get('heldout_psnr', float('nan')):7.2f} "
              f"{m.get('heldout_ssim', float('nan')):7.3f} {m.get('heldout_depth_l1_cm', float('nan')):8.2f}")


if __name__ == "__main__":
    main()
