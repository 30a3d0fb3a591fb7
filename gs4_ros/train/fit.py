"""Train the Gaussian prediction model, then the refinement network, in time-boxed chunks.

One call = one chunk that fits a 10-minute GPU run: it makes its training data (fresh
synthetic seeds per chunk, so resumed chunks see new rooms), trains the predictor for
(1 - refine_fraction) of the budget and the refiner (predictor frozen) for the rest on
clips of 2, then 4, then 8 frames, checkpoints, and writes the weights, a JSON of the
figures and the model card. `--resume` continues from the checkpoint; a `--semantic-only`
chunk trains the semantic head alone (labels are what it lacks, and those steps cost a
fraction of a rendering step) and leaves every predicted Gaussian as it was.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..core.config import SCANNET20_CLASSES, MappingConfig, PipelineConfig
from ..core.covisibility import unmapped_blocks
from ..core.gaussian_map import GaussianMap, GaussianParams
from ..core.nets import GaussianPredictor, GaussianRefiner, save_networks
from ..core.nets.mapper import commit, refine_set, select_rows, visible_rows
from ..core.nets.predictor import SEMANTIC_PARTS
from ..core.render import blend_surface_colour, make_rasterizer, render_views
from ..eval.image_metrics import ConfusionMatrix
from .data import RoomFeed, Sampler, covisible_mask, real_sequence, synthetic_sequences
from .losses import LossWeights, render_losses, token_ce, token_kl, total
from .semantic_backbone import backbone_semantic_losses, frozen_teacher

log = logging.getLogger(__name__)
TRAIN_SEED_BASE = 1000   # training seeds are >= this; evaluation seeds stay below it
VAL_FRAMES, VAL_STEP = 4, 10   # frames of each validation room (--val-seeds), every VAL_STEP-th of its path
_VIEW_BLEND = PipelineConfig().surface_blend()   # --blend: the pipeline's default views


@dataclass
class FitOptions:
    out: str = "gs4_ros/weights/gs4_nets.pt"
    ckpt: str = "out/train/ckpt.pt"
    resume: bool = False
    init_weights: str = ""           # without resume: start from a weights file (+ its .json), fresh optimisers
    device: str = "auto"
    minutes: float = 5.0             # wall budget of this chunk (data + training)
    data_minutes: float = 1.0        # part of the budget for making synthetic data
    stream_data: bool = False        # train while the rooms are made (RoomFeed; needs workers >= 2)
    steps: int = 0                   # predictor steps this chunk (0: until the time budget)
    refine_steps: int = 0            # refiner steps this chunk (0: until the time budget)
    refine_fraction: float = 0.25    # share of the training time for the refiner
    width: int = 640
    height: int = 480
    seeds: int = 24                  # synthetic sequences to make at most
    frames: int = 24                 # frames per sequence (every `step`-th frame of the path)
    step: int = 4
    max_gap: int = 3                 # novel views up to this many kept frames away
    batch: int = 2
    lr: float = 1e-3
    real: str = ""                   # 7-Scenes folder for real frames (rendering losses only)
    real_frames: str = "0:250:2"     # the evaluation uses frames after these
    p_real: float = 0.2
    clip_lengths: List[int] = field(default_factory=lambda: [2, 4, 8])
    # Token stride per predictor step, drawn from this list: mostly 8 (the default), some
    # 16 and 32 so the selectable coarser strides are trained too.
    strides: List[int] = field(default_factory=lambda: [8, 8, 8, 8, 16, 32])
    feature_dim: int = 16
    width_channels: int = 64
    token_weight: float = 0.1        # weight of the per-token semantic cross-entropy
    sem_batch: int = 0               # extra labelled frames per step for the token loss alone
    class_power: float = 0.5         # per-token CE class weights: batch token count ** -class_power
    workers: int = 0                 # processes rendering synthetic data (0/1: in this process)
    new_refiner: bool = False        # with resume: keep the predictor, train a fresh refiner
    sem_context: bool = False        # give the predictor the semantic context branch (kept once added)
    sem_geometry: bool = False       # give the predictor the semantic geometry branch (kept once added)
    sem_attention: bool = False      # give the predictor the semantic attention branch (kept once added)
    semantic_only: bool = False      # train only the semantic head (backbone and the rest frozen)
    sem_cache: bool = False          # semantic-only: run the frozen part once per frame (SemanticCache)
    sem_cache_copies: int = 1        # sem-cache: each frame kept this many times, each augmented on its own
    sem_cache_share: float = 0.5     # sem-cache + stream-data: share of the stage that may cache new rooms
    sem_backbone: bool = False       # semantic-only: the backbone trains too, Gaussians held (semantic_backbone)
    distill_weight: float = 30.0     # sem-backbone: weight of holding the Gaussian and feature heads' outputs
    sem_ema: float = 0.0             # semantic-only: decay of the head's weight average scored and kept (0: off)
    sem_teacher: str = ""            # semantic-only: a segmenter file whose token probabilities the head also learns
    sem_teacher_weight: float = 1.0  # sem-teacher: weight of KL(teacher || head) beside the token cross-entropy
    sem_dropout: float = 0.0         # semantic-only: dropout on the features the head reads, while it trains
    sem_fresh: bool = False          # semantic-only + init-weights: the semantic head starts from scratch
    val_seeds: List[int] = field(default_factory=list)   # semantic-only: rooms (< TRAIN_SEED_BASE) that pick the head kept
    val_every: int = 250             # semantic steps between two validation scores
    fill_holes: bool = False         # network input depth with holes filled as mapping fills them
    blend: bool = False              # colour losses on the view blended over each surface, as the pipeline renders
    seed: int = 0
    command: str = ""


def _device(name):
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _params(means, log_scales, quats, opacity_logits, colors, sem_logits=None) -> GaussianParams:
    return GaussianParams(means=means, quats=quats / quats.norm(dim=-1, keepdim=True).clamp(min=1e-8),
                          scales=torch.exp(log_scales), opacities=torch.sigmoid(opacity_logits),
                          colors=colors.clamp(0, 1),
                          sem_probs=None if sem_logits is None else torch.softmax(sem_logits, -1))


def _targets(seq, views, src: int):
    """Float targets and co-visibility masks of the views (the source view: valid depth)."""
    rgb = seq.rgb_tgt[views].float() / 255.0
    dep = seq.depth_tgt[views]
    masks = []
    for j, v in enumerate(views):
        if v == src:
            masks.append(seq.depth[src] > 0)
        else:
            masks.append(covisible_mask(seq.depth[src], seq.poses[src], dep[j], seq.poses[v], seq.K))
    lab = None if seq.labels is None else seq.labels[views].long()
    return rgb, dep, torch.stack(masks), lab


def _token_ce(tok, num_classes: int, power: float) -> Optional[torch.Tensor]:
    return token_ce(tok.sem_logits, tok.labels, tok.valid, num_classes, power)


def semantic_batch(pred, sampler, mcfg, n: int, stride: int):
    """Tokens of n more labelled frames, mirrored left-right at random and with jittered
    exposure and white balance, for the token cross-entropy alone.

    Labels are what the semantic head lacks most: a step's rendering batch is a few frames
    (three renders each), while the backbone and the head cost little more per extra
    image. A mirror image is a valid room, but not a rigid view of this one, so these
    frames never enter the rendering losses."""
    rgb, depth, labels, Ks = drawn_frames(sampler, n)
    return pred(rgb, depth, Ks, mcfg, labels=labels, stride=stride)


def drawn_frames(sampler, n: int):
    """augmented_frames of n frames drawn at random from the sampler's synthetic rooms."""
    seqs = [sampler.syn[int(sampler.rng.integers(len(sampler.syn)))] for _ in range(n)]
    idx = [int(sampler.rng.integers(len(q))) for q in seqs]
    return augmented_frames(sampler.rng, seqs, idx)


