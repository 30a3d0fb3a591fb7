#!/usr/bin/env python3
"""Could a fixed camera offset or a time offset explain a trajectory's ATE against its
ground truth? Plain ATE (evo, SE(3) alignment), then the ATE after also fitting a rigid
offset between the estimated and the ground-truth camera centre (hand-eye, jointly with
the alignment), then the ATE with the ground truth shifted in time by a fraction of a frame.
A large drop in either points at a calibration or timing mismatch rather than tracking.

    python benchmarks/trajectory_offsets.py RUN/trajectory.txt RUN/groundtruth.txt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from evo.core.geometry import umeyama_alignment
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.eval.trajectory_metrics import trajectory_errors  # noqa: E402
from gs4_ros.io.trajectory import read_tum  # noqa: E402


def _se3(p: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(p[:3]).as_matrix()
    T[:3, 3] = p[3:6]
    return T


def _rmse_cm(err: np.ndarray) -> float:
    return 100 * float(np.sqrt((err.reshape(-1, 3) ** 2).sum(1).mean()))


def hand_eye_ate(est: np.ndarray, gt: np.ndarray):
    """(ATE cm, offset cm) of gt_i ~ W est_i X, the offset X's translation fitted with the
    alignment W (X's rotation does not move positions, so it is not fitted)."""
    def residual(p):
        moved = est[:, :3, :3] @ p[6:9] + est[:, :3, 3]           # camera centre moved by X
        W = _se3(p[:6])
        return (moved @ W[:3, :3].T + W[:3, 3] - gt[:, :3, 3]).ravel()

    r = least_squares(residual, np.zeros(9))
    return _rmse_cm(r.fun), 100 * np.linalg.norm(r.x[6:9])


def lagged_ate(est: np.ndarray, gt: np.ndarray, lag: float) -> float:
    """Position ATE (cm) against the ground truth shifted by `lag` frames (linear
    interpolation of positions; frames past either end are left out)."""
    idx = np.arange(len(gt), dtype=np.float64)
    s = idx + lag
    keep = (s >= 0) & (s <= len(gt) - 1)
    g = np.stack([np.interp(s[keep], idx, gt[:, k, 3]) for k in range(3)], 1)
    p = est[keep, :3, 3]
    R, t, _ = umeyama_alignment(p.T, g.T, with_scale=False)
    return _rmse_cm(p @ R.T + t - g)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trajectory", help="estimate, TUM format")
    ap.add_argument("groundtruth", help="ground truth, TUM format, the same frames")
    ap.add_argument("--max-lag", type=float, default=1.5, help="frames")
    a = ap.parse_args(argv)
    ts, est = read_tum(a.trajectory)
    tg, gt = read_tum(a.groundtruth)
    n = min(len(est), len(gt))
    plain = trajectory_errors(ts[:n], est[:n], tg[:n], gt[:n])["ate_rmse_cm"]
    ate, off_cm = hand_eye_ate(est[:n], gt[:n])
    print(f"data: {a.trajectory} against {a.groundtruth}, {n} poses")
    print(f"{'model':<44s} {'ATE cm':>7s}")
    print(f"{'plain (evo, SE(3) alignment)':<44s} {plain:7.3f}")
    print(f"{'+ fixed camera offset (hand-eye)':<44s} {ate:7.3f}   offset {off_cm:.2f} cm")
    lags = np.arange(-a.max_lag, a.max_lag + 1e-9, 0.25)
    rows = [(lag, lagged_ate(est[:n], gt[:n], lag)) for lag in lags]
    best = min(rows, key=lambda r: r[1])
    print(f"{'ground truth shifted 0 frames (positions)':<44s} {lagged_ate(est[:n], gt[:n], 0.0):7.3f}")
    print(f"{'best shift ' + format(best[0], '+.2f') + ' frames':<44s} {best[1]:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
