#!/usr/bin/env python3
r"""Run the pipeline on one sequence under several configuration variants and print one
table (ATE, RPE, PSNR, depth L1, Gaussians, FPS) so design choices are compared in the
same run on the same device.

    python benchmarks/sweep.py --dataset 7scenes:../shared/data/7scenes_redkitchen_dev \
        --variant base: --variant fuse:mapping.fuse_max_weight=20 --out out/sweep

A variant is NAME:KEY=VALUE[,KEY=VALUE...] (config keys as for `gs4 run --set`); the key
`config` names a configuration file for that variant alone (instead of --config), so a
peer on the defaults and an overlay share one table. #3's real-frames check, v0 against
the networks with config/map_quality.yaml:

    python benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 \
        --dataset 7scenes:../shared/data/7scenes_redkitchen_dev --frames 0:500 --variant v0: \
        --variant net-mq:config=config/map_quality.yaml,initializer=network

With --holdout-every N every N-th frame is tracked but never mapped (the ablation's
novel-view protocol) and its PSNR is reported apart; with several datasets a last table
gives each variant's mean over them (held-out synthetic rooms, say), and the mIoU of the
confusion counts pooled over them with each class's pooled IoU:

    python benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 \
        $(for s in $(seq 900 919); do echo --dataset synthetic:seed=$s,frames=40; done) \
        --variant net:initializer=network --variant net-blend:initializer=network,backend.joint_blend=true
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.core.config import load_config  # noqa: E402
from gs4_ros.core.pipeline import SLAMPipeline, resolve_device  # noqa: E402
from gs4_ros.eval.image_metrics import classes_lowest_first, pooled_miou  # noqa: E402
from gs4_ros.eval.runner import evaluate, run_frames  # noqa: E402
from gs4_ros.io.datasets import open_dataset  # noqa: E402
from bench_common import add_sequence_args  # noqa: E402  (this script's folder)


def parse_variant(text):
    """NAME:KEY=VALUE,... (a list value keeps its commas inside brackets: KEY=[a,b])."""
    name, _, rest = text.partition(":")
    sets = {}
    for item in filter(None, re.split(r",(?![^\[]*\])", rest)):
        k, v = item.split("=", 1)
        sets[k] = v
    return name, sets


def _backend_note(m):
    """Joint runs, the final refinement's and the final semantic pass's time: the
    overlays' cost beside their gain."""
    b, fs = m.get("backend") or {}, m.get("final_semantics")
    note = ""
    if b:
        jo, fr = b.get("joint_optimization", {}), b.get("final_refine", {})
        note = f"  joint {jo.get('count', 0)} x {jo.get('mean_ms', 0.0):.1f} ms"
        if fr.get("count"):
            note += f"  refine {fr['total_ms'] / 1000:.1f} s"
    if fs:
        note += f"  final semantics {fs['keyframes']} kf {fs['ms']:.0f} ms"
    return note


def _pooled_line(rows):
    """Each class's pooled IoU, lowest first."""
    s = pooled_miou(rows)
    return "  pooled IoU %: " + ", ".join(f"{n} {100 * v:.0f}" for n, v in classes_lowest_first(s)) if s else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sequence_args(ap, repeat=True)
    ap.add_argument("--variant", action="append", default=[], help="NAME:KEY=VALUE,...")
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--holdout-every", type=int, default=0, help="N: every N-th frame tracked, never mapped")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = resolve_device(args.device)
    variants = [parse_variant(v) for v in (args.variant or ["base:"])]
    rows = []
    for spec in args.dataset:
        ds = open_dataset(spec, frames=args.frames, width=args.width, height=args.height, device=str(device))
        frames = [ds[i] for i in range(len(ds))]  # decode once, outside the timed runs
        for name, sets in variants:
            run_sets = dict(sets)
            cfg = load_config(run_sets.pop("config", args.config), run_sets)
            pipe = SLAMPipeline(cfg, device=str(device))
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            rec = run_frames(pipe, [f for f in frames], eval_every=args.eval_every, holdout_every=args.holdout_every)
            m = evaluate(pipe, rec)
            m.update({"variant": name, "sets": sets, "dataset": spec})
            rows.append(m)
            print(f"{spec[:40]:40s} {name:16s} ATE {m.get('ate_rmse_cm', float('nan')):6.2f} cm  "
                  f"PSNR {m.get('psnr', float('nan')):5.2f}  ho {m.get('heldout_psnr', float('nan')):5.2f}  "
                  f"mIoU {100 * m.get('miou', float('nan')):5.1f}  depthL1 {m.get('depth_l1_cm', float('nan')):5.2f} cm  "
                  f"G {m['num_gaussians']:7d}  {m['fps']:6.1f} fps  lost {m['frames_lost']}{_backend_note(m)}  stages "
                  + " ".join(f"{k}={v['mean']:.1f}" for k, v in m.get("stage_ms", {}).items()), flush=True)
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"\n{'dataset':40s} {'variant':16s} {'ATE cm':>7s} {'RPE cm':>7s} {'PSNR':>6s} {'SSIM':>6s} "
          f"{'dL1 cm':>7s} {'Gauss':>8s} {'FPS':>7s}   device: {dev}")
    for m in rows:
        print(f"{m['dataset'][:40]:40s} {m['variant']:16s} {m.get('ate_rmse_cm', float('nan')):7.2f} "
              f"{m.get('rpe_trans_rmse_cm', float('nan')):7.3f} {m.get('psnr', float('nan')):6.2f} "
              f"{m.get('ssim', float('nan')):6.3f} {m.get('depth_l1_cm', float('nan')):7.2f} "
              f"{m['num_gaussians']:8d} {m['fps']:7.1f}")
    if len(args.dataset) > 1:
        print(f"\nmean over {len(args.dataset)} datasets{' (held-out every %d)' % args.holdout_every if args.holdout_every else ''}"
              f"   device: {dev}")
        keys = [("ate_rmse_cm", "ATE cm", "7.2f"), ("psnr", "PSNR", "6.2f"), ("heldout_psnr", "ho PSNR", "7.2f"),
                ("ssim", "SSIM", "6.3f"), ("miou", "mIoU %", "6.1f"), ("num_gaussians", "Gauss", "8.0f"),
                ("fps", "FPS", "7.1f")]
        print(f"{'variant':16s} " + " ".join(f"{h:>{int(f.split('.')[0])}s}" for _, h, f in keys)
              + f" {'pooled mIoU':>10s}")
        for name, _ in variants:
            mine = [m for m in rows if m["variant"] == name]
            cells = []
            for k, _, f in keys:
                vals = [float(m[k]) * (100 if k == "miou" else 1) for m in mine
                        if m.get(k) is not None and float(m[k]) == float(m[k])]
                cells.append(format(sum(vals) / len(vals), f) if vals else format("-", f">{f.split('.')[0]}s"))
            pooled = pooled_miou(mine)
            cells.append(format(100 * pooled["miou"], "10.1f") if pooled else format("-", ">10s"))
            print(f"{name:16s} " + " ".join(cells))
        for name, _ in variants:
            line = _pooled_line([m for m in rows if m["variant"] == name])
            if line:
                print(f"{name:16s}{line}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        with open(Path(args.out) / "sweep.json", "w") as f:
            json.dump({"device": dev, "rows": rows}, f, indent=2, default=str)


if __name__ == "__main__":
    main()
