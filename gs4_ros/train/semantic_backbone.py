"""Semantic training that reaches into the backbone without moving the Gaussians (--sem-backbone).

A semantic-only chunk trains the head on frozen backbone features, and heads trained that
way have stopped gaining (MODEL_CARD.md, docs/results.md): what the features do not say,
no head on them can. A whole-model chunk changes the features but needs the renderer, and
with it the GPU. Here the backbone trains on the token cross-entropy too, while the
Gaussian and latent-feature heads, frozen, are asked to give what they gave on the
starting backbone (a frozen copy, the teacher): the predicted Gaussians stay close to the
ones the rendering losses trained, with no render in the loop, so a CPU can run it.
"""
from __future__ import annotations

import copy
from typing import Dict, Optional

import torch
import torch.nn as nn

from ..core.nets.backbone import encode_rgbd
from .losses import token_ce


def frozen_teacher(pred) -> nn.Module:
    """A frozen copy of the predictor's backbone as it is now (the chunk's start)."""
    teacher = copy.deepcopy(pred.backbone).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def backbone_semantic_losses(pred, teacher: nn.Module, rgb, depth, labels, Ks, mcfg, stride: int,
                             class_power: float) -> Dict[str, Optional[torch.Tensor]]:
    """{"token_ce", "distill"} for a batch of labelled frames at `stride`.

    distill is the mean squared difference, over valid tokens, of the Gaussian head's and
    the latent-feature head's raw outputs on the trained backbone and on the teacher:
    the raw outputs, because every Gaussian parameter is a fixed function of them and the
    refiner reads the latent features."""
    B, H, W = depth.shape
    s = stride
    hb, wb = H // s, W // s
    priors, _, _, valid, geo = pred._priors(rgb, depth, Ks, mcfg, labels, s)
    x = encode_rgbd(rgb, depth)
    levels = pred.backbone(x)
    feats = levels[s][:, :, :hb, :wb]
    with torch.no_grad():
        t_feats = teacher(x)[s][:, :, :hb, :wb]
        target = torch.cat([pred.gauss_head(t_feats), pred.feat_head(t_feats)], 1)
    out = torch.cat([pred.gauss_head(feats), pred.feat_head(feats)], 1)
    v = valid.reshape(B, 1, hb, wb).to(out.dtype)
    distill = ((out - target).square() * v).sum() / (v.sum() * out.shape[1]).clamp(min=1.0)
    sem = pred.semantic_logits(feats, levels[32], geo, s).flatten(2).transpose(1, 2)
    lab = priors.labels
    return {"token_ce": token_ce(sem, lab, valid, pred.num_classes, class_power), "distill": distill}
