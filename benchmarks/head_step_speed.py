"""Cost of one uncached semantic-head training step (gs4 train fit --semantic-only without
--sem-cache: drawn, mirrored and jittered frames through the frozen backbone and the
head, backward, optimiser step) and of its geometric prior, the v0 blocks of every frame.

    python benchmarks/head_step_speed.py [--device cuda] [--batch 32] [--weights PATH]

Why: on an H100 the uncached head stage made 3.6 steps a second at 32 frames
(thirty-fourth session, t31b variant G), where the cached one made about 40 (11527 in
its 5 minutes, caching included); the prior was built frame by frame, a few hundred small
operations each. The table puts the prior of the whole batch in one pass (block_gaussians
on a GPU) beside the same frames one at a time (the peer: how it ran before, and how it
runs on a CPU), and the whole step beside the step as it ran before (the whole model's
forward, its prior frame by frame). The last column counts the top-level tensor
operations of one call: on a GPU each is a kernel launch or more, which is what a step of
many small operations waits on. The rows after those split the step (thirty-fifth
session: 53 ms on an H100): drawing the frames, the frozen backbone's pass (and the same
pass under bf16 autocast, on a GPU: a candidate for the stage, not yet used), and the
head's forward and backward on those inputs. Pass the weights whose head the stage trains
(--weights): the shipped file holds one, as the recipe's stage trains (the file before it
three, an ensemble, which a step trains together).
"""
from __future__ import annotations

import argparse
import os
import sys

from unittest import mock

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gs4_ros.core.config import SCANNET20_CLASSES, MappingConfig  # noqa: E402
from gs4_ros.core.initializer import blocks_frame_by_frame, blocks_in_one_pass  # noqa: E402
from gs4_ros.core.nets import DEFAULT_WEIGHTS, GaussianPredictor, load_networks  # noqa: E402
from gs4_ros.core.nets import predictor  # noqa: E402  (its block_gaussians, swapped for the peer)
from gs4_ros.core.nets.backbone import encode_rgbd  # noqa: E402
from gs4_ros.train.data import Sampler, synthetic_sequences  # noqa: E402
from gs4_ros.train.fit import (FitOptions, _token_rows, drawn_frames, semantic_parameters,  # noqa: E402
                              semantic_step)
from gs4_ros.train.losses import token_ce  # noqa: E402
from bench_common import timed_ms  # noqa: E402  (this script's folder)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--batch", type=int, default=32, help="frames a step (the recipe's --sem-batch)")
    ap.add_argument("--rooms", type=int, default=4, help="synthetic rooms (seeds 2000...) the frames come from")
    ap.add_argument("--reps", type=int, default=0, help="timed repetitions (default 20 on CUDA, 3 on CPU)")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    reps = a.reps or (20 if dev.type == "cuda" else 3)
    if os.path.isfile(a.weights):
        pred, _, _ = load_networks(a.weights, dev)
        src = a.weights
    else:
        pred, src = GaussianPredictor(len(SCANNET20_CLASSES)).to(dev), "untrained (no weights file)"
    cfg = MappingConfig()
    seqs = synthetic_sequences(list(range(2000, 2000 + a.rooms)), 3, 15, 640, 480, dev, targets=False)
    sampler = Sampler(seqs, [], 0.0, 1, seed=0)
    rgb, depth, labels, Ks = drawn_frames(sampler, a.batch)
    opts = FitOptions(semantic_only=True, sem_batch=a.batch, strides=[cfg.stride])
    params = semantic_parameters(pred)
    keep = {id(p) for p in params}
    for p in pred.parameters():
        p.requires_grad_(id(p) in keep)
    pred.train()
    opt = torch.optim.AdamW(params, lr=1e-6)

    def step():
        loss = semantic_step(pred, sampler, cfg, opts)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def step_before():
        """The step as it ran before the thirty-fourth session: the whole model's forward
        (Gaussian heads and Gaussians too) with its prior built frame by frame."""
        r, d, lab, k = drawn_frames(sampler, a.batch)
        with mock.patch.object(predictor, "block_gaussians", blocks_frame_by_frame):
            tok = pred(r, d, k, cfg, labels=lab, stride=cfg.stride)
        loss = token_ce(tok.sem_logits, tok.labels, tok.valid, pred.num_classes, opts.class_power)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    got = pred.semantic_inputs(rgb, depth, Ks, cfg, labels, [cfg.stride])

    def head_only():
        t = got[cfg.stride]
        logits = _token_rows(pred.semantic_logits(t["feats"], got["coarse"], t["geo"], cfg.stride))
        loss = token_ce(logits, t["labels"], t["valid"], pred.num_classes, opts.class_power)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def backbone_bf16():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pred.backbone(encode_rgbd(rgb, depth))

    rows = {
        "prior, one pass (block_gaussians on a GPU)": lambda: blocks_in_one_pass(depth, rgb, Ks, cfg, labels),
        "prior, frame by frame (the peer)": lambda: blocks_frame_by_frame(depth, rgb, Ks, cfg, labels),
        "whole step (draw, head inputs, backward, AdamW)": step,
        "whole step as before (whole model, prior frame by frame)": step_before,
        "  draw the frames (mirrored, jittered)": lambda: drawn_frames(sampler, a.batch),
        "  frozen backbone pass": lambda: pred.backbone(encode_rgbd(rgb, depth)),
        "  head forward, backward, AdamW (inputs kept)": head_only,
    }
    if dev.type == "cuda":
        rows["  frozen backbone pass, bf16 autocast"] = backbone_bf16
    no_grad = ("prior", "  draw", "  frozen")
    with torch.no_grad():
        a1, b1 = rows["prior, one pass (block_gaussians on a GPU)"](), rows["prior, frame by frame (the peer)"]()
    same = all(torch.equal(x, y) for x, y in zip((a1.means, a1.depth, a1.valid), (b1.means, b1.depth, b1.valid)))
    for fn in rows.values():    # warm-up (kernels, allocator)
        fn()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"head_step_speed: {a.batch} frames 640x480, stride {cfg.stride}, on {name}; weights: {src}")
    print(f"  the two priors agree to the bit: {same}")
    print("| part | median ms | p90 ms | steps or calls / s | tensor ops a call |")
    print("|---|---|---|---|---|")
    for k, fn in rows.items():
        with torch.no_grad() if k.startswith(no_grad) else torch.enable_grad():
            t = timed_ms(fn, dev, reps)
            with profile(activities=[ProfilerActivity.CPU]) as prof:   # each op is a kernel launch or more on a GPU
                fn()
        ops = sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)
        med = float(np.median(t))
        print(f"| {k} | {med:.1f} | {float(np.percentile(t, 90)):.1f} | {1000 / med:.1f} | {ops} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
