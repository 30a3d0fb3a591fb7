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
from gs4_ros.core.initializer import block_gaussians  # noqa: E402
from gs4_ros.core.nets import load_networks  # noqa: E402
from gs4_ros.core.nets.segmenter import load_segmenter  # noqa: E402
from gs4_ros.core.nets.semantic_tta import augmented_log_probs  # noqa: E402
from gs4_ros.core.nets.weights import DEFAULT_WEIGHTS  # noqa: E402
from gs4_ros.eval.image_metrics import ConfusionMatrix  # noqa: E402
from gs4_ros.io.synthetic.seeds import seed_list  # noqa: E402
from gs4_ros.train.data import _seed_tensors  # noqa: E402


def tta_spec(text: str):
    """'mirror,0.75,1.25' -> (mirror, scales): the test-time passes the pipeline's final
    semantic pass runs (network.final_semantics_mirror / _scales)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    return "mirror" in items, [float(t) for t in items if t != "mirror"]


def token_targets(frames, cfg):
    """Each frame batch's token labels (the block's majority label) and validity, from the
    v0 blocks every model's tokens are (the predictor's priors, the segmenter's pooling)."""
    for d in frames:
        rgb = d["rgb"].float() / 255.0
        bgs = [block_gaussians(d["depth"][b], rgb[b], d["K"], cfg, d["labels"][b], stride=cfg.stride)
               for b in range(rgb.shape[0])]
        d["tok_labels"] = torch.stack([g.labels for g in bgs])
        d["tok_valid"] = torch.stack([g.valid for g in bgs])


def confusion(model, frames, cfg, num_classes: int, tta=None) -> ConfusionMatrix:
    """The model's argmax per valid, labelled token against the token's majority label;
    with tta (mirror, scales), of the log-probabilities averaged over those passes
    (nets/semantic_tta, as the final semantic pass computes them). `model` is the
    predictor (its semantic head) or the keyframe segmenter."""
    cm = ConfusionMatrix(num_classes)
    for d in frames:
        rgb = d["rgb"].float() / 255.0
        B = rgb.shape[0]
        with torch.no_grad():
            if tta is None:
                lp = model.semantic_log_probs(rgb, d["depth"], d["K"][None].expand(B, 3, 3), cfg, cfg.stride)
                score = lp["log_probs"].flatten(2).transpose(1, 2)
            else:
                score = torch.stack([augmented_log_probs(model, rgb[b], d["depth"][b], d["K"], cfg, tta[1], tta[0])
                                     ["log_probs"] for b in range(B)])
        valid = d["tok_valid"].reshape(-1)
        guess = score.reshape(-1, num_classes).argmax(-1)
        cm.add(guess[valid].cpu().numpy(), d["tok_labels"].reshape(-1)[valid].cpu().numpy())
    return cm


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
    ap.add_argument("--batch", type=int, default=5, help="frames per forward pass")
    ap.add_argument("--fill-holes", action="store_true", help="input depth with holes filled as mapping fills them")
    ap.add_argument("--tta", default="", help="also a row per weights file with test-time passes averaged in, "
                    "e.g. mirror,0.75,1.25 (the final semantic pass's default)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    seeds = seed_list(args.seeds)
    if any(s >= 1000 for s in seeds):
        sys.exit("training seeds start at 1000: evaluate on seeds below it")
    frames = []
    for s in seeds:
        d = _seed_tensors(s, args.frames, args.step, args.width, args.height, dev, args.fill_holes)
        for i in range(0, args.frames, args.batch):
            frames.append({"rgb": d["rgb"][i:i + args.batch], "depth": d["depth"][i:i + args.batch],
                           "labels": d["labels"][i:i + args.batch], "K": d["K"]})
    cfg = MappingConfig()
    token_targets(frames, cfg)
    names = list(SCANNET20_CLASSES)
    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    print(f"data: synthetic seeds {args.seeds}, {args.frames} frames each (every {args.step}th), "
          f"{args.width}x{args.height}, stride-8 tokens; device: {dev_name}")
    print(f"{'weights':<40s} {'token acc':>9s} {'mIoU':>6s} {'classes':>7s}  worst classes (IoU, mostly taken for)")
    for w in args.weights:
        model = load_model(w, dev)
        for tta in [None] + ([tta_spec(args.tta)] if args.tta else []):
            cm = confusion(model, frames, cfg, model.num_classes, tta)
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
