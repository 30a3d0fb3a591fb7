#!/usr/bin/env python3
"""Tracking benchmark: gs4_ros against OpenCV's cv2.Odometry (RGB_DEPTH, frame to frame)
on the same frames, same device run, ATE through evo.

    python benchmarks/peer_odometry.py --dataset 7scenes:../shared/data/7scenes_redkitchen_dev \
        --frames 0:500 --device cuda --out out/peer

Prints one table: method, ATE RMSE (cm), RPE (cm/frame), FPS, frames, device, and the
ratio of our ATE to the peer's.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.core.config import load_config  # noqa: E402
from gs4_ros.core.pipeline import SLAMPipeline, resolve_device  # noqa: E402
from gs4_ros.eval.runner import evaluate, run_frames  # noqa: E402
from gs4_ros.eval.trajectory_metrics import trajectory_errors  # noqa: E402
from gs4_ros.io.datasets import open_dataset  # noqa: E402
from bench_common import add_sequence_args  # noqa: E402  (this script's folder)


def run_cv2(ds, intrinsics=None):
    """cv2.Odometry RGB_DEPTH, each frame against the previous one, chained. ds: a dataset
    or a list of its frames (then pass the dataset's intrinsics)."""
    K = (intrinsics or ds.intrinsics).K_numpy().astype(np.float32)
    s = cv2.OdometrySettings()
    s.setCameraMatrix(K)
    odo = cv2.Odometry(cv2.OdometryType_RGB_DEPTH, s, cv2.OdometryAlgoType_COMMON)
    poses, stamps, gts = [], [], []
    prev = None
    pose = None
    failures = 0
    t0 = time.perf_counter()
    for f in ds:
        gray = cv2.cvtColor(f.rgb, cv2.COLOR_RGB2GRAY)
        depth = f.depth.astype(np.float32)
        if prev is None:
            pose = f.gt_pose.copy() if f.gt_pose is not None else np.eye(4)
        else:
            ok, Rt = odo.compute(prev[0], prev[1], depth, gray)
            if ok and np.isfinite(Rt).all():
                # Rt maps points of the previous camera into the current one.
                pose = pose @ np.linalg.inv(Rt)
            else:
                failures += 1  # keep the last pose (constant position)
        prev = (depth, gray)
        poses.append(pose.copy())
        stamps.append(f.timestamp)
        gts.append(f.gt_pose)
    wall = time.perf_counter() - t0
    return poses, stamps, gts, wall, failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sequence_args(ap)
    ap.add_argument("--out", default=None, help="folder for a JSON of the figures")
    args = ap.parse_args()
    device = resolve_device(args.device)
    ds = open_dataset(args.dataset, frames=args.frames, width=args.width, height=args.height)
    if ds.gt_poses() is None:
        sys.exit("the benchmark needs ground-truth poses")
    cfg = load_config(args.config)
    pipe = SLAMPipeline(cfg, device=str(device))
    # Warm-up outside the timed run (gsplat compiles its kernels on first use).
    warm = SLAMPipeline(cfg, device=str(device))
    for f in [ds[0], ds[min(1, len(ds) - 1)]]:
        warm.process(f)
    del warm
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rec = run_frames(pipe, ds, eval_every=0, keep_eval_frames=False)
    ours = evaluate(pipe, rec)
    poses, stamps, gts, wall, fails = run_cv2(ds)
    peer = trajectory_errors(stamps, poses, stamps, gts)
    peer["fps"] = len(poses) / wall
    rows = [("gs4_ros (frame-to-model, rendered map)", ours, str(device)),
            ("cv2.Odometry RGB_DEPTH (frame-to-frame)", peer, "cpu")]
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"\ndata: {args.dataset} frames {args.frames or 'all'} ({len(ds)} frames, "
          f"{ds.intrinsics.width}x{ds.intrinsics.height}); device: {dev_name}")
    print(f"{'method':<42s} {'ATE RMSE cm':>12s} {'RPE cm/fr':>10s} {'FPS':>8s} {'device':>8s}")
    for name, m, d in rows:
        print(f"{name:<42s} {m.get('ate_rmse_cm', float('nan')):12.2f} "
              f"{m.get('rpe_trans_rmse_cm', float('nan')):10.3f} {m.get('fps', float('nan')):8.1f} {d:>8s}")
    ratio = ours.get("ate_rmse_cm", float("nan")) / peer.get("ate_rmse_cm", float("nan"))
    print(f"ATE ratio gs4_ros / cv2.Odometry: {ratio:.2f}   (cv2 failures: {fails}; gs4 lost frames: {ours['frames_lost']})")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        with open(Path(args.out) / "peer_odometry.json", "w") as f:
            json.dump({"dataset": args.dataset, "frames": args.frames, "device": dev_name,
                       "ours": ours, "cv2_odometry": peer, "ate_ratio": ratio}, f, indent=2)


if __name__ == "__main__":
    main()
