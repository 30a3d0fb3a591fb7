#!/usr/bin/env python3
"""Do a sequence's depth maps agree with its ground-truth poses? A check for loop pairs.

For each frame pair (i, j), a map is built from frame i alone (v0 initialiser, at the GT
pose of i taken as the origin) and frame j is aligned to it by the dense tracker, depth
only (no photometric term, whose colour may not be registered to depth), starting AT
the ground-truth relative pose. Where depth and ground truth agree, the alignment stays
within millimetres of its start (it does on the synthetic sequences); where it walks off
by centimetres, a back-end that closes loops from the same depth cannot bring the
trajectory closer to that ground truth than this, whatever it does. A peer in the same
run: OpenCV's RGB-D odometry (cv2.Odometry RGB_DEPTH) chained from i to j; where it
agrees with the alignment and not with the ground truth, the ground truth is the odd one
out.

    python benchmarks/gt_consistency.py --dataset 7scenes:../shared/data/7scenes_redkitchen_dev \\
        --pairs 0:249,0:289,276:486,303:479 --width 320 --height 240 --device cpu
    python benchmarks/gt_consistency.py --dataset synthetic:seed=7,frames=150 --pairs 0:60,10:90

--steps checks every frame-to-frame step of the ground truth instead, with no part of
gs4_ros in the loop: OpenCV's depth-only ICP (cv2.Odometry DEPTH) estimates the step i ->
i+1, and the point-to-plane residual of frame i+1's depth against frame i's is taken at
the ground-truth step and at the ICP step (a step that contradicts the depth leaves the
larger residual). A step is flagged when the two differ by more than --min-diff-cm and
the residual at the ground truth is at least --min-ratio times that at ICP. The floor:
the ground truth with only the flagged steps taken from ICP, scored against the ground
truth by the project's ATE (evo, SE(3) alignment): what a tracker would score that
matched the ground truth everywhere but followed the depth at those steps. --trajectory
scores a `gs4 run` trajectory against both references.

    python benchmarks/gt_consistency.py --dataset 7scenes:../shared/data/7scenes_redkitchen_dev \\
        --steps --frames 0:500 --width 640 --height 480 --trajectory out/run/trajectory.txt
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


INLIER_M = 0.03          # residuals beyond this are occlusions or outliers, not misalignment
NORMAL_BASELINE_PX = 2   # at 640 px wide: one-pixel differences of Kinect depth are mostly noise


def step_residual(ref, cur, K: np.ndarray, T_ref_cur: np.ndarray) -> float:
    """RMS (m) of point-to-plane residuals of cur's points, moved by T_ref_cur (cur's pose
    in ref's frame), against ref's surface at the pixel they project to. Written out: it is
    a dozen lines, and the point is to score a given pose, not to solve for one."""
    P_ref, N_ref, d_ref = ref
    P_cur, d_cur = cur[0], cur[2]
    h, w = d_ref.shape
    q = P_cur[d_cur > 0] @ T_ref_cur[:3, :3].T + T_ref_cur[:3, 3]
    z = q[:, 2]
    keep = z > 0.1
    q, z = q[keep], z[keep]
    u = np.round(q[:, 0] / z * K[0, 0] + K[0, 2]).astype(int)
    v = np.round(q[:, 1] / z * K[1, 1] + K[1, 2]).astype(int)
    inb = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    q, u, v = q[inb], u[inb], v[inb]
    r = ((q - P_ref[v, u]) * N_ref[v, u]).sum(-1)
    r = r[(d_ref[v, u] > 0) & np.isfinite(r)]
    r = r[np.abs(r) < INLIER_M]
    return float(np.sqrt((r ** 2).mean())) if len(r) else float("nan")


def scan_steps(ds, a) -> int:
    """The --steps check (module docstring): every step i -> i+1 of the ground truth."""
    import torch

    from gs4_ros.core.geometry import backproject, normals_from_points
    from gs4_ros.eval.trajectory_metrics import trajectory_errors
    from gs4_ros.io.trajectory import read_tum
    from bench_common import transform_error

    K = ds.intrinsics.K_numpy().astype(np.float64)
    r = max(1, round(NORMAL_BASELINE_PX * ds.intrinsics.width / 640))
    s = cv2.OdometrySettings()
    s.setCameraMatrix(K.astype(np.float32))
    odo = cv2.Odometry(cv2.OdometryType_DEPTH, s, cv2.OdometryAlgoType_COMMON)

    def geometry(f):
        """(points, normals with NaN where there is none, depth) of a frame, float64."""
        d = torch.from_numpy(np.where(np.isfinite(f.depth), f.depth, 0).astype(np.float64))
        P = backproject(d, torch.from_numpy(K))
        N, ok = normals_from_points(P, d > 0, r)
        N = torch.where(ok[..., None], N, torch.full_like(N, float("nan")))
        return P.numpy(), N.numpy(), d.numpy()

    t0 = time.perf_counter()
    stamps, gt, rows = [], [], []
    prev = prev_f = None
    for k in range(len(ds)):
        f = ds[k]
        if f.gt_pose is None:
            print(f"frame {f.index} has no ground-truth pose")
            return 1
        stamps.append(f.timestamp)
        gt.append(np.asarray(f.gt_pose, np.float64))
        cur = geometry(f)
        if prev is not None:
            G = np.linalg.inv(gt[-2]) @ gt[-1]                      # frame j in frame i
            ok, Rt = odo.compute(prev_f.depth.astype(np.float32), f.depth.astype(np.float32))
            # Rt maps points of the previous camera into the current one.
            T_icp = np.linalg.inv(Rt) if ok and np.isfinite(Rt).all() else None
            row = {"i": prev_f.index, "j": f.index, "gt_cm": transform_error(G)[0],
                   "res_gt_mm": 1000 * step_residual(prev, cur, K, G), "T_icp": T_icp}
            if T_icp is not None:
                row["diff_cm"], row["diff_deg"] = transform_error(np.linalg.inv(G) @ T_icp)
                row.update(icp_cm=transform_error(T_icp)[0], res_icp_mm=1000 * step_residual(prev, cur, K, T_icp))
            rows.append(row)
        prev, prev_f = cur, f
    wall = time.perf_counter() - t0

    good = [w for w in rows if w["T_icp"] is not None]
    # A repeated frame (identical depth) has a zero residual at ICP's identity step.
    for w in good:
        w["ratio"] = w["res_gt_mm"] / max(w["res_icp_mm"], 1e-3)
    flagged = [w for w in good if w["diff_cm"] > a.min_diff_cm and w["ratio"] >= a.min_ratio]
    flagged_ids = {id(w) for w in flagged}
    repaired = [gt[0]]                    # ground-truth steps, the flagged ones from ICP
    for k, w in enumerate(rows, start=1):
        step = w["T_icp"] if id(w) in flagged_ids else np.linalg.inv(gt[k - 1]) @ gt[k]
        repaired.append(repaired[-1] @ step)
    floor = trajectory_errors(stamps, repaired, stamps, gt)

    diffs = np.array([w["diff_cm"] for w in good])
    ratio = np.array([w["ratio"] for w in good])
    repeats = sum(w["res_icp_mm"] < 1e-3 for w in good)
    print(f"gt_consistency --steps: {a.dataset}, frames {len(ds)}, {ds.intrinsics.width}x{ds.intrinsics.height}, "
          f"OpenCV {cv2.__version__} depth ICP, {wall:.0f} s")
    print(f"steps {len(rows)}, ICP failed on {len(rows) - len(good)}; ground-truth step against ICP step: "
          f"median {np.median(diffs):.2f} cm, 95th percentile {np.percentile(diffs, 95):.2f} cm, "
          f"max {diffs.max():.2f} cm; residual at GT over residual at ICP: median {np.median(ratio):.2f}; "
          f"{repeats} repeated frames (identical depth)")
    print(f"\nflagged steps (differ by > {a.min_diff_cm} cm, residual at GT >= {a.min_ratio} x at ICP): {len(flagged)}")
    print("| step | GT step cm | ICP step cm | GT vs ICP cm | deg | residual at GT mm | at ICP mm |")
    print("|---|---|---|---|---|---|---|")
    for w in flagged:
        print(f"| {w['i']}->{w['j']} | {w['gt_cm']:.2f} | {w['icp_cm']:.2f} | {w['diff_cm']:.2f} | "
              f"{w['diff_deg']:.2f} | {w['res_gt_mm']:.2f} | {w['res_icp_mm']:.2f} |")
    print(f"\nfloor: the ground truth with the flagged steps from ICP, against the ground truth: "
          f"ATE {floor.get('ate_rmse_cm', float('nan')):.2f} cm (max {floor.get('ate_max_cm', float('nan')):.2f} cm)")
    if a.trajectory:
        est_stamps, est_poses = read_tum(a.trajectory)
        on_gt = trajectory_errors(est_stamps, est_poses, stamps, gt)
        on_rep = trajectory_errors(est_stamps, est_poses, stamps, repaired)
        print(f"{a.trajectory}: ATE {on_gt.get('ate_rmse_cm', float('nan')):.2f} cm against the ground truth, "
              f"{on_rep.get('ate_rmse_cm', float('nan')):.2f} cm against the repaired one")
    return 0


def main(argv=None) -> int:
    from gs4_ros.core.config import PipelineConfig
    from gs4_ros.core.pipeline import SLAMPipeline
    from gs4_ros.io.datasets import open_dataset
    from bench_common import transform_error
    from peer_odometry import run_cv2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--pairs", default=None, help="comma list of i:j frame indices")
    ap.add_argument("--steps", action="store_true", help="check every consecutive step instead")
    ap.add_argument("--frames", default=None, help="with --steps: the frames to scan (A:B)")
    ap.add_argument("--trajectory", default=None, help="with --steps: a TUM trajectory to score")
    ap.add_argument("--min-diff-cm", type=float, default=1.5)
    ap.add_argument("--min-ratio", type=float, default=1.25)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--intrinsics", default=None, help="override 'fx,fy,cx,cy' (at the native size)")
    a = ap.parse_args(argv)
    if a.steps:
        kw = {"intrinsics": a.intrinsics} if a.intrinsics else {}
        return scan_steps(open_dataset(a.dataset, frames=a.frames, width=a.width, height=a.height,
                                       device=a.device, **kw), a)
    if not a.pairs:
        ap.error("give --pairs or --steps")
    pairs = [tuple(int(x) for x in p.split(":")) for p in a.pairs.split(",") if p.strip()]
    last = max(max(p) for p in pairs) + 1
    kw = {} if a.dataset.startswith("synthetic") else {"frames": f"0:{last}"}
    if a.intrinsics:
        kw["intrinsics"] = a.intrinsics
    ds = open_dataset(a.dataset, width=a.width, height=a.height, device=a.device, **kw)
    src = a.intrinsics or "from the dataset"
    print(f"gt_consistency: {a.dataset}, {a.width}x{a.height}, device {a.device}, intrinsics {src}; "
          "frame j aligned "
          "(depth only) to a map of frame i, starting at the ground-truth relative pose")
    print("| i | j | GT baseline cm | GT angle deg | alignment off GT cm | deg | inliers "
          "| cv2.Odometry i..j off GT cm | deg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, j in pairs:
        fi, fj = ds[i], ds[j]
        G = np.linalg.inv(fi.gt_pose) @ fj.gt_pose
        cfg = PipelineConfig(device=a.device)
        cfg.tracking.photo_weight = 0.0
        cfg.tracking.motion_model = "static"
        pipe = SLAMPipeline(cfg, device=a.device)
        fi.meta["initial_pose"] = np.eye(4)
        # The start: the ground-truth relative pose, handed over as external odometry.
        fi.meta["odom_camera_pose"], fj.meta["odom_camera_pose"] = np.eye(4), G
        pipe.process(fi)
        r = pipe.process(fj, allow_mapping=False)
        t_off, r_off = transform_error(np.linalg.inv(G) @ r.pose)
        t_base, r_base = transform_error(G)
        poses, _, _, _, fails = run_cv2([ds[k] for k in range(i, j + 1)], ds.intrinsics)
        c_off = transform_error(np.linalg.inv(G) @ (np.linalg.inv(poses[0]) @ poses[-1]))
        print(f"| {i} | {j} | {t_base:.1f} | {r_base:.1f} | {t_off:.2f} | {r_off:.2f} | "
              f"{r.health.get('inlier_fraction', float('nan')):.2f} | {c_off[0]:.2f} | {c_off[1]:.2f}"
              f"{f' ({fails} failed)' if fails else ''} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
