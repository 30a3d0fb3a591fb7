#!/usr/bin/env python3
"""Open-vocabulary queries on held-out views of synthetic rooms: for each class in a
held-out frame's labels, a query by a synonym (not the class name: "couch" for sofa,
"fridge" for refrigerator) is rendered as relevance from the frame's tracked pose, and
relevance >= the encoder's threshold is scored against the class's pixels (IoU). The peer
in the same run is the closed-set rendering of the same map (argmax of the fused class
probabilities), which the query cannot beat with the class-space encoder: it shows what
the bank's region averaging and quantisation cost or gain. Also the bank's size, its
update time per keyframe and what it stores against per-Gaussian class vectors.

    python benchmarks/open_vocab.py --seeds 900,901,902 --frames 40 --width 640 --height 480
    python benchmarks/open_vocab.py ... --set pipeline.initializer=network   # the semantic head
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.core.config import load_config, parse_overrides  # noqa: E402
from gs4_ros.core.open_vocab import UnknownQuery  # noqa: E402
from gs4_ros.core.open_vocab.lexicon import BUILTIN  # noqa: E402
from gs4_ros.core.pipeline import SLAMPipeline  # noqa: E402
from gs4_ros.io.datasets import open_dataset  # noqa: E402
from gs4_ros.io.synthetic.seeds import seed_list  # noqa: E402


def synonym(cls: str) -> str:
    """The first single-class lexicon word for `cls` other than its name, else the name."""
    for word, classes in BUILTIN.items():
        if classes == [cls]:
            return word
    return cls


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def run_seed(seed: int, args, overrides):
    cfg = load_config(args.config, overrides)
    cfg.device = args.device
    pipe = SLAMPipeline(cfg)
    names = cfg.class_names
    ds = open_dataset(f"synthetic:seed={seed},frames={args.frames}", width=args.width, height=args.height)
    held, vocab_ms, kf = [], [], 0
    for k in range(len(ds)):
        f = ds[k]
        is_held = k > 0 and k % args.holdout_every == args.holdout_every // 2
        r = pipe.process(f, allow_mapping=not is_held)
        if is_held:
            held.append((f, r.pose))
        elif r.keyframe:
            kf += 1
            vocab_ms.append(r.timings_ms.get("vocab", float("nan")))
    q_iou, c_iou, rows = {}, {}, []
    for f, pose in held:
        closed = pipe.render(pose, semantics=True)["labels"]
        for c in np.unique(f.labels[f.labels < len(names)]):
            gt = f.labels == c
            if gt.sum() < args.min_pixels:
                continue
            word = synonym(names[c])
            try:
                res = pipe.query(word)
            except UnknownQuery:
                continue
            rel = pipe.render_relevance(res, pose)
            q_iou.setdefault(names[c], []).append(iou(gt, np.nan_to_num(rel) >= res.threshold))
            c_iou.setdefault(names[c], []).append(iou(gt, closed == c))
            rows.append(word)
    gm = pipe.map
    group = {}
    for word in args.groups.split(","):
        res = pipe.query(word)
        cls = [names.index(c) for c in BUILTIN[word] if c in names]
        vals = []
        for f, pose in held:
            gt = np.isin(f.labels, cls)
            if gt.sum() >= args.min_pixels:
                vals.append(iou(gt, np.nan_to_num(pipe.render_relevance(res, pose)) >= res.threshold))
        if vals:
            group[word] = float(np.mean(vals))
    # What a standing query adds to the node's outputs, on this map: the query itself, its
    # objects, and the rendered views with the relevance channel against without.
    from bench_common import timed_ms

    dev = pipe.device
    pose = held[-1][1]
    res = pipe.query("walls")
    t_query = float(np.median(timed_ms(lambda: pipe.query("walls"), dev, 5)))
    t_obj = float(np.median(timed_ms(lambda: res.instances(gm), dev, 5)))
    t_view = float(np.median(timed_ms(lambda: pipe.render(pose, semantics=True), dev, 3)))
    t_both = float(np.median(timed_ms(lambda: pipe.render(pose, semantics=True, query=res), dev, 3)))
    stored = gm.vocab.emb.nbytes + gm.vocab.count.nbytes + 4 * len(gm)
    return {"seed": seed, "query": {k: float(np.mean(v)) for k, v in q_iou.items()},
            "closed": {k: float(np.mean(v)) for k, v in c_iou.items()}, "group": group,
            "entries": len(gm.vocab), "gaussians": len(gm), "keyframes": kf,
            "vocab_ms": float(np.nanmedian(vocab_ms)) if vocab_ms else float("nan"),
            "stored_kb": stored / 1024, "per_gaussian_kb": 4 * gm.num_classes * len(gm) / 1024,
            "held": len(held), "device": str(pipe.device),
            "ms": {"query": t_query, "objects": t_obj, "views": t_view, "views+relevance": t_both}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="900,901,902", help="held-out synthetic seeds (< 1000)")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="pipeline override")
    ap.add_argument("--holdout-every", type=int, default=10, help="frames k %% N == N // 2 are held out")
    ap.add_argument("--min-pixels", type=int, default=500, help="classes smaller in a frame are not scored")
    ap.add_argument("--groups", default="furniture,seating,structure", help="group words also scored")
    args = ap.parse_args()
    overrides = {k[len("pipeline."):] if k.startswith("pipeline.") else k: v for k, v in parse_overrides(args.set).items()}
    seeds = seed_list(args.seeds)
    results = [run_seed(s, args, overrides) for s in seeds]
    dev = results[0]["device"]
    dev_name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else (platform.processor() or "cpu")
    init = overrides.get("initializer", "geometric")
    print(f"data: synthetic seeds {args.seeds}, {args.frames} frames at {args.width}x{args.height}, every "
          f"{args.holdout_every}th frame held out; initializer {init}; device {dev_name}")
    print(f"{'seed':>5s} {'query mIoU':>10s} {'closed-set mIoU (peer)':>22s} {'classes':>7s} "
          f"{'entries':>7s} {'Gaussians':>9s} {'bank ms/kf':>10s} {'bank+ids KB':>11s} {'K floats KB':>11s}  groups")
    for r in results:
        q = np.mean(list(r["query"].values())) if r["query"] else float("nan")
        c = np.mean(list(r["closed"].values())) if r["closed"] else float("nan")
        g = ", ".join(f"{k} {v:.2f}" for k, v in r["group"].items())
        print(f"{r['seed']:>5d} {100 * q:>9.1f}% {100 * c:>21.1f}% {len(r['query']):>7d} {r['entries']:>7d} "
              f"{r['gaussians']:>9d} {r['vocab_ms']:>10.1f} {r['stored_kb']:>11.1f} {r['per_gaussian_kb']:>11.1f}  {g}")
    print("standing-query cost per output (median ms, 'walls'): "
          + "; ".join(f"seed {r['seed']}: query {r['ms']['query']:.1f}, objects {r['ms']['objects']:.1f}, views "
                      f"{r['ms']['views']:.0f} -> {r['ms']['views+relevance']:.0f} with relevance" for r in results))
    for r in results:
        worst = sorted(r["query"], key=r["query"].get)[:3]
        print(f"  seed {r['seed']}: " + ", ".join(
            f"{synonym(k)!r}->{k} {r['query'][k]:.2f} (closed {r['closed'][k]:.2f})" for k in worst))


if __name__ == "__main__":
    main()
