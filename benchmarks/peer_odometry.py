#!/usr/bin/env python3
"""Tracking benchmark: gs4_ros against OpenCV's cv2.Odometry (RGB_DEPTH, frame to frame)
and, when `open3d` is installed, Open3D's dense RGB-D SLAM (a KinectFusion-style
frame-to-model ICP on a TSDF volume, the kind of tracker 7-Scenes' ground truth came
from) on the same frames, same device run, ATE through evo.

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


def run_open3d(ds, voxel: float = 3.0 / 512, depth_max: float = 4.0):
    """Open3D's t.pipelines.slam.Model on the CPU: integrate each frame into a TSDF,
    ray-cast the model and track the next frame against it (depth-only point-to-plane ICP).
    Returns run_cv2's tuple, or None without open3d (an optional peer: a 400 MB wheel)."""
    try:
        import open3d as o3d
        import open3d.core as o3c
    except ImportError:
        return None
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)   # a notice per frame otherwise
    dev = o3c.Device("CPU:0")
    intr = ds.intrinsics
    K = o3c.Tensor(intr.K_numpy().astype(np.float64))
    T = o3c.Tensor(np.eye(4))
    model = o3d.t.pipelines.slam.Model(voxel, 16, 40000, T, dev)
    cur = o3d.t.pipelines.slam.Frame(intr.height, intr.width, K, dev)
    ray = o3d.t.pipelines.slam.Frame(intr.height, intr.width, K, dev)
    poses, stamps, gts = [], [], []
    start = None
    failures = 0
    t0 = time.perf_counter()
    for i, f in enumerate(ds):
        mm = np.where(np.isfinite(f.depth), f.depth * 1000.0, 0).clip(0, 65535).astype(np.uint16)
        cur.set_data_from_image("depth", o3d.t.geometry.Image(o3c.Tensor(mm)))
        cur.set_data_from_image("color", o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(f.rgb))))
        if i == 0:
            start = f.gt_pose.copy() if f.gt_pose is not None else np.eye(4)
        else:
            try:
                r = model.track_frame_to_model(cur, ray, 1000.0, depth_max, 0.07)
                T = T @ r.transformation
            except RuntimeError:
                failures += 1   # keep the last pose, as for cv2
        model.update_frame_pose(i, T)
        model.integrate(cur, 1000.0, depth_max, 8.0)
        model.synthesize_model_frame(ray, 1000.0, 0.1, depth_max, 8.0, False)
        poses.append(start @ T.cpu().numpy())
        stamps.append(f.timestamp)
        gts.append(f.gt_pose)
    return poses, stamps, gts, time.perf_counter() - t0, failures


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
    o3d_run = run_open3d(ds)
    o3d_peer, o3d_fails = None, 0
    if o3d_run is None:
        print("open3d is not installed: its KinectFusion-style peer is left out (pip install open3d)")
    else:
        p, st, g, w, o3d_fails = o3d_run
        o3d_peer = trajectory_errors(st, p, st, g)
        o3d_peer["fps"] = len(p) / w
        rows.append(("Open3D dense SLAM (TSDF frame-to-model ICP)", o3d_peer, "cpu"))
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"\ndata: {args.dataset} frames {args.frames or 'all'} ({len(ds)} frames, "
          f"{ds.intrinsics.width}x{ds.intrinsics.height}); device: {dev_name}")
    print(f"{'method':<44s} {'ATE RMSE cm':>12s} {'RPE cm/fr':>10s} {'FPS':>8s} {'device':>8s}")
    for name, m, d in rows:
        print(f"{name:<44s} {m.get('ate_rmse_cm', float('nan')):12.2f} "
              f"{m.get('rpe_trans_rmse_cm', float('nan')):10.3f} {m.get('fps', float('nan')):8.1f} {d:>8s}")
    ratio = ours.get("ate_rmse_cm", float("nan")) / peer.get("ate_rmse_cm", float("nan"))
    print(f"ATE ratio gs4_ros / cv2.Odometry: {ratio:.2f}   (cv2 failures: {fails}; gs4 lost frames: {ours['frames_lost']})")
    if o3d_peer is not None:
        print(f"ATE ratio gs4_ros / Open3D: {ours.get('ate_rmse_cm', float('nan')) / o3d_peer['ate_rmse_cm']:.2f}"
              f"   (Open3D tracking failures: {o3d_fails})")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        with open(Path(args.out) / "peer_odometry.json", "w") as f:
            json.dump({"dataset": args.dataset, "frames": args.frames, "device": dev_name,
                       "ours": ours, "cv2_odometry": peer, "ate_ratio": ratio,
                       "open3d_dense_slam": o3d_peer}, f, indent=2)


if __name__ == "__main__":
    main()