def augmented_frames(rng, seqs, idx):
    """(rgb [n,H,W,3] in [0,1], depth, labels, Ks) of frame idx[j] of seqs[j], each
    mirrored left-right with probability 1/2 (labels, depth and the principal point too)
    and with its exposure and white balance jittered; as they are when rng is None."""
    n = len(seqs)
    rgb = torch.stack([q.rgb[i] for q, i in zip(seqs, idx)]).float() / 255.0
    depth = torch.stack([q.depth[i] for q, i in zip(seqs, idx)])
    labels = torch.stack([q.labels[i] for q, i in zip(seqs, idx)])
    Ks = torch.stack([q.K for q in seqs]).clone()
    if rng is None:
        return rgb, depth, labels, Ks
    W = depth.shape[-1]
    flip = torch.as_tensor(rng.random(n) < 0.5, device=depth.device)
    rgb = torch.where(flip[:, None, None, None], rgb.flip(2), rgb)
    depth = torch.where(flip[:, None, None], depth.flip(2), depth)
    labels = torch.where(flip[:, None, None], labels.flip(2), labels)
    Ks[:, 0, 2] = torch.where(flip, (W - 1) - Ks[:, 0, 2], Ks[:, 0, 2])
    gain = torch.as_tensor(rng.uniform(0.7, 1.3, (n, 1, 1, 1)) * rng.uniform(0.9, 1.1, (n, 1, 1, 3)),
                           dtype=rgb.dtype, device=rgb.device)
    return (rgb * gain).clamp(0, 1), depth, labels, Ks


def _draw_stride(sampler, opts, mcfg) -> int:
    """This step's token stride: drawn from opts.strides (the mapping default if empty)."""
    return int(sampler.rng.choice(opts.strides)) if opts.strides else mcfg.stride


# Optional residual branches of the semantic head (GaussianPredictor's arguments of the same
# names): a checkpoint keeps each it has, a chunk's options add more.
SEMANTIC_BRANCHES = SEMANTIC_PARTS[1:]


def semantic_parameters(pred, backbone: bool = False) -> List[torch.nn.Parameter]:
    """The semantic head's parameters (all its members), and the backbone's with `backbone`."""
    heads = [getattr(pred, name) for name in SEMANTIC_PARTS] + [pred.sem_members]
    heads += [pred.backbone] if backbone else []
    return [p for m in heads if m is not None for p in m.parameters()]


def semantic_step(pred, sampler, mcfg, opts, teacher=None) -> Dict[str, Optional[torch.Tensor]]:
    """Token cross-entropy of sem_batch mirrored, jittered labelled frames; only the
    semantic head's weights require gradients in this stage, so the backbone runs without
    keeping activations and the Gaussians the model predicts stay exactly as they were.
    With a `teacher` (segmenter) the loss adds its KL on the same frames (_with_teacher)."""
    stride = _draw_stride(sampler, opts, mcfg)
    rgb, depth, labels, Ks = drawn_frames(sampler, max(opts.sem_batch, 1))
    # What the head reads, without the Gaussian heads and the Gaussians the whole model
    # would also build (nothing here trains them): the logits are the whole model's.
    got = pred.semantic_inputs(rgb, depth, Ks, mcfg, labels, [stride])
    t = got[stride]
    logits = _token_rows(pred.semantic_logits(t["feats"], got["coarse"], t["geo"], stride))
    ce = token_ce(logits, t["labels"], t["valid"], pred.num_classes, opts.class_power)
    t_lp = None if teacher is None else _token_rows(teacher.token_log_probs(rgb, depth, Ks, stride))
    return _with_teacher(ce, logits, t_lp, t["valid"], opts)


def _drop_semantic_head(blob: dict):
    """--sem-fresh: forget a loaded file's semantic head, its branches and ensemble heads.
    Why: the same head stage on two backbones (the recipe's, the shipped one) says whether
    the head stage or the backbone holds the recipe back; each file's own head, trained
    over different chunks, would blur that."""
    blob["predictor"] = {k: v for k, v in blob["predictor"].items()
                         if k.split(".")[0] not in SEMANTIC_PARTS + ("sem_members",)}
    blob["state"].pop("ensemble", None)    # the card no longer names heads the file had


def _token_rows(x: torch.Tensor) -> torch.Tensor:
    """[B, K, h, w] -> [B, h*w, K], the order of the head's token logits."""
    return x.flatten(2).transpose(1, 2)


def _with_teacher(ce, logits, teacher_lp, valid, opts) -> Dict[str, Optional[torch.Tensor]]:
    """The step's loss parts: the token cross-entropy, plus with a teacher's token
    log-probabilities sem_teacher_weight x KL(teacher || head) over the valid tokens.

    Why a teacher: the labels give each token its block's majority class only; the
    segmenter, a wider network trained for this alone, gives a distribution per token
    that also says which classes a token resembles, which trains a small head in fewer
    steps than the hard labels (knowledge distillation)."""
    parts = {"token_ce": ce, "loss": ce}
    if teacher_lp is not None and ce is not None:
        kl = token_kl(logits, teacher_lp, valid)
        if kl is not None:
            parts["teacher_kl"] = kl
            parts["loss"] = ce + opts.sem_teacher_weight * kl
    return parts


