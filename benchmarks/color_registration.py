#!/usr/bin/env python3
"""Does the colour image line up with the depth image? Edge alignment of 7-Scenes colour,
as recorded and registered (io/datasets/registration.py), with a sweep of the colour
camera's focal length around the calibration's 525 px. No ground truth is involved.

Score: gs4_ros.eval.image_metrics.edge_alignment (colour gradient on depth edges over
colour gradient everywhere with depth).

    python benchmarks/color_registration.py --dataset 7scenes:../shared/data/7scenes_redkitchen_dev
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.eval.image_metrics import edge_alignment  # noqa: E402
from gs4_ros.io.datasets import open_dataset  # noqa: E402
from gs4_ros.io.datasets.registration import ColorCamera, register_color  # noqa: E402
from gs4_ros.io.datasets.sevenscenes import KINECT_V1_COLOR  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="7scenes:../shared/data/7scenes_redkitchen_dev")
    ap.add_argument("--frames", default="0:500:25")
    ap.add_argument("--focals", default="505,515,525,535,545", help="colour focal lengths to try (px)")
    args = ap.parse_args()
    ds = open_dataset(args.dataset, frames=args.frames, register_color=False)
    frames = [ds[i] for i in range(len(ds))]
    K = ds.intrinsics.K_numpy()
    cal = KINECT_V1_COLOR
    rows = [("as recorded", np.mean([edge_alignment(f.rgb, f.depth) for f in frames]))]
    for fc in [float(x) for x in args.focals.split(",") if x.strip()]:
        for name, T in (("calibrated offset", cal.rgb_from_depth), ("no offset", np.eye(4))):
            cam = ColorCamera(fc, fc, cal.cx, cal.cy, T)
            score = np.mean([edge_alignment(register_color(f.rgb, f.depth, K, cam), f.depth) for f in frames])
            mark = "  <- default" if fc == cal.fx and name == "calibrated offset" else ""
            rows.append((f"registered, f {fc:.0f} px, {name}{mark}", score))
    print(f"data: {args.dataset} frames {args.frames} ({len(frames)} frames, "
          f"{ds.intrinsics.width}x{ds.intrinsics.height}); device: cpu")
    print(f"{'colour image':<52s} {'edge alignment':>14s}")
    for name, score in rows:
        print(f"{name:<52s} {score:14.3f}")


if __name__ == "__main__":
    main()
