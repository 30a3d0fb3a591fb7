#!/usr/bin/env python3
"""How much class information each networks file's frozen backbone carries: a linear
classifier fitted on its stride-8 tokens (with the stride-32 level beside them), scored
by token mIoU on the validation rooms, next to the file's own semantic head.

The recipe's head stage starts from whatever backbone the rendering stages left; when its
head falls short of the shipped one, this separates "the backbone does not carry the
classes yet" (the probe falls short too) from "the head stage trains badly on a good
backbone" (the probe matches). The probe is the same for every file (same rooms, same
tokens, same fit), so only the backbone differs.

    python benchmarks/semantic_probe.py --weights gs4_ros/weights/gs4_nets.pt RUN/blend/gs4_nets.pt

CPU: about a minute per file after the rooms are made (200 training rooms x 3 frames,
validation rooms 960-975 x 4 frames, as `gs4 train fit --val-seeds` scores them).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs4_ros.core.config import MappingConfig  # noqa: E402
from gs4_ros.core.nets import load_networks  # noqa: E402
from gs4_ros.eval.image_metrics import ConfusionMatrix  # noqa: E402
from gs4_ros.io.synthetic.seeds import seed_list  # noqa: E402
from gs4_ros.train.data import synthetic_sequences  # noqa: E402
from gs4_ros.train.fit import VAL_FRAMES, VAL_STEP, SemanticCache  # noqa: E402

STRIDE = 8


def tokens(pred, seqs, mcfg, k):
    """([N, C] features, [N] labels) of every valid labelled stride-8 token of `seqs`:
    the stride-8 level and the stride-32 level it lies in, from one frozen pass."""
    cache = SemanticCache(pred, seqs, mcfg, [STRIDE])
    d = cache.data
    f8 = d[(STRIDE, "feats")].float()                                   # [n, C8, h, w]
    c32 = F.interpolate(d["coarse"].float(), scale_factor=32 // STRIDE, mode="nearest")
    c32 = c32[:, :, :f8.shape[2], :f8.shape[3]]
    x = torch.cat([f8, c32], 1).flatten(2).transpose(1, 2).reshape(-1, f8.shape[1] + c32.shape[1])
    y = d[(STRIDE, "labels")].reshape(-1).long()
    ok = d[(STRIDE, "valid")].reshape(-1) & (y >= 0) & (y < k)      # 255: no label
    return x[ok], y[ok], cache


def fit_probe(x, y, k, epochs, seed=0):
    """Multinomial logistic regression on standardised features (full batch, Adam)."""
    g = torch.Generator().manual_seed(seed)
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
    lin = torch.nn.Linear(x.shape[1], k)
    with torch.no_grad():
        lin.weight.normal_(0, 0.01, generator=g)
        lin.bias.zero_()
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-5)
    xs = (x - mu) / sd
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(lin(xs), y).backward()
        opt.step()
    return lambda z: lin((z - mu) / sd)


def miou(pred_labels, y, k):
    cm = ConfusionMatrix(k)
    cm.add(pred_labels.numpy(), y.numpy())
    return cm.miou()["miou"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", required=True)
    ap.add_argument("--train-seeds", default="20000-20199", help="rooms the probe is fitted on (training seeds)")
    ap.add_argument("--val-seeds", default="960-975", help="rooms it is scored on (the head stages' validation)")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--step", type=int, default=15)
    ap.add_argument("--max-tokens", type=int, default=150000, help="training tokens kept (random)")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    mcfg = MappingConfig()
    t0 = time.time()
    train = synthetic_sequences(seed_list(args.train_seeds), args.frames, args.step, 640, 480, dev,
                                workers=args.workers, fill_holes=True, targets=False)
    val = synthetic_sequences(seed_list(args.val_seeds), VAL_FRAMES, VAL_STEP, 640, 480, dev,
                              workers=args.workers, fill_holes=True, targets=False)
    print(f"rooms: {len(train)} training x {args.frames} frames, {len(val)} validation x {VAL_FRAMES} "
          f"({time.time() - t0:.0f} s)", flush=True)
    rows = []
    for w in args.weights:
        t1 = time.time()
        pred = load_networks(w, dev)[0].eval()
        k = pred.num_classes
        with torch.no_grad():
            xt, yt, _ = tokens(pred, train, mcfg, k)
            xv, yv, vcache = tokens(pred, val, mcfg, k)
            head = vcache.score(pred, STRIDE)
        keep = torch.randperm(len(yt), generator=torch.Generator().manual_seed(0))[:args.max_tokens]
        probe = fit_probe(xt[keep].to(dev), yt[keep].to(dev), k, args.epochs)
        with torch.no_grad():
            p_val = probe(xv.to(dev)).argmax(1).cpu()
            p_tr = probe(xt[keep].to(dev)).argmax(1).cpu()
        rows.append((w, xt.shape[1], len(keep), miou(p_tr, yt[keep], k), miou(p_val, yv, k), head,
                     time.time() - t1))
        print(f"{w}: done in {rows[-1][-1]:.0f} s", flush=True)
    device = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({platform.processor() or 'x86_64'})"
    print(f"\nLinear probe on frozen stride-8 (+ stride-32) tokens; training rooms {args.train_seeds}, "
          f"validation rooms {args.val_seeds}; token mIoU over the classes present; {device}")
    print("| weights | feature dims | training tokens | probe, training | probe, validation | own head, validation |")
    print("|---|---|---|---|---|---|")
    for w, c, n, tr, va, hd, _ in rows:
        print(f"| {w} | {c} | {n} | {100 * tr:.1f} | {100 * va:.1f} | {100 * hd:.1f} |")


if __name__ == "__main__":
    main()