class SemanticCache:
    """The frozen part's outputs for every labelled frame of the chunk, for --sem-cache.

    In a semantic-only stage nothing before the head changes, yet semantic_step runs the
    backbone and the block fit on every frame of every step, which is nearly all of the
    step's cost. Each frame here is run once, mirrored or not and jittered once
    (augmented_frames), and kept in half precision on the training device (about 1 MB a
    640x480 frame for strides 8, 16 and 32), so a chunk spends its minutes on the head and
    on more rooms rather than on the same backbone pass again. The price is one
    augmentation per frame instead of a fresh one per use: a GPU chunk that ran 57 passes
    over its 7407 frames fitted them (loss 0.12) and lost 9 points of token mIoU on unseen
    rooms, which is what validation rooms (`val_seeds`, `score`) are for. `copies` keeps
    each frame that many times, each mirrored and jittered on its own draw: more distinct
    inputs for the same rooms at one more backbone pass (and about 1 MB) per copy. With rng
    None the frames are kept once, as they are (validation)."""

    def __init__(self, pred, seqs, mcfg, strides, rng=None, batch: int = 8, copies: int = 1, teacher=None):
        self.strides = sorted(set(int(s) for s in strides))
        self.pred, self.mcfg, self.rng, self.batch = pred, mcfg, rng, batch
        self.teacher = teacher       # a segmenter whose token log-probabilities are kept beside (--sem-teacher)
        self.copies = max(int(copies), 1) if rng is not None else 1
        self.data: Dict[object, torch.Tensor] = {}
        self.n = 0
        self.extend(seqs)

    @torch.no_grad()
    def extend(self, seqs):
        """Add the frames of more rooms (a --stream-data chunk's, as they arrive). Storage
        grows by doubling so that a chunk adding rooms every second copies each frame a
        few times, not once per addition."""
        frames = [(q, i) for q in seqs for i in range(len(q)) for _ in range(self.copies)]
        if not frames:
            return
        parts: Dict[object, list] = {}
        for a in range(0, len(frames), self.batch):
            group = frames[a:a + self.batch]
            rgb, depth, labels, Ks = augmented_frames(self.rng, [q for q, _ in group], [i for _, i in group])
            got = self.pred.semantic_inputs(rgb, depth, Ks, self.mcfg, labels, self.strides)
            parts.setdefault("coarse", []).append(got["coarse"].half())
            for st in self.strides:
                for k, v in got[st].items():
                    if v is not None:
                        parts.setdefault((st, k), []).append(v.half() if v.is_floating_point() else v)
                if self.teacher is not None:
                    parts.setdefault((st, "teacher"), []).append(
                        _token_rows(self.teacher.token_log_probs(rgb, depth, Ks, st)).half())
        n_new = self.n + len(frames)
        for k, v in parts.items():
            v = torch.cat(v)
            old = self.data.get(k)
            if old is None or old.shape[0] < n_new:
                grown = v.new_empty((max(n_new, 2 * (0 if old is None else old.shape[0])),) + v.shape[1:])
                if old is not None:
                    grown[:self.n] = old[:self.n]
                self.data[k] = old = grown
            old[self.n:n_new] = v
        self.n = n_new

    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.data.values())

    def logits_and_targets(self, pred, idx: torch.Tensor, stride: int):
        """([n, T, K] logits of the cached frames idx at `stride`, labels, valid)."""
        d = self.data
        geo = d.get((stride, "geo"))
        sem = pred.semantic_logits(d[(stride, "feats")][idx].float(), d["coarse"][idx].float(),
                                   None if geo is None else geo[idx].float(), stride)
        return _token_rows(sem), d[(stride, "labels")][idx], d[(stride, "valid")][idx]

    @torch.no_grad()
    def score(self, pred, stride: int, batch: int = 16) -> float:
        """Token mIoU of the head on every kept frame at `stride` (the majority label of
        each valid token, as benchmarks/semantic_tokens.py scores it)."""
        cm = ConfusionMatrix(pred.num_classes)
        dev = self.data["coarse"].device
        for a in range(0, self.n, batch):
            idx = torch.arange(a, min(a + batch, self.n), device=dev)
            logits, labels, valid = self.logits_and_targets(pred, idx, stride)
            ok = valid.reshape(-1)
            cm.add(logits.argmax(-1).reshape(-1)[ok].cpu().numpy(), labels.reshape(-1)[ok].cpu().numpy())
        return cm.miou()["miou"]


class CacheFeeder:
    """Streamed rooms into a SemanticCache one at a time, while caching has taken at most
    `share` of the time since the feeder started.

    A --stream-data semantic stage gets rooms faster than it can cache them once each frame
    is kept several times: on an H200, 2051 rooms x 3 frames x 4 copies took the whole
    5-minute stage, which made 3 head steps. Fed a room at a time under a time share, the
    head keeps training on what is cached; rooms the share leaves over stay uncached (the
    chunk record counts them). share >= 1 caches every room as soon as it arrives."""

    def __init__(self, cache: SemanticCache, share: float, clock=time.monotonic):
        self.cache, self.share, self.clock = cache, float(share), clock
        self.backlog: list = []
        self.spent = 0.0
        self.rooms = 0
        self.t0 = clock()

    def add(self, rooms):
        self.backlog.extend(rooms)

    def feed(self) -> int:
        """Cache what the share allows now (a room, or with share >= 1 all waiting); how many."""
        if not self.backlog or (self.share < 1.0 and self.spent > self.share * (self.clock() - self.t0)):
            return 0
        take = self.backlog[:len(self.backlog) if self.share >= 1.0 else 1]
        self.backlog = self.backlog[len(take):]
        t = self.clock()
        self.cache.extend(take)
        self.spent += self.clock() - t
        self.rooms += len(take)
        return len(take)


def backbone_semantic_step(pred, teacher, sampler, mcfg, opts) -> Dict[str, Optional[torch.Tensor]]:
    """semantic_step for --sem-backbone: the same drawn frames, through the backbone with
    gradients; the loss adds distill_weight x how far the Gaussian heads moved."""
    stride = _draw_stride(sampler, opts, mcfg)
    rgb, depth, labels, Ks = drawn_frames(sampler, max(opts.sem_batch, 1))
    parts = backbone_semantic_losses(pred, teacher, rgb, depth, labels, Ks, mcfg, stride, opts.class_power)
    if parts["token_ce"] is not None:
        parts["loss"] = parts["token_ce"] + opts.distill_weight * parts["distill"]
    return parts


def cached_semantic_step(pred, cache: SemanticCache, sampler, mcfg, opts) -> Dict[str, Optional[torch.Tensor]]:
    """semantic_step on sem_batch frames drawn from the cache."""
    stride = _draw_stride(sampler, opts, mcfg)
    idx = torch.as_tensor(sampler.rng.integers(cache.n, size=max(opts.sem_batch, 1)),
                          device=cache.data["coarse"].device)
    logits, labels, valid = cache.logits_and_targets(pred, idx, stride)
    t_lp = cache.data.get((stride, "teacher"))
    return _with_teacher(token_ce(logits, labels, valid, pred.num_classes, opts.class_power), logits,
                         None if t_lp is None else t_lp[idx], valid, opts)


