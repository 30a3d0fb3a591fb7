#!/usr/bin/env python3
"""Where a frame makes the host wait for the GPU: every synchronising CUDA call of the
pipeline, counted by the line of this project's code that caused it.

    python benchmarks/sync_points.py --device cuda --width 640 --height 480

Each synchronisation drains the GPU's queue, so the host cannot run ahead while the GPU
works: a frame then costs host time plus device time instead of the larger of the two.
Uses torch.cuda.set_sync_debug_mode("warn") over the measured frames (after a warm-up)
and prints syncs per frame by call site, innermost project frame first.
"""
from __future__ import annotations

import argparse
import collections
import sys
import traceback
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gs4_ros.core.config import load_config  # noqa: E402
from gs4_ros.core.pipeline import SLAMPipeline  # noqa: E402
from gs4_ros.io.datasets import open_dataset  # noqa: E402


def project_frames(stack, depth: int):
    """The innermost `depth` frames of this repository's code, innermost first."""
    out = []
    for fr in reversed(stack):
        if str(ROOT) in fr.filename and "sync_points.py" not in fr.filename:
            out.append(f"{Path(fr.filename).relative_to(ROOT)}:{fr.lineno} {fr.name}")
            if len(out) == depth:
                break
    return tuple(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthetic:seed=7,frames=120")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--depth", type=int, default=2, help="project frames shown per call site")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("sync_points needs CUDA")
    cfg = load_config(None, dict(s.split("=", 1) for s in args.set))
    ds = open_dataset(args.dataset, width=args.width, height=args.height, device=args.device)
    frames = [ds[i] for i in range(min(len(ds), args.warmup + args.frames))]
    pipe = SLAMPipeline(cfg, device=args.device)
    for f in frames[:args.warmup]:
        pipe.process(f)
    sites = collections.Counter()
    per_frame = []
    keyframes = 0

    def record(message, category, filename, lineno, file=None, line=None):
        sites[project_frames(traceback.extract_stack()[:-1], args.depth)] += 1

    # Explicit torch.cuda.synchronize() calls (the stage timers) do not warn: count them too.
    real_sync = torch.cuda.synchronize

    def counted_sync(device=None):
        sites[("explicit synchronize",) + project_frames(traceback.extract_stack()[:-1], args.depth)] += 1
        real_sync(device)

    torch.cuda.synchronize = counted_sync
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for f in frames[args.warmup:]:
                n0 = sum(sites.values())
                res = pipe.process(f)
                keyframes += int(res.keyframe)
                per_frame.append(sum(sites.values()) - n0)
        finally:
            torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize = real_sync
    n = len(per_frame)
    print(f"sync_points: {args.dataset} {args.width}x{args.height} on {torch.cuda.get_device_name()}; "
          f"{n} frames ({keyframes} keyframes) after {args.warmup} warm-up frames")
    print(f"synchronising calls per frame: mean {sum(per_frame) / max(n, 1):.1f}, min {min(per_frame)}, "
          f"max {max(per_frame)}")
    print(f"{'per frame':>9s}  call site (innermost project frame first)")
    for site, c in sites.most_common():
        print(f"{c / max(n, 1):9.2f}  {' <- '.join(site) or '(outside the project)'}")


if __name__ == "__main__":
    main()
