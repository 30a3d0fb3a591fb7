#!/usr/bin/env python3
"""Depth-hole filling (core/depth_fill) on real and synthetic frames: how much of the holes
it fills, how far the filled depth is from the truth (synthetic rooms: their noise-free
depth), and what it costs on the host per keyframe. The peers in the same run are the
one-plane fill alone (`mapping.fill_holes_occluded: false`) and the occluded fill without
the backdrop beyond the range (`mapping.fill_holes_beyond_range: 0`).

    python benchmarks/depth_fill.py [--seeds 900,901,902] [--dataset 7scenes:DIR]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.core.config import MappingConfig  # noqa: E402
from gs4_ros.core.depth_fill import mapping_depth  # noqa: E402
from gs4_ros.io.synthetic.seeds import seed_list  # noqa: E402


def frames_of(args):
    """(name, [(depth, K, clean depth or None)]) per source."""
    from gs4_ros.io.synthetic import SyntheticSequence

    for s in seed_list(args.seeds):
        seq = SyntheticSequence(seed=s, n_frames=args.frames, width=args.width, height=args.height)
        yield f"synthetic:{s}", [(seq.frame(i).depth, seq.intrinsics.K_numpy(), seq.render_clean(i)["depth"].numpy())
                                 for i in range(0, args.frames, args.every)]
    if args.dataset:
        from gs4_ros.io.datasets import open_dataset

        a = args.real_start
        ds = open_dataset(args.dataset, frames=f"{a}:{a + args.real_frames}:{args.every}", width=args.width,
                          height=args.height)
        yield args.dataset.split(":")[0], [(ds[i].depth, ds.intrinsics.K_numpy(), None) for i in range(len(ds))]


def measure(frames, occluded: bool, backdrop: bool) -> dict:
    cfg = MappingConfig()
    cfg.fill_holes_occluded = occluded
    if not backdrop:
        cfg.fill_holes_beyond_range = 0.0
    ms, holes, filled, err = [], 0, 0, []
    for depth, K, clean in frames:
        t = time.perf_counter()
        out, mask = mapping_depth(depth, K, cfg)
        ms.append(1000 * (time.perf_counter() - t))
        holes += int((~(np.isfinite(depth) & (depth > 0) & (depth < cfg.max_depth))).sum())
        filled += int(mask.sum())
        if clean is not None and mask.any():
            ok = mask & (clean > 0)
            err.append(np.abs(out[ok] - clean[ok]))
    e = np.concatenate(err) if err else np.zeros(0)
    return {"ms50": float(np.median(ms)), "ms90": float(np.percentile(ms, 90)),
            "filled": filled / max(holes, 1),
            "err50": float(np.median(e)) * 100 if e.size else float("nan"),
            "err90": float(np.percentile(e, 90)) * 100 if e.size else float("nan")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="900,901,902", help="synthetic rooms (noise-free depth is the truth)")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--every", type=int, default=10, help="every N-th frame")
    ap.add_argument("--dataset", default="", help="a real sequence, KIND:PATH (no depth truth)")
    ap.add_argument("--real-frames", type=int, default=500)
    ap.add_argument("--real-start", type=int, default=0, help="first frame of the real sequence")
    ap.add_argument("--per-frame", action="store_true",
                    help="also print each frame's hole and filled pixels and the filled depth (default fill)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    args = ap.parse_args()
    print(f"device: host CPU ({platform.processor() or platform.machine()}), numpy and OpenCV; "
          f"{args.width}x{args.height}, every {args.every}th frame")
    print(f"{'data':<20} {'fill':<14} {'holes filled':>12} {'err med cm':>10} {'err p90 cm':>10} "
          f"{'ms med':>7} {'ms p90':>7}")
    for name, frames in frames_of(args):
        for occluded, backdrop, label in ((False, False, "one plane"), (True, False, "+ occluded"),
                                          (True, True, "+ backdrop")):
            r = measure(frames, occluded, backdrop)
            print(f"{name:<20} {label:<14} {r['filled']:>11.0%} {r['err50']:>10.1f} {r['err90']:>10.1f} "
                  f"{r['ms50']:>7.1f} {r['ms90']:>7.1f}")
        if args.per_frame:
            per_frame(name, frames, args)


def per_frame(name, frames, args):
    """One line per frame: a fill that comes and goes between neighbouring frames decides
    what a keyframe maps (a keyframe one frame later can miss a quarter of the image)."""
    cfg = MappingConfig()
    first = args.real_start if not name.startswith("synthetic") else 0
    print(f"{'data':<20} {'frame':>6} {'holes px':>9} {'filled px':>9} {'filled depth med m':>18}")
    for k, (depth, K, _) in enumerate(frames):
        out, mask = mapping_depth(depth, K, cfg)
        holes = int((~(np.isfinite(depth) & (depth > 0) & (depth < cfg.max_depth))).sum())
        med = float(np.median(out[mask])) if mask.any() else float("nan")
        print(f"{name:<20} {first + k * args.every:>6d} {holes:>9d} {int(mask.sum()):>9d} {med:>18.2f}")


if __name__ == "__main__":
    main()