def _render(rast, params, poses, K, W: int, H: int, blend: bool, semantics: bool = False):
    """Render the training views; with `blend`, colour blended over each surface under the
    pipeline's default render_blend_* settings. The pipeline's views and evaluation show
    the blend, so networks fitted to the plain composite learned colours that undo its
    front-to-back shift and come out wrong once it is blended away."""
    out = render_views(rast, params, poses, K, W, H, semantics=semantics, geometry=True)
    if blend:
        out = blend_surface_colour(rast, params, out, poses, K, W, H, **_VIEW_BLEND)
    return out


def predictor_step(pred, rast, sampler, mcfg, opts, weights: LossWeights) -> Dict[str, torch.Tensor]:
    batch = []
    for _ in range(opts.batch):
        seq = sampler.pick()
        batch.append((seq, sampler.views(seq)))
    dev = batch[0][0].rgb.device
    rgb = torch.stack([s.rgb[v[0]] for s, v in batch]).float() / 255.0
    depth = torch.stack([s.depth[v[0]] for s, v in batch])
    Ks = torch.stack([s.K for s, _ in batch])
    labels = torch.stack([s.labels[v[0]] if s.labels is not None else
                          torch.full_like(s.depth[v[0]], 255, dtype=torch.uint8) for s, v in batch])
    stride = _draw_stride(sampler, opts, mcfg)
    tok = pred(rgb, depth, Ks, mcfg, labels=labels, stride=stride)
    parts: Dict[str, list] = {}
    for b, (seq, views) in enumerate(batch):
        sel = tok.valid[b]
        if int(sel.sum()) < 4:
            continue
        means, ls, q = tok.world(b, seq.poses[views[0]], sel)
        sem = tok.sem_logits[b][sel] if seq.labels is not None else None
        params = _params(means, ls, q, tok.opacity_logits[b][sel], tok.colors[b][sel], sem)
        H, W = seq.depth.shape[1:]
        Kv = seq.K.expand(len(views), 3, 3).contiguous()  # one contiguous K per camera (gsplat)
        out = _render(rast, params, seq.poses[views], Kv, W, H, opts.blend, semantics=sem is not None)
        rgb_t, dep_t, mask, lab = _targets(seq, views, views[0])
        for k, v in render_losses(out, rgb_t, dep_t, mask, lab).items():
            parts.setdefault(k, []).append(v)
    ce = _token_ce(tok, pred.num_classes, opts.class_power)
    if ce is not None:
        parts.setdefault("token_ce", []).append(ce)
    if opts.sem_batch > 0 and sampler.syn:
        ce = _token_ce(semantic_batch(pred, sampler, mcfg, opts.sem_batch, stride), pred.num_classes,
                       opts.class_power)
        if ce is not None:
            parts.setdefault("token_ce_aug", []).append(ce)
    out = {k: torch.stack(v).mean() for k, v in parts.items()}
    out["loss"] = total(out, weights) if out else torch.zeros((), device=dev, requires_grad=True)
    return out


def refiner_clip(pred, ref, rast, sampler, mcfg, length: int, weights: LossWeights, opt, clip_grad: float,
                 blend: bool = False):
    """One clip: map its frames in order with the frozen predictor; at each frame refine the
    visible + new Gaussians, take a step on the rendering losses of this frame and its
    neighbour, then commit the refined values (truncated back-propagation per frame)."""
    seq, idx = sampler.clip(length)
    dev = seq.rgb.device
    H, W = seq.depth.shape[1:]
    gmap = GaussianMap(num_classes=0, feature_dim=pred.feature_dim, device=dev)
    logs: Dict[str, list] = {}
    for t, i in enumerate(idx):
        pose = seq.poses[i]
        # Only the feature head has trainable weights here: its output f reaches the loss
        # through the refiner, the rest of the predictor is frozen.
        tok = pred(seq.rgb[i].float()[None] / 255.0, seq.depth[i][None], seq.K, mcfg, stride=mcfg.stride)
        with torch.no_grad():
            sel = tok.valid[0] & unmapped_blocks(rast, gmap, pose, seq.K, W, H, mcfg.stride, tok.depth[0],
                                                 mcfg.silhouette_threshold, mcfg.front_margin)
            means, ls, q = tok.world(0, pose, sel)
            new = gmap.insert(means, ls, q, tok.opacity_logits[0][sel], tok.colors[0][sel],
                              features=tok.features[0][sel], birth_frame=i)
            rows = select_rows(visible_rows(gmap, pose, seq.K, seq.depth[i]), new, 32768, len(gmap))
        if rows.numel() < 4:
            continue
        refined, upd = refine_set(ref, gmap, rows, new, new_features=tok.features[0][sel])
        full = {}
        for f in ("colors", "log_scales", "quats", "opacity_logits"):
            full[f] = getattr(gmap, f).index_put((rows,), refined[f])
        params = _params(gmap.means, full["log_scales"], full["quats"], full["opacity_logits"], full["colors"])
        views = [i] + ([idx[t - 1]] if t > 0 else [])
        out = _render(rast, params, seq.poses[views], seq.K.expand(len(views), 3, 3).contiguous(), W, H, blend)
        rgb_t, dep_t, mask, _ = _targets(seq, views, i)
        parts = render_losses(out, rgb_t, dep_t, mask)
        loss = total(parts, weights)
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            break                       # a degenerate clip: drop the rest of it
        loss.backward()
        params = [p for g in opt.param_groups for p in g["params"]]
        if torch.isfinite(torch.nn.utils.clip_grad_norm_(params, clip_grad)):
            opt.step()
        commit(gmap, rows, {k: v.detach() for k, v in refined.items()}, upd, mcfg.freeze_after)
        gmap.prune(mcfg.prune_opacity)
        for k, v in dict(parts, loss=loss).items():
            logs.setdefault(k, []).append(float(v.detach()))
    return {k: float(np.mean(v)) for k, v in logs.items()}, len(gmap)


