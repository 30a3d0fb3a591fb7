#!/usr/bin/env python3
"""The tracker frame by frame on a sequence with ground truth: each frame's position
error, inlier fraction, depth and photometric residuals, Gauss-Newton iterations, how far
the solution moved from the motion model's prediction, keyframes and map size.

`gs4 run` reports an ATE over the whole sequence; when a run loses the trajectory this
shows where it starts to slide and whether a single frame jumps (a large move from the
prediction with fewer inliers) or the error creeps. Pipeline settings as `gs4 run --set`.

    python benchmarks/track_frames.py --dataset synthetic:seed=905,frames=40 \
        --set initializer=network [--set network.refine=false]
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.core.config import load_config, parse_overrides  # noqa: E402
from gs4_ros.core.pipeline import SLAMPipeline  # noqa: E402
from gs4_ros.io.datasets import open_dataset  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthetic:seed=905,frames=40")
    ap.add_argument("--frames", default=None, help="frame range of a real dataset, e.g. 0:300")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)

    cfg = load_config(args.config, parse_overrides(args.set))
    pipe = SLAMPipeline(cfg, device=args.device)
    kw = {"frames": args.frames} if args.frames else {}
    ds = open_dataset(args.dataset, width=args.width, height=args.height, **kw)
    dev = str(pipe.device)
    print(f"data: {args.dataset}{' ' + args.frames if args.frames else ''}, {args.width}x{args.height}; "
          f"initializer {cfg.initializer}; device {dev} ({platform.processor() or platform.machine()})")
    print(" frame  err cm  kf  Gaussians  inliers  rms depth cm  rms photo  iters  from prediction      weakest")
    errs = []
    for i in range(len(ds)):
        f = ds[i]
        if i == 0 and f.gt_pose is not None:
            f.meta["initial_pose"] = f.gt_pose
        r = pipe.process(f)
        err = float(np.linalg.norm(r.pose[:3, 3] - f.gt_pose[:3, 3])) if f.gt_pose is not None else float("nan")
        errs.append(err)
        h = r.health              # the tracker's figures; empty for the first frame, which is not tracked
        line = f"{i:6d}  {100 * err:6.2f}  {'*' if r.keyframe else ' ':2s}  {r.num_gaussians:9d}"
        if "inlier_fraction" in h:
            line += (f"  {h['inlier_fraction']:7.2f}  {100 * h['rms_depth_m']:12.2f}  {h['rms_photo']:9.3f}"
                     f"  {h['iterations']:5d}  {100 * h['step_m']:5.1f} cm {math.degrees(h['step_rad']):5.2f} deg"
                     f"  {h['weakest_constraint']:7.4f}"
                     f"{'' if r.ok else '  LOST'}")
        print(line, flush=True)
    e = np.array(errs) * 100
    print(f"position error (no alignment, first pose from ground truth): median {np.nanmedian(e):.2f} cm, "
          f"max {np.nanmax(e):.2f} cm, final {e[-1]:.2f} cm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
