#!/usr/bin/env python3
"""The semantic head (or the keyframe segmenter) alone: token accuracy, mIoU over the classes present and the worst
confusions, on held-out synthetic seeds, for one or more weights files in the same run.

The map's mIoU (`gs4 train eval`) mixes the head with tracking and fusion; this looks at
what the head itself predicts for each stride-8 token against the token's majority label,
so a change of the head or of its training shows directly.

    python benchmarks/semantic_tokens.py --device cuda --weights gs4_ros/weights/gs4_nets.pt new.pt
    python benchmarks/semantic_tokens.py --weights gs4_ros/weights/gs4_segmenter.pt --tta mirror,0.75,1.25
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.core.config import SCANNET20_CLASSES, MappingConfig  # noqa: E402
from gs4_ros.core.nets import load_networks  # noqa: E402
from gs4_ros.core.nets.segmenter import load_segmenter  # noqa: E402
from gs4_ros.core.nets.weights import DEFAULT_WEIGHTS  # noqa: E402
from gs4_ros.eval.token_miou import TokenScorer  # noqa: E402
from gs4_ros.io.synthetic.seeds import seed_list  # noqa: E402
from gs4_ros.train.data import _seed_tensors  # noqa: E402


def tta_spec(text: str):
    """'mirror,0.75,1.25' -> (mirror, scales): the test-time passes the pipeline's final
    semantic pass runs (network.final_semantics_mirror / _scales)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    return "mirror" in items, [float(t) for t in items if t != "mirror"]


def load_model(path, dev):
    """The semantic part of a networks file (the predictor) or a keyframe segmenter file."""
    try:
        return load_segmenter(path, dev)[0]
    except ValueError:
        return load_networks(path, dev)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", default=[str(DEFAULT_WEIGHTS)])
    ap.add_argument("--seeds", default="900,901,902,903,904,905", help="held-out synthetic seeds (< 1000)")
    ap.add_argument("--frames", type=int, default=10, help="frames per seed")
    ap.add_argument("--step", type=int, default=4, help="every step-th frame of the camera path")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fill-holes", action="store_true", help="input depth with holes filled as mapping fills them")
    ap.add_argument("--tta", default="", help="also a row per weights file with test-time passes averaged in, "
                    "e.g. mirror,0.75,1.25 (the final semantic pass's default)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    seeds = seed_list(args.seeds)
    if any(s >= 1000 for s in seeds):
        sys.exit("training seeds start at 1000: evaluate on seeds below it")
    cfg = MappingConfig()
    frames = []
    for s in seeds:
        d = _seed_tensors(s, args.frames, args.step, args.width, args.height, dev, args.fill_holes)
        frames += [(d["rgb"][i], d["depth"][i], d["K"], d["labels"][i]) for i in range(len(d["rgb"]))]
    scorer = TokenScorer(frames, cfg, len(SCANNET20_CLASSES))
    names = list(SCANNET20_CLASSES)
    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    print(f"data: synthetic seeds {args.seeds}, {args.frames} frames each (every {args.step}th), "
          f"{args.width}x{args.height}, stride-8 tokens; device: {dev_name}")
    print(f"{'weights':<40s} {'token acc':>9s} {'mIoU':>6s} {'classes':>7s}  worst classes (IoU, mostly taken for)")
    for w in args.weights:
        model = load_model(w, dev)
        for tta in [None] + ([tta_spec(args.tta)] if args.tta else []):
            cm = scorer.confusion(model, tta)
            r = cm.miou()
            iou = r["per_class_iou"]
            worst = sorted(iou, key=iou.get)[:4]
            conf_off = cm.m - np.diag(np.diag(cm.m))
            desc = ", ".join(f"{names[k]} {iou[k]:.2f} ({names[int(conf_off[k].argmax())]})" for k in worst)
            suffix = f" +tta({args.tta})" if tta else ""
            label = str(w)[-(40 - len(suffix)):] + suffix   # the path's tail when it is long
            print(f"{label:<40s} {r['pixel_accuracy']:9.3f} {r['miou']:6.3f} {len(iou):7d}  {desc}")


if __name__ == "__main__":
    main()
