#!/usr/bin/env python3
"""Where the tracker settles when started at the true pose: its bias, apart from drift.

Maps the first frame at its ground-truth pose, then for each asked frame renders the map
at that frame's true pose and runs the tracker from there. A tracker without bias stays
put; how far it moves, with the inlier fraction it reports, shows which term pulls and
whether the gates leave enough pixels (a far, noisy room read as lost; a photometric term
that disagrees with the depth). Variants as in sweep.py; the default settings are a peer
in the same run.

    python benchmarks/track_bias.py --dataset synthetic:seed=914,frames=40 --frames 1,20 \
        --variant photo0:tracking.photo_weight=0
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gs4_ros.core import se3  # noqa: E402
from gs4_ros.core.config import load_config  # noqa: E402
from gs4_ros.core.pipeline import SLAMPipeline  # noqa: E402
from gs4_ros.io.datasets import open_dataset  # noqa: E402
from sweep import parse_variant  # noqa: E402


def bias_rows(dataset: str, frames, sets: dict, width: int, height: int, device: str):
    """(frame, inlier fraction, moved m, moved rad, lost) per asked frame."""
    pipe = SLAMPipeline(load_config(None, sets), device=device)
    ds = open_dataset(dataset, width=width, height=height)
    first = ds[0]
    first.meta["initial_pose"] = first.gt_pose
    pipe.process(first)
    out = []
    for i in frames:
        f = ds[i]
        dev = pipe.device
        T = torch.as_tensor(f.gt_pose, dtype=torch.float32, device=dev)
        K = f.intrinsics.K(dev)
        with torch.no_grad():
            ref = pipe.render_reference(T, K, f.intrinsics.width, f.intrinsics.height)
            cur, refl = pipe.tracker.prepare(torch.from_numpy(f.depth).to(dev),
                                             torch.from_numpy(f.rgb).to(dev).float() / 255, K,
                                             ref.points[0], ref.normals[0], ref.color[0], ref.alpha[0])
            res = pipe.tracker.track(cur, refl, T)
        dt, dr = se3.pose_distance(T.double().cpu(), res.pose.double().cpu())
        out.append((i, res.inlier_fraction, float(dt), float(dr), not res.ok))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthetic:seed=914,frames=40")
    ap.add_argument("--frames", default="1,20", help="frames to track from their true pose (the map holds frame 0)")
    ap.add_argument("--variant", action="append", default=[], help="NAME:KEY=VALUE,... (default settings always run)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    frames = [int(x) for x in args.frames.split(",") if x.strip()]
    variants = [("default", {})] + [parse_variant(v) for v in args.variant]
    print(f"data: {args.dataset}, {args.width}x{args.height}, map of frame 0 at its true pose; "
          f"device {args.device} ({platform.processor() or platform.machine()})")
    print(f"{'variant':24s} {'frame':>5s} {'inliers':>8s} {'moved cm':>9s} {'moved deg':>9s}")
    for name, sets in variants:
        for i, inl, dt, dr, lost in bias_rows(args.dataset, frames, sets, args.width, args.height, args.device):
            print(f"{name:24s} {i:5d} {inl:8.2f} {100 * dt:9.2f} {math.degrees(dr):9.2f}{'  LOST' if lost else ''}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