def _semantic_stage(pred, opt_s, sampler, mcfg, opts, state, hist, t0: float, t_end: float,
                    maybe_save, vseq: Optional[list] = None, feed: Optional[RoomFeed] = None,
                    seg_teacher=None) -> dict:
    """--semantic-only: train the semantic head alone (with --sem-backbone, the backbone
    too) until the step count or the deadline.

    With `vseq` (the validation rooms, unaugmented) the head is scored every
    opts.val_every steps at the mapping stride, and the chunk ends with the best-scoring
    head it saw, the one it started from included: training loss on a few thousand cached
    frames keeps falling long after unseen rooms stop gaining. With opts.sem_ema the head
    scored and kept is an exponential average of the trained weights (HeadAverage), which
    steps through less of the noise of single batches. Returns the chunk record's
    part: steps, frames in the SemanticCache (0 without one) and the validation scores.
    Rooms a `feed` hands over while the stage runs join the sampler and the cache;
    `seg_teacher` is --sem-teacher's segmenter (load_teacher)."""
    params = semantic_parameters(pred, backbone=opts.sem_backbone)
    teacher = frozen_teacher(pred) if opts.sem_backbone else None
    # The validation rooms' backbone outputs are kept once, unless the backbone trains.
    val = None if vseq is None or opts.sem_backbone else SemanticCache(pred, vseq, mcfg, [mcfg.stride])
    keep = {id(p) for p in params}
    for p in pred.parameters():
        p.requires_grad_(id(p) in keep)
    try:
        pred.train()
        pred.sem_dropout = opts.sem_dropout   # the cache stores backbone outputs, so dropout stays fresh per step
        cache = None
        if opts.sem_cache:
            t_c = time.time()
            cache = SemanticCache(pred, sampler.syn, mcfg, opts.strides or [mcfg.stride], rng=sampler.rng,
                                  copies=opts.sem_cache_copies, teacher=seg_teacher)
            log.info("semantic cache: %d frames, %.2f GB, %.0f s", cache.n, cache.nbytes() / 1e9, time.time() - t_c)
        feeder = CacheFeeder(cache, opts.sem_cache_share) if cache is not None and feed is not None else None
        scores: List[Tuple[int, float]] = []
        best: dict = {"score": -1.0}     # the first step with the highest score, and its head
        avg = HeadAverage(params, opts.sem_ema) if opts.sem_ema > 0 else None

        def validate(step: int):
            pred.eval()
            with avg.swapped() if avg is not None else contextlib.nullcontext():
                scorer = val if val is not None else SemanticCache(pred, vseq, mcfg, [mcfg.stride])
                m = scorer.score(pred, mcfg.stride)
                if m > best["score"]:
                    best.update(score=m, step=step, params=[p.detach().clone() for p in params])
            pred.train()
            scores.append((step, m))
            log.info("validation after %d steps of this chunk: token mIoU %.4f", step, m)

        if vseq is not None:
            validate(0)
        n = 0
        while True:
            now = time.time()
            if (opts.steps and n >= opts.steps) or (not opts.steps and now >= t_end):
                break
            new = feed.top_up() if feed is not None else []
            if feeder is not None:
                feeder.add(new)
                feeder.feed()
            frac = n / opts.steps if opts.steps else (now - t0) / max(t_end - t0, 1e-6)
            for g in opt_s.param_groups:
                g["lr"] = _lr(opts.lr, frac, n)
            if teacher is not None:
                parts = backbone_semantic_step(pred, teacher, sampler, mcfg, opts)
            else:
                parts = (semantic_step(pred, sampler, mcfg, opts, seg_teacher) if cache is None
                         else cached_semantic_step(pred, cache, sampler, mcfg, opts))
            n += 1
            loss = parts.get("loss")
            if loss is None or not torch.isfinite(loss):
                state["skipped"] = state.get("skipped", 0) + 1
                continue
            opt_s.zero_grad(set_to_none=True)
            loss.backward()
            if torch.isfinite(torch.nn.utils.clip_grad_norm_(params, 1.0)):
                opt_s.step()
                if avg is not None:
                    avg.update()
            state["sem_steps"] = state.get("sem_steps", 0) + 1
            hist.setdefault("token_ce_aug", []).append(float(parts["token_ce"].detach()))
            for k in ("distill", "teacher_kl"):
                if k in parts:
                    hist.setdefault(k, []).append(float(parts[k].detach()))
            hist.setdefault("loss", []).append(float(loss.detach()))
            maybe_save()
            if n % 100 == 0 or n == 1:
                log.info("semantic step %d: %s", state["sem_steps"],
                         " ".join(f"{k} {np.mean(hist[k][-100:]):.4f}" for k in ("token_ce_aug", "distill", "teacher_kl")
                                  if k in hist))
            if vseq is not None and n % max(opts.val_every, 1) == 0:
                validate(n)
    finally:   # a stage that raises leaves the network as a later chunk or caller expects it
        for p in pred.parameters():
            p.requires_grad_(True)
        pred.sem_dropout = 0.0
    out = {"steps": n, "cache_frames": 0 if cache is None else cache.n}
    if feeder is not None:
        out["cache_rooms_left"] = len(feeder.backlog)
        log.info("semantic cache: %d streamed rooms cached in %.0f s (share %.2f), %d left uncached",
                 feeder.rooms, feeder.spent, feeder.share, len(feeder.backlog))
    if vseq is not None:
        if not scores or scores[-1][0] != n:
            validate(n)
        with torch.no_grad():
            for p, b in zip(params, best["params"]):
                p.copy_(b)
        log.info("semantic stage keeps the head of step %d (validation token mIoU %.4f; first %.4f, last %.4f)",
                 best["step"], best["score"], scores[0][1], scores[-1][1])
        out["validation"] = {"seeds": list(opts.val_seeds), "frames": sum(len(q) for q in vseq),
                             "kept_step": best["step"], "scores": [[s_, round(m, 4)] for s_, m in scores]}
    elif avg is not None:
        avg.copy_to_params()
    if avg is not None:
        out["head_average"] = {"decay": opts.sem_ema, "updates": avg.updates}
    return out


def load_teacher(path: str, pred, device):
    """The keyframe segmenter of --sem-teacher, frozen on the training device; its classes
    must be the head's (training's ScanNet-20 list), in the same order. Loaded before the
    data phase, so a wrong file fails at once rather than after minutes of rooms."""
    from ..core.nets.segmenter import load_segmenter
    if not Path(path).is_file():
        raise ValueError(f"--sem-teacher: no segmenter file at {path}")
    seg, info = load_segmenter(path, device)
    want = list(SCANNET20_CLASSES[:pred.num_classes])
    if list(info["class_names"]) != want or seg.num_classes != pred.num_classes:
        raise ValueError(f"--sem-teacher {path} has classes {info['class_names']}, the head {want}")
    for p in seg.parameters():
        p.requires_grad_(False)
    return seg


class HeadAverage:
    """An exponential moving average of the semantic head's weights over a chunk.

    Why: the head is kept by its score on a few validation rooms, and single-batch weights
    swing from one score to the next (0.37 to 0.48 token mIoU a hundred CPU steps apart);
    an average of the recent weights is a steadier head to score and keep once the head
    stops gaining (while it still gains, the average lags: a CPU trial scored a point
    lower, docs/results.md).
    The decay ramps up from 0 ((1 + n) / (10 + n), capped at `decay`) so the first steps
    do not drag the start along. Not kept in the checkpoint: a resumed chunk starts its
    average from the weights it resumes."""

    def __init__(self, params: List[torch.nn.Parameter], decay: float):
        self.params = list(params)
        self.decay = float(decay)
        self.updates = 0
        self.avg = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self):
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for a, p in zip(self.avg, self.params):
            a.lerp_(p.detach(), 1.0 - d)

    @torch.no_grad()
    def copy_to_params(self):
        for a, p in zip(self.avg, self.params):
            p.copy_(a)

    @contextlib.contextmanager
    def swapped(self):
        """The averaged weights in the model for the block, the trained ones after."""
        with torch.no_grad():
            held = [p.detach().clone() for p in self.params]
            self.copy_to_params()
        try:
            yield
        finally:
            with torch.no_grad():
                for h, p in zip(held, self.params):
                    p.copy_(h)


