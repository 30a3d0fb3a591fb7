#!/usr/bin/env python3
"""A kidnapped camera with the back-end as deployed (threaded): how many frames after the
view clears tracking is back, how far from the truth, and what a relocalisation query
costs; relocalisation on against off (backend.relocalize_after 0) in the same run.

Scenario (as test_pipeline's kidnapped test, which runs it synchronously): a synthetic
room is mapped for --mapped frames, the view is blocked for --blocked frames (a flat grey
surface 0.4 m away), then the camera is back where it was at frame --back-to and moves
on from there for --after frames (every --step-th frame of the path). With --odom a row
more, where the frames after the blockage carry an external odometry (the ground truth),
which carries an answer for an earlier frame over to the frame it seeds.

    python benchmarks/relocalization.py [--device cuda] [--width 640 --height 480] [--step 3 --odom]

Threaded, so the answer's frame depends on how long a frame takes against a query: a
figure of the machine it runs on, not a pass/fail test.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from gs4_ros.core.config import PipelineConfig  # noqa: E402
from gs4_ros.core.pipeline import SLAMPipeline, resolve_device  # noqa: E402
from gs4_ros.io.synthetic import SyntheticSequence  # noqa: E402
from test_pipeline import blocked_then_back, with_odometry  # noqa: E402  (the kidnapped test's scenario)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--mapped", type=int, default=120)
    ap.add_argument("--blocked", type=int, default=8)
    ap.add_argument("--back-to", type=int, default=40)
    ap.add_argument("--after", type=int, default=12)
    ap.add_argument("--step", type=int, default=1, help="after the blockage, every STEP-th frame of the path")
    ap.add_argument("--odom", action="store_true", help="a row more with odometry on the frames after the blockage")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    n_back = args.back_to + args.step * args.after
    seq = SyntheticSequence(seed=args.seed, n_frames=max(args.mapped, n_back), width=args.width, height=args.height)
    frames = [seq.frame(i) for i in range(args.mapped)]
    last = frames[-1]
    truth = [seq.frame(i) for i in range(args.back_to, n_back, args.step)]
    blocked, back = blocked_then_back(frames, args.blocked, truth)
    jump = np.linalg.norm(last.gt_pose[:3, 3] - truth[0].gt_pose[:3, 3])
    R = last.gt_pose[:3, :3].T @ truth[0].gt_pose[:3, :3]
    turn = np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
    print(f"synthetic seed {args.seed}, {args.width}x{args.height}, device {device}: {args.mapped} frames mapped, "
          f"{args.blocked} blocked, then back at frame {args.back_to} ({100 * jump:.0f} cm, {turn:.0f} deg away) for "
          f"{len(back)} frames (path step {args.step}); back-end threaded")
    print("| relocalize_after | odometry | frames back until tracked | error once tracked, cm (median / max) | "
          "same frames while mapping, cm (median) | moved from the prediction, first tracked frame, cm | "
          "queries (dropped) | found | query ms (max) | frame ms (median, frames back) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with_odom = with_odometry(back, truth)
    for after, odom in [(3, False)] + [(3, True)] * args.odom + [(0, False)]:
        cfg = PipelineConfig()
        cfg.backend.enabled, cfg.backend.synchronous = True, False
        cfg.backend.relocalize_after = after
        pipe = SLAMPipeline(cfg, device=device)
        try:
            for f in frames + blocked:
                pipe.process(f)
            align = frames[0].gt_pose @ np.linalg.inv(pipe.trajectory[0][2])
            res = [pipe.process(f) for f in (with_odom if odom else back)]
            st = pipe.backend.stats
            first = next((j for j, r in enumerate(res) if r.ok), None)
            err = [100 * np.linalg.norm((align @ r.pose)[:3, 3] - f.gt_pose[:3, 3])
                   for r, f in zip(res, truth)][first:] if first is not None else []
            mapped = [100 * np.linalg.norm((align @ pipe.trajectory[f.index][2])[:3, 3] - f.gt_pose[:3, 3])
                      for f in truth if f.index < args.mapped]
            moved = f"{100 * res[first].health.get('step_m', np.nan):.1f}" if first is not None else "-"
            frame_ms = np.median([r.timings_ms.get("total", np.nan) for r in res])
            print(f"| {after} | {'yes' if odom else 'no'} | {first if first is not None else 'never'} "
                  f"({''.join('+' if r.ok else '-' for r in res)}) | "
                  + (f"{np.median(err):.2f} / {max(err):.2f}" if err else "-")
                  + (f" | {np.median(mapped):.2f}" if mapped else " | -") + f" | {moved}"
                  + f" | {st.reloc_requests} ({st.reloc_dropped}) | {st.reloc_successes} | "
                  + (f"{max(st.reloc_ms):.0f}" if st.reloc_ms else "-") + f" | {frame_ms:.0f} |", flush=True)
        finally:
            pipe.close()


if __name__ == "__main__":
    main()
