#!/usr/bin/env python3
"""What an external odometry's pose-graph edges (backend.odom_prior_edges) buy after loop
closure, by the kind of odometry and the sigmas it is given: a table of ATE (cm) on the
synthetic loop of test/test_backend.py (seed 0, every 10th of 600 frames at 160x120, real
ORB loop detection, dense verification and gtsam; the tracker's odometry is the
ground-truth step with a constant yaw bias, as in that test). The last column weighs each
edge by the odometry's own covariance instead (backend.odom_prior_use_covariance): one
that grows by 0.1 m and 0.1 deg per step, and by a slip's own size at a slipped step.

    python benchmarks/odom_prior_edges.py [--bias-deg 0.3 1.0]

CPU only, about 15 s per row. The keyframe replay is the test's own (`run_keyframes`),
imported so the figures here and the test's come from one harness.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from gs4_ros.core.config import PipelineConfig  # noqa: E402
from gs4_ros.io.synthetic import SyntheticSequence  # noqa: E402
from test_backend import ate_cm, run_keyframes, slipping_odometry  # noqa: E402

ODOMETRIES = {                       # (translation scale, rotation scale, {keyframe: slip deg})
    "exact": (1.0, 1.0, {}),
    "2% long (wheel scale)": (1.02, 1.0, {}),
    "5% over-rotating (wheel slip)": (1.0, 1.05, {}),
    "2% long, slips 6 deg at 3 keyframes": (1.02, 1.0, {12: 6.0, 30: -6.0, 45: 6.0}),
}
SIGMAS = ["off", (0.02, 1.0), (0.1, 0.1), (0.1, 0.5), (0.05, 0.2), "covariance"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bias-deg", type=float, nargs="+", default=[0.3, 1.0],
                    help="the tracker odometry's yaw bias per keyframe")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seq = SyntheticSequence(seed=0, n_frames=600, width=160, height=120, loop=True)
    frames = [seq.frame(i) for i in range(0, 600, 10)]
    gt = [f.gt_pose for f in frames]
    default = PipelineConfig().backend
    head = [s if isinstance(s, str) else f"{s[0]:g} m, {s[1]:g} deg" + (" (default)" if s == (
        default.odom_prior_sigma, default.odom_prior_sigma_deg) else "") for s in SIGMAS]
    print("ATE (cm) after loop closure, synthetic loop seed 0, 60 keyframes, 160x120, CPU; "
          "columns: odometry edges off or their sigmas per keyframe step")
    print("| tracker yaw bias | no back-end | external odometry | " + " | ".join(head) + " |")
    print("|---" * (3 + len(head)) + "|")
    for bias in args.bias_deg:
        for name, scales in ODOMETRIES.items():
            odom, covs = slipping_odometry(gt, scales[2], *scales[:2])
            cells = []
            for s in SIGMAS:
                cfg = PipelineConfig()
                if s == "off":
                    cfg.backend.odom_prior_edges = False
                elif s == "covariance":
                    cfg.backend.odom_prior_use_covariance = True
                else:
                    cfg.backend.odom_prior_sigma, cfg.backend.odom_prior_sigma_deg = s
                stamps, _, drifted, est, be = run_keyframes(None, 10, bias, cfg, frames=frames, odom=odom,
                                                            odom_cov=covs)
                cells.append(f"{ate_cm(stamps, est, gt):.2f} ({be.stats.loop_closures} loops)")
            print(f"| {bias:g} deg | {ate_cm(stamps, drifted, gt):.2f} | {name} | " + " | ".join(cells) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