def warm_up(rast, dev) -> Optional[threading.Thread]:
    """Start compiling gsplat's CUDA kernels (about a minute on a fresh machine) in a thread,
    so the compile overlaps the CPU-bound synthetic data generation instead of eating
    training time. The thread only renders a tiny scene; join it before training."""
    if dev.type != "cuda" or rast.name != "gsplat":
        return None

    def work():
        try:
            p = GaussianParams(means=torch.tensor([[0.0, 0.0, 2.0]], device=dev),
                               quats=torch.tensor([[1.0, 0, 0, 0]], device=dev),
                               scales=torch.full((1, 3), 0.1, device=dev), opacities=torch.full((1,), 0.9, device=dev),
                               colors=torch.full((1, 3), 0.5, device=dev, requires_grad=True))
            K = torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]], device=dev)
            out = render_views(rast, p, torch.eye(4, device=dev), K, 64, 48)
            out.color.sum().backward()
        except Exception as e:  # noqa: BLE001 - training reports the real error if it persists
            log.warning("gsplat warm-up failed: %s", e)

    t = threading.Thread(target=work, name="gsplat-warm-up", daemon=True)
    t.start()
    return t


def checkpoint_from_weights(path: str, opts: FitOptions) -> dict:
    """A checkpoint-like dict from a weights file and the summary written beside it, so
    training can go on from shipped weights when their checkpoint is not at hand: the
    networks and the training history are kept, the optimisers' moments start afresh, and
    new synthetic seeds start after every seed the history names."""
    from ..core.nets import load_networks

    w = Path(path)
    pred, ref, _ = load_networks(w, "cpu")
    if (pred.feature_dim, pred.width) != (opts.feature_dim, opts.width_channels):
        raise ValueError(f"{w}: feature_dim/width {pred.feature_dim}/{pred.width} differ from the options' "
                         f"{opts.feature_dim}/{opts.width_channels}")
    summary_path = w.with_suffix(".json")
    if not summary_path.is_file():
        raise FileNotFoundError(f"--init-weights: no training summary at {summary_path}")
    summary = json.loads(summary_path.read_text())
    hist = summary["chunks"]
    seen = [int(n.split(":")[1]) for n in summary["training_sequences"] if n.startswith("synthetic:")]
    state = {"chunk": hist[-1]["chunk"], "pred_steps": summary["total_predictor_steps"],
             "ref_clips": summary["total_refiner_clips"], "sem_steps": summary.get("total_semantic_steps", 0),
             "history": hist, "seconds": summary["total_seconds"], "sequences": summary["training_sequences"],
             "next_seed": max(seen + [TRAIN_SEED_BASE - 1]) + 1}
    if summary.get("ensemble"):   # the heads it holds stay on; the card keeps saying where from
        state["ensemble"] = summary["ensemble"]
    return {"predictor": pred.state_dict(), "refiner": ref.state_dict(), "opt_predictor": None,
            "opt_refiner": None, "opt_semantic": None, "state": state}


def _lr(base: float, frac: float, step: int, warm: int = 100, floor: float = 0.1) -> float:
    """Linear warm-up over `warm` steps, then cosine decay over the chunk (frac 0 -> 1) to
    floor x base."""
    cos = 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    return base * min(1.0, (step + 1) / warm) * (floor + (1 - floor) * cos)


def _finite(model) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def fit(opts: FitOptions) -> dict:
    """One time-boxed training chunk; see FitOptions. The workers of a --stream-data
    chunk are stopped however it ends."""
    closers: list = []
    try:
        return _fit(opts, closers)
    finally:
        for close in closers:
            close()


