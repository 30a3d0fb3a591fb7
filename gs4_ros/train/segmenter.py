"""`gs4 train segmenter`: train the keyframe segmenter (core/nets/segmenter) on synthetic rooms.

One time-boxed chunk: worker processes keep rendering fresh rooms (RoomStream) while the
GPU trains on those already made, so a ten-minute call spends its minutes on both rather
than on data first and training after. Every step draws `batch` frames from all rooms so
far, mirrored and jittered as the semantic head's frames are (fit.augmented_frames), and
rescales the batch by a random factor (objects are seen at every distance, and
`network.final_semantics_scales` can add rescaled passes). The loss is the class-weighted
cross-entropy of the logits upsampled to full resolution against the label image.
Validation rooms (below 1000) are scored at the mapping stride (eval/token_miou, as
benchmarks/semantic_tokens.py scores tokens), and the chunk keeps the best-scoring
network it saw.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..core.config import SCANNET20_CLASSES, MappingConfig
from ..core.nets.segmenter import KeyframeSegmenter, load_segmenter, save_segmenter
from ..core.nets.semantic_tta import rescaled
from ..eval.token_miou import TokenScorer
from .data import RoomStream, synthetic_sequences
from .fit import TRAIN_SEED_BASE, VAL_FRAMES, VAL_STEP, _device, _lr, augmented_frames
from .losses import token_ce

log = logging.getLogger(__name__)


@dataclass
class SegmenterOptions:
    out: str = ""
    init_weights: str = ""           # continue from a segmenter file (a later chunk)
    device: str = "auto"
    minutes: float = 9.0             # wall budget of the chunk, data included
    min_rooms: int = 64              # rooms made before the first step
    steps: int = 0                   # 0: fill the time budget
    seeds: int = 10000               # rooms to ask the workers for (fresh seeds from first_seed)
    first_seed: int = 20000          # >= 1000; away from the seeds gs4 train fit chunks drew
    frames: int = 3
    step: int = 15
    width: int = 640
    height: int = 480
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    scale_range: List[float] = field(default_factory=lambda: [0.7, 1.3])
    class_power: float = 0.5
    workers: int = 2
    fill_holes: bool = True          # input depth with holes filled as mapping fills them
    val_seeds: List[int] = field(default_factory=list)
    val_every: int = 500
    widths: List[int] = field(default_factory=lambda: [32, 64, 128, 192, 256])
    decoder: int = 96
    seed: int = 0
    command: str = ""


def segmenter_loss(model, rgb, depth, labels, Ks, num_classes: int, class_power: float) -> Optional[torch.Tensor]:
    """Class-weighted CE (losses.token_ce's weighting) of the stride-4 logits, upsampled
    bilinearly to the label image, over its labelled pixels."""
    logits = model.cell_logits(rgb, depth.float(), Ks)
    up = F.interpolate(logits.float(), labels.shape[-2:], mode="bilinear", align_corners=False)
    flat = up.permute(0, 2, 3, 1).reshape(labels.shape[0], -1, num_classes)
    return token_ce(flat, labels.reshape(labels.shape[0], -1), torch.ones_like(labels, dtype=torch.bool).flatten(1),
                    num_classes, class_power)


def _drawn_on(rooms, rng, n: int, dev):
    """(frames, indices) for fit.augmented_frames: n frames drawn at random from the rooms
    (kept on the host), copied to `dev` as stored (uint8 colour, half depth) so the
    augmentation runs there, not on the cores rendering rooms."""
    pick = [rooms[int(rng.integers(len(rooms)))] for _ in range(n)]
    idx = [int(rng.integers(len(q))) for q in pick]
    move = lambda q, i, f: getattr(q, f)[i:i + 1].to(dev, non_blocking=True)  # noqa: E731
    frames = [SimpleNamespace(rgb=move(q, i, "rgb"), depth=move(q, i, "depth"), labels=move(q, i, "labels"),
                              K=q.K.to(dev)) for q, i in zip(pick, idx)]
    return frames, [0] * n


def train_segmenter(opts: SegmenterOptions) -> dict:
    """Run one chunk; writes opts.out (with meta: the command, steps, rooms, losses and
    validation scores) and returns that meta."""
    if opts.first_seed < TRAIN_SEED_BASE:
        raise ValueError(f"training rooms start at {TRAIN_SEED_BASE}; --first-seed {opts.first_seed} is an evaluation seed")
    if any(v >= TRAIN_SEED_BASE for v in opts.val_seeds):
        raise ValueError(f"--val-seeds must stay below {TRAIN_SEED_BASE}, where training rooms start")
    if not opts.out:
        raise ValueError("--out: where to write the segmenter")
    t0 = time.time()
    dev = _device(opts.device)
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    K = len(SCANNET20_CLASSES)
    history: List[dict] = []
    if opts.init_weights:
        model, info = load_segmenter(opts.init_weights, dev)
        history = list(info["meta"].get("chunks", []))
    else:
        model = KeyframeSegmenter(K, opts.widths, opts.decoder).to(dev)
    model.train()
    cuda = dev.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    mcfg = MappingConfig()
    scorer = None
    if opts.val_seeds:
        vseq = synthetic_sequences(list(opts.val_seeds), VAL_FRAMES, VAL_STEP, opts.width, opts.height, "cpu",
                                   workers=opts.workers, fill_holes=opts.fill_holes, targets=False)
        for q in vseq:      # as the pipeline keeps keyframe depth for the final pass
            q.depth = q.depth.half()
        scorer = TokenScorer.from_sequences(vseq, mcfg, K)
    seeds = list(range(opts.first_seed, opts.first_seed + opts.seeds))
    stream = RoomStream(seeds, opts.frames, opts.step, opts.width, opts.height, "cpu", opts.workers,
                        opts.fill_holes, targets=False, half_depth=True)
    rooms = []
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    t_end = t0 + opts.minutes * 60
    scores: List[tuple] = []
    best = {"score": -1.0, "step": 0, "state": None}
    losses: List[float] = []
    n = 0

    def validate(step: int):
        if scorer is None:
            return
        m = scorer.score(model)
        scores.append((step, m))
        log.info("segmenter validation after %d steps: token mIoU %.4f", step, m)
        if m > best["score"]:
            best.update(score=m, step=step, state={k: v.detach().clone() for k, v in model.state_dict().items()})

    try:
        while len(rooms) < min(opts.min_rooms, len(seeds)) and stream.pending:
            rooms.extend(stream.poll(None))
        if not rooms:
            raise RuntimeError(f"segmenter: none of the {len(seeds)} synthetic rooms could be made (see the warnings)")
        t_train = time.time()
        log.info("segmenter: %d rooms after %.0f s, training", len(rooms), t_train - t0)
        if opts.init_weights:
            validate(0)
        while True:
            now = time.time()
            if (opts.steps and n >= opts.steps) or (not opts.steps and now >= t_end):
                break
            rooms.extend(stream.poll(0))
            frac = n / opts.steps if opts.steps else (now - t_train) / max(t_end - t_train, 1e-6)
            for g in opt.param_groups:      # a short counted chunk warms up over a tenth of it
                g["lr"] = _lr(opts.lr, frac, n, min(200, max(opts.steps // 10, 1)) if opts.steps else 200, floor=0.0)
            rgb, depth, labels, Ks = augmented_frames(rng, *_drawn_on(rooms, rng, opts.batch, dev))
            rgb, depth, Ks, labels = rescaled(rgb, depth, Ks, float(rng.uniform(*opts.scale_range)), 32, labels)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                loss = segmenter_loss(model, rgb, depth, labels, Ks, K, opts.class_power)
            n += 1
            if loss is None or not torch.isfinite(loss):
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            losses.append(float(loss.detach()))
            if n % 100 == 0:
                log.info("segmenter step %d: loss %.4f (mean of the last 100), %d rooms, %.0f s", n,
                         float(np.mean(losses[-100:])), len(rooms), time.time() - t0)
            if scorer is not None and n % opts.val_every == 0:
                validate(n)
    finally:
        made, failed = stream.made, stream.failed
        stream.close()
    if not scores or scores[-1][0] != n:
        validate(n)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    chunk = {"command": opts.command, "options": asdict(opts), "steps": n, "kept_step": best["step"] if scorer else n,
             "rooms": made, "rooms_failed": failed, "frames": sum(len(q) for q in rooms),
             "seconds": round(time.time() - t0, 1), "train_seconds": round(time.time() - t_train, 1),
             "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
             # means over the first and the last tenth of the steps (at most 50 and 100)
             "loss_first": float(np.mean(losses[:min(50, max(len(losses) // 10, 1))])) if losses else None,
             "loss_final": float(np.mean(losses[-min(100, max(len(losses) // 10, 1)):])) if losses else None,
             "validation": [[s, round(m, 4)] for s, m in scores]}
    meta = {"chunks": history + [chunk]}
    save_segmenter(opts.out, model.to(memory_format=torch.contiguous_format), SCANNET20_CLASSES, meta)
    Path(opts.out).with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")   # the record, readable
    return meta
