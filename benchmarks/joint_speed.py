#!/usr/bin/env python3
"""Cost of the joint pose-Gaussian optimisation alone (issue 4: five iterations over the
visible map in <= 30 ms on an H100-class GPU), without running a sequence twice as
benchmarks/backend.py does.

    python benchmarks/joint_speed.py --device cuda --width 640 --height 480 --profile

Maps a synthetic sequence with the back-end on (keyframes keep their images), then times
`JointOptimizer.run` with 1 and 5 iterations on the last top_k keyframes of that map
(each call from the same map state) and, with --profile, lists the operators that take
the host and the device time, so launch overhead and device work can be told apart.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.core.backend import JointOptimizer  # noqa: E402
from gs4_ros.core.config import load_config  # noqa: E402
from gs4_ros.core.pipeline import SLAMPipeline, resolve_device  # noqa: E402
from gs4_ros.io.datasets import open_dataset  # noqa: E402
from backend import joint_timing  # noqa: E402  (this script's folder)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthetic:seed=3,frames=90")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--profile", action="store_true", help="torch.profiler over three 5-iteration calls")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    sets = dict(s.split("=", 1) for s in args.set)
    sets.setdefault("backend.enabled", "true")
    sets.setdefault("backend.synchronous", "true")
    cfg = load_config(None, sets)
    ds = open_dataset(args.dataset, width=args.width, height=args.height, device=str(dev))
    pipe = SLAMPipeline(cfg, device=str(dev))
    for i in range(len(ds)):
        pipe.process(ds[i])
    pipe.finish()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"joint_speed: {args.dataset} at {args.width}x{args.height} on {name} ({pipe.rasterizer.name}); "
          f"map {len(pipe.map)} Gaussians, {len(pipe.keyframes)} keyframes")
    print(f"{'iterations':>10s} {'views':>6s} {'px wide':>8s} {'visible':>8s} {'ms median':>10s} {'ms max':>8s} "
          f"{'ms cold':>8s} {'loss first -> last':>20s}")
    for it in (1, 5):
        j = joint_timing(pipe, iterations=it, repeats=args.repeats)
        if j is None:
            sys.exit("no keyframe kept its images: is the back-end enabled?")
        print(f"{it:10d} {j['views']:6d} {j['width']:8d} {j['visible_gaussians']:8d} {j['ms_median']:10.1f} "
              f"{j['ms_max']:8.1f} {j['ms_first']:8.1f} {j['loss_first_last'][0]:9.4f} -> {j['loss_first_last'][1]:.4f}")
    print("target: 5 iterations <= 30 ms on an H100-class GPU (issue 4); cold = the first call of the "
          "process (graph capture, lazy kernel loading)")
    if args.profile:
        views = pipe.joint_views([kf.id for kf in pipe.keyframes[-cfg.backend.joint_top_k:]])
        b = cfg.backend
        b.joint_iterations = 5
        opt = JointOptimizer(b, blend=pipe.joint.blend if pipe.joint is not None else None)
        acts = [torch.profiler.ProfilerActivity.CPU]
        if dev.type == "cuda":
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(3):
                opt.run(pipe.map, pipe.rasterizer, views)
        keys = ["self_cpu_time_total"] + (["self_cuda_time_total"] if dev.type == "cuda" else [])
        for key in keys:
            print(f"\nthree 5-iteration calls, top operators by {key}")
            print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=60))


if __name__ == "__main__":
    main()