def _fit(opts: FitOptions, closers: list) -> dict:
    t_start = time.time()
    dev = _device(opts.device)
    torch.manual_seed(opts.seed)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    mcfg = MappingConfig()
    rast = make_rasterizer("auto", dev)
    ck = Path(opts.ckpt)
    blob = None
    if opts.resume:
        if not ck.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ck}")
        blob = torch.load(ck, map_location=dev, weights_only=False)
    elif opts.init_weights:
        blob = checkpoint_from_weights(opts.init_weights, opts)
    elif opts.semantic_only:
        raise ValueError("--semantic-only trains the semantic head of resumed weights: pass --resume or --init-weights")
    if opts.sem_cache and not opts.semantic_only:
        raise ValueError("--sem-cache keeps the frozen backbone's outputs: it needs --semantic-only")
    if opts.sem_cache_copies < 1:
        raise ValueError(f"--sem-cache-copies must be >= 1, got {opts.sem_cache_copies}")
    if not 0.0 < opts.sem_cache_share <= 1.0:
        raise ValueError(f"--sem-cache-share must be in (0, 1], got {opts.sem_cache_share}")
    if not 0.0 <= opts.sem_ema < 1.0:
        raise ValueError(f"--sem-ema is a decay in [0, 1), got {opts.sem_ema}")
    if opts.sem_ema and not opts.semantic_only:
        raise ValueError("--sem-ema averages the semantic head of a --semantic-only chunk: it needs --semantic-only")
    if not 0.0 <= opts.sem_dropout < 1.0:
        raise ValueError(f"--sem-dropout is a probability in [0, 1), got {opts.sem_dropout}")
    if opts.sem_dropout and not opts.semantic_only:
        raise ValueError("--sem-dropout regularises the semantic head of a --semantic-only chunk: "
                         "it needs --semantic-only")
    if opts.sem_teacher and (not opts.semantic_only or opts.sem_backbone):
        raise ValueError("--sem-teacher trains the semantic head of a --semantic-only chunk (not with --sem-backbone)")
    if opts.sem_cache_copies != 1 and not opts.sem_cache:
        raise ValueError("--sem-cache-copies sets how often --sem-cache keeps each frame: it needs --sem-cache")
    if opts.sem_backbone and (not opts.semantic_only or opts.sem_cache):
        raise ValueError("--sem-backbone trains the backbone in a semantic-only chunk: it needs --semantic-only "
                         "and runs the backbone on every step, so not --sem-cache")
    if opts.sem_fresh and not (opts.semantic_only and opts.init_weights and not opts.resume):
        raise ValueError("--sem-fresh trains a new semantic head on a weights file's backbone: it needs "
                         "--semantic-only and --init-weights (not --resume)")
    if opts.val_seeds and not opts.semantic_only:
        raise ValueError("--val-seeds picks the semantic head a semantic-only chunk keeps: it needs --semantic-only")
    if opts.stream_data and opts.workers < 2:
        raise ValueError("--stream-data trains while worker processes make the rooms: it needs --workers >= 2")
    if any(v >= TRAIN_SEED_BASE for v in opts.val_seeds):
        raise ValueError(f"--val-seeds must stay below {TRAIN_SEED_BASE}, where training rooms start")
    if opts.sem_fresh:
        _drop_semantic_head(blob)
        log.info("--sem-fresh: the semantic head and its branches start from scratch on %s's backbone",
                 opts.init_weights)
    # A semantic branch is kept once a checkpoint has it, and added on --sem-context /
    # --sem-geometry / --sem-attention.
    def had(branch: str) -> bool:
        return blob is not None and any(k.startswith(branch + ".") for k in blob["predictor"])

    branches = {b: getattr(opts, b) or had(b) for b in SEMANTIC_BRANCHES}
    adds_branch = any(getattr(opts, b) and not had(b) for b in SEMANTIC_BRANCHES)
    members = 0 if blob is None else len({k.split(".")[1] for k in blob["predictor"] if k.startswith("sem_members.")})
    pred = GaussianPredictor(len(SCANNET20_CLASSES), opts.feature_dim, opts.width_channels, **branches,
                             sem_members=members).to(dev)
    ref = GaussianRefiner(opts.feature_dim).to(dev)
    opt_p = torch.optim.AdamW(pred.parameters(), lr=opts.lr, weight_decay=1e-4)
    opt_r = torch.optim.AdamW(list(ref.parameters()) + list(pred.feat_head.parameters()), lr=opts.lr * 0.5,
                              weight_decay=1e-4)
    state = {"chunk": 0, "pred_steps": 0, "ref_clips": 0, "history": [], "seconds": 0.0, "sequences": []}
    if blob is not None:
        got = pred.load_state_dict(blob["predictor"], strict=not (adds_branch or opts.sem_fresh))
        # Loading leniently (a branch added, a fresh head) may leave out only semantic parts.
        stray = [k for k in got.missing_keys if k.split(".")[0] not in SEMANTIC_PARTS]
        if stray:
            raise ValueError(f"{opts.init_weights or ck}: the predictor lacks {stray[:4]}")
        sd = blob["opt_predictor"]   # None when started from a weights file
        if sd is not None:
            if adds_branch:
                # The saved state numbers the old parameters 0..n-1 in their order; a new
                # branch may sit between them (the geometry branch after the context one or
                # not). Give each current parameter its old number, new ones numbers past
                # n, so the old parameters keep their Adam moments and the new ones start
                # afresh.
                old, new = itertools.count(), itertools.count(len(sd["param_groups"][0]["params"]))
                sd["param_groups"][0]["params"] = [next(old) if name in blob["predictor"] else next(new)
                                                   for name, _ in pred.named_parameters()]
            opt_p.load_state_dict(sd)
        if opts.new_refiner:   # e.g. after a change of the refiner's inputs: it starts over
            log.info("--new-refiner: the refiner starts from scratch, the predictor is resumed")
        else:
            ref.load_state_dict(blob["refiner"])
            if blob["opt_refiner"] is not None:
                opt_r.load_state_dict(blob["opt_refiner"])
        state = blob["state"]
        state["chunk"] += 1
        log.info("resumed from %s: chunk %d, %d predictor steps, %d refiner clips",
                 ck if opts.resume else opts.init_weights, state["chunk"],
                 state["pred_steps"], state["ref_clips"])
    ck.parent.mkdir(parents=True, exist_ok=True)
    opt_s = None
    if opts.semantic_only:
        opt_s = torch.optim.AdamW(semantic_parameters(pred, backbone=opts.sem_backbone), lr=opts.lr,
                                  weight_decay=1e-4)
        if blob is not None and blob.get("opt_semantic") is not None:
            try:
                opt_s.load_state_dict(blob["opt_semantic"])
            except ValueError:   # the head changed since (a branch added, the backbone in or out): fresh moments
                log.info("--semantic-only: the semantic optimiser starts over")

    def save_ckpt():
        tmp = ck.with_suffix(".tmp")
        torch.save({"predictor": pred.state_dict(), "refiner": ref.state_dict(), "opt_predictor": opt_p.state_dict(),
                    "opt_refiner": opt_r.state_dict(), "opt_semantic": None if opt_s is None else opt_s.state_dict(),
                    "state": state, "options": asdict(opts)}, tmp)
        tmp.replace(ck)

    last_save = [time.time()]

    def maybe_save():   # a chunk cut short (a GPU call's time limit) keeps most of its steps
        if time.time() - last_save[0] > 120:
            save_ckpt()
            last_save[0] = time.time()

    budget = opts.minutes * 60
    warm = None if opts.semantic_only else warm_up(rast, dev)   # that stage renders nothing
    seg_teacher = load_teacher(opts.sem_teacher, pred, dev) if opts.sem_teacher else None
    # Data: fresh seeds per chunk, never below TRAIN_SEED_BASE (evaluation seeds are).
    # (A chunk starts after the last seed any earlier chunk asked for, however many it made.)
    first_seed = state.get("next_seed", TRAIN_SEED_BASE + 100 * state["chunk"])
    state["next_seed"] = first_seed + opts.seeds
    seeds = list(range(first_seed, first_seed + opts.seeds))
    feed, made = None, {}
    if opts.stream_data:
        feed = RoomFeed(seeds, opts.frames, opts.step, opts.width, opts.height, dev, opts.workers,
                        deadline=t_start + opts.data_minutes * 60, fill_holes=opts.fill_holes,
                        targets=not opts.semantic_only, min_rooms=opts.workers)
        closers.append(feed.close)
        syn = feed.rooms     # grows while the chunk trains
    else:
        syn = synthetic_sequences(seeds, opts.frames, opts.step, opts.width, opts.height, dev,
                                  deadline=t_start + opts.data_minutes * 60, workers=opts.workers,
                                  fill_holes=opts.fill_holes, targets=not opts.semantic_only, report=made)
    real = ([real_sequence(opts.real, opts.real_frames, opts.width, opts.height, dev, opts.fill_holes)]
            if opts.real else [])
    state["sequences"] = sorted(set(state["sequences"]) | {s.name for s in syn + real})
    sampler = Sampler(syn, real, opts.p_real, opts.max_gap, seed=opts.seed + state["chunk"])
    vseq = None
    if opts.val_seeds:   # the same frames of the same rooms in every chunk, so scores compare
        vseq = synthetic_sequences(list(opts.val_seeds), VAL_FRAMES, VAL_STEP, opts.width, opts.height, dev,
                                   workers=opts.workers, fill_holes=opts.fill_holes, targets=False)
    weights = LossWeights(token=opts.token_weight)
    if warm is not None:
        t_w = time.time()
        warm.join()
        log.info("gsplat ready (waited %.0f s after the data)", time.time() - t_w)
    t_train = time.time()
    left = max(budget - (t_train - t_start), 1.0)
    t_pred_end = t_train + left * (1 - opts.refine_fraction)
    hist: Dict[str, list] = {}
    n = sem_n = 0
    sem_out: dict = {}
    if opts.semantic_only:
        sem_out = _semantic_stage(pred, opt_s, sampler, mcfg, opts, state, hist, t_train, t_start + budget,
                                  maybe_save, vseq, feed, seg_teacher)
        sem_n = sem_out["steps"]
        t_pred_end = t_train    # no predictor or refiner stage in this chunk
    # -- predictor ------------------------------------------------------------------
    pred.train()
    while not opts.semantic_only:
        now = time.time()
        if (opts.steps and n >= opts.steps) or (not opts.steps and now >= t_pred_end):
            break
        if feed is not None:
            feed.top_up()
        frac = n / opts.steps if opts.steps else (now - t_train) / max(t_pred_end - t_train, 1e-6)
        for g in opt_p.param_groups:
            g["lr"] = _lr(opts.lr, frac, state["pred_steps"])
        parts = predictor_step(pred, rast, sampler, mcfg, opts, weights)
        opt_p.zero_grad(set_to_none=True)
        if not torch.isfinite(parts["loss"]):
            state["skipped"] = state.get("skipped", 0) + 1   # a degenerate sample: no step
            n += 1
            continue
        parts["loss"].backward()
        gn = torch.nn.utils.clip_grad_norm_(pred.parameters(), 1.0)
        if torch.isfinite(gn):
            opt_p.step()
        n += 1
        state["pred_steps"] += 1
        for k, v in parts.items():
            hist.setdefault(k, []).append(float(v.detach()))
        maybe_save()
        if n % 50 == 0 or n == 1:
            log.info("predictor step %d: %s", state["pred_steps"],
                     " ".join(f"{k} {np.mean(v[-50:]):.4f}" for k, v in hist.items()))
    pred_final = {k: float(np.mean(v[-max(1, min(50, len(v) // 5)):])) for k, v in hist.items()}
    pred_first = {k: float(np.mean(v[:max(1, min(50, len(v) // 5))])) for k, v in hist.items()}
    # -- refiner --------------------------------------------------------------------
    pred.eval()
    for p in pred.parameters():
        p.requires_grad_(False)
    for p in pred.feat_head.parameters():
        p.requires_grad_(True)
    ref.train()
    rhist: Dict[str, list] = {}
    t_ref = time.time()
    t_end = t_start + budget
    m = 0
    stages = opts.clip_lengths
    while not opts.semantic_only:
        now = time.time()
        if (opts.refine_steps and m >= opts.refine_steps) or (not opts.refine_steps and now >= t_end):
            break
        if feed is not None:
            feed.top_up()
        frac = m / opts.refine_steps if opts.refine_steps else (now - t_ref) / max(t_end - t_ref, 1e-6)
        length = stages[min(int(frac * len(stages)), len(stages) - 1)]
        for g in opt_r.param_groups:
            g["lr"] = _lr(opts.lr * 0.5, frac, state["ref_clips"])
        logs, _ = refiner_clip(pred, ref, rast, sampler, mcfg, length, weights, opt_r, 1.0, opts.blend)
        m += 1
        state["ref_clips"] += 1
        for k, v in logs.items():
            rhist.setdefault(k, []).append(v)
        rhist.setdefault("clip_length", []).append(length)
        maybe_save()
        if m % 20 == 0 or m == 1:
            log.info("refiner clip %d (length %d): %s", state["ref_clips"], length,
                     " ".join(f"{k} {np.mean(v[-20:]):.4f}" for k, v in rhist.items() if k != "clip_length"))
    for p in pred.parameters():
        p.requires_grad_(True)
    ref_final = {k: float(np.mean(v[-max(1, min(20, len(v) // 5)):])) for k, v in rhist.items() if k != "clip_length"}
    ref_first = {k: float(np.mean(v[:max(1, min(20, len(v) // 5))])) for k, v in rhist.items() if k != "clip_length"}
    if not (_finite(pred) and _finite(ref)):
        raise RuntimeError("training diverged: non-finite weights; nothing written")
    if feed is not None:
        feed.close()
    state["sequences"] = sorted(set(state["sequences"]) | {s.name for s in syn + real})   # streamed rooms too
    elapsed = time.time() - t_start
    state["seconds"] += elapsed
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    chunk = {"chunk": state["chunk"], "seconds": elapsed, "device": device_name,
             "predictor_steps": n, "semantic_steps": sem_n, "refiner_clips": m,
             "clip_lengths": sorted(set(rhist.get("clip_length", []))),
             "predictor_first": pred_first, "predictor_final": pred_final,
             "refiner_first": ref_first, "refiner_final": ref_final,
             "synthetic_sequences": len(syn), "real_frames": int(sum(len(r) for r in real)),
             "sem_cache_frames": sem_out.get("cache_frames", 0),
             **({"sem_cache_rooms_left": sem_out["cache_rooms_left"]} if "cache_rooms_left" in sem_out else {}),
             **({"rooms_stopped_for_memory": True}
                if (feed.stopped_for_memory if feed is not None else made.get("stopped_for_memory")) else {}),
             "command": opts.command}
    for key in ("validation", "head_average"):
        if key in sem_out:
            chunk[key] = sem_out[key]
    state["history"].append(chunk)
    save_ckpt()
    summary = {"command": opts.command, "device": device_name, "renderer": rast.name,
               "total_predictor_steps": state["pred_steps"], "total_refiner_clips": state["ref_clips"],
               "total_semantic_steps": state.get("sem_steps", 0),
               "total_seconds": state["seconds"], "chunks": state["history"],
               "training_sequences": state["sequences"], "options": asdict(opts)}
    if state.get("ensemble"):
        summary["ensemble"] = state["ensemble"]
    save_networks(opts.out, pred, ref, SCANNET20_CLASSES, meta={"summary": json.dumps(summary)})
    out = Path(opts.out)
    with open(out.with_suffix(".json"), "w") as f:
        json.dump(summary, f, indent=2)
    from .card import write_card

    write_card(out.parent / "MODEL_CARD.md", summary, weights_path=out)
    log.info("wrote %s, %s and the model card (%.0f s)", out, out.with_suffix(".json"), elapsed)
    return summary

