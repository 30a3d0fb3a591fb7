#!/usr/bin/env python3
"""Where a frame's time goes: torch.profiler over the pipeline, plus each tracking
sub-step timed alone on one frame (synchronised, median of repeats).

    python benchmarks/profile_pipeline.py --dataset synthetic:seed=7,frames=120 \
        --width 640 --height 480 --device cuda --warmup 60 --frames 40

Prints the stage table of the profiled frames, the top operators by self device time and
by host (CPU) time, and the isolated sub-step table, so the larger of launch overhead and
device work is visible before anything is optimised.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.core.config import load_config  # noqa: E402
from gs4_ros.core.pipeline import SLAMPipeline, resolve_device  # noqa: E402
from gs4_ros.core.render import render_views  # noqa: E402
from gs4_ros.io.datasets import open_dataset  # noqa: E402
from bench_common import timed_ms  # noqa: E402  (this script's folder)


def timed(fn, dev, reps=20):
    return statistics.median(timed_ms(fn, dev, reps))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthetic:seed=7,frames=120")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    sets = dict(s.split("=", 1) for s in args.set)
    cfg = load_config(args.config, sets)
    ds = open_dataset(args.dataset, width=args.width, height=args.height, device=str(dev))
    frames = [ds[i] for i in range(min(len(ds), args.warmup + args.frames))]
    pipe = SLAMPipeline(cfg, device=str(dev))
    for f in frames[:args.warmup]:
        pipe.process(f)
    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    stages = {}
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=acts) as prof:
        for f in frames[args.warmup:]:
            r = pipe.process(f)
            for k, v in r.timings_ms.items():
                stages.setdefault(k, []).append(v)
    wall = time.perf_counter() - t0
    n = len(frames) - args.warmup
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"\n{args.dataset} {ds.intrinsics.width}x{ds.intrinsics.height}, {n} profiled frames on {name}, "
          f"{len(pipe.map)} Gaussians; {n / wall:.1f} frames/s under the profiler")
    print(f"{'stage':<14s} {'mean ms':>9s} {'count':>6s}")
    for k, v in stages.items():
        print(f"{k:<14s} {statistics.mean(v):9.2f} {len(v):6d}")
    ka = prof.key_averages()
    if dev.type == "cuda":
        print("\n-- top operators by self device time --")
        print(ka.table(sort_by="self_cuda_time_total", row_limit=args.top, max_name_column_width=48))
    print("\n-- top operators by host time --")
    print(ka.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=48))

    # Isolated sub-steps of tracking on the last frame.
    f = frames[-1]
    K = f.intrinsics.K(dev)
    depth = torch.from_numpy(f.depth).to(dev)
    rgb = torch.from_numpy(f.rgb).to(dev).float() / 255.0
    pose = torch.as_tensor(pipe.trajectory[-1][2], dtype=torch.float32, device=dev)
    W, H = f.intrinsics.width, f.intrinsics.height
    params = pipe.map.params()
    tr = pipe.tracker
    ref = render_views(pipe.rasterizer, params, pose, K, W, H, geometry=True)
    refl = tr.reference_levels(ref.points[0], ref.normals[0], ref.color[0], ref.alpha[0], K)
    curl = tr.levels_for(depth, rgb, K)
    rows = [
        ("map.params()", lambda: pipe.map.params()),
        ("render colour+depth", lambda: render_views(pipe.rasterizer, params, pose, K, W, H)),
        ("render geometry", lambda: render_views(pipe.rasterizer, params, pose, K, W, H, geometry=True)),
        ("reference_levels", lambda: tr.reference_levels(ref.points[0], ref.normals[0], ref.color[0], ref.alpha[0], K)),
        ("levels_for (observed)", lambda: tr.levels_for(depth, rgb, K)),
        ("track (GN + stats)", lambda: tr.track(curl, refl, pose)),
        ("view: pipe.render (surface blend)", lambda: pipe.render(pipe.trajectory[-1][2], f.intrinsics)),
        ("view: pipe.render (composited only)", lambda: composited_view(pipe, f.intrinsics)),
    ]
    print(f"\n{'sub-step (isolated, median of 20)':<36s} {'ms':>8s}")
    with torch.no_grad():
        for label, fn in rows:
            print(f"{label:<36s} {timed(fn, dev):8.2f}")
    res = tr.track(curl, refl, pose)
    print(f"GN iterations on that frame: {res.iterations}")


def composited_view(pipe, intrinsics):
    """A published view without the surface-blend pass (render_blend_opacity 0): its peer."""
    keep = pipe.cfg.render_blend_opacity
    pipe.cfg.render_blend_opacity = 0.0
    try:
        return pipe.render(pipe.trajectory[-1][2], intrinsics)
    finally:
        pipe.cfg.render_blend_opacity = keep


if __name__ == "__main__":
    main()
