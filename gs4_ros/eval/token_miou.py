"""Token mIoU: a semantic model's class for each stride token against the token's
majority label, on fixed labelled frames.

The map's mIoU mixes the classes with tracking and fusion; this scores the model itself,
the same way for the predictor's semantic head and the keyframe segmenter (both give
`semantic_log_probs`), with or without the final pass's test-time passes. Used by
benchmarks/semantic_tokens.py and by the segmenter's validation (train/segmenter).
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import torch

from ..core.config import MappingConfig
from ..core.initializer import block_gaussians
from ..core.nets.semantic_tta import augmented_log_probs
from .image_metrics import ConfusionMatrix


class TokenScorer:
    """frames: (colour uint8 [H,W,3], depth [H,W], K [3,3], labels [H,W]) each. The token
    labels and validity are the v0 blocks' at the mapping stride (computed once here); the
    frames move to the model's device as they are scored."""

    def __init__(self, frames: Iterable[Tuple[torch.Tensor, ...]], mcfg: MappingConfig, num_classes: int):
        self.mcfg, self.K = mcfg, num_classes
        self.frames = []
        for rgb, depth, K, labels in frames:
            bg = block_gaussians(depth.float(), rgb.float() / 255.0, K, mcfg, labels, stride=mcfg.stride)
            self.frames.append((rgb, depth, K, bg.labels, bg.valid))

    @classmethod
    def from_sequences(cls, seqs, mcfg: MappingConfig, num_classes: int) -> "TokenScorer":
        """Every frame of train/data Sequences (labelled)."""
        return cls(((q.rgb[i], q.depth[i], q.K, q.labels[i]) for q in seqs for i in range(len(q))), mcfg, num_classes)

    @torch.no_grad()
    def confusion(self, model, tta: Optional[Tuple[bool, Sequence[float]]] = None) -> ConfusionMatrix:
        """The argmax per valid, labelled token; with tta (mirror, scales), of the
        log-probabilities averaged over those passes (nets/semantic_tta, as the final
        semantic pass computes them). The model is scored in eval mode and left as it was."""
        was = model.training
        model.eval()
        dev = next(model.parameters()).device
        s = self.mcfg.stride
        cm = ConfusionMatrix(self.K)
        try:
            for rgb, depth, K, lab, valid in self.frames:
                c, d, k = rgb.to(dev).float() / 255.0, depth.to(dev).float(), K.to(dev)
                if tta is None:
                    lp = model.semantic_log_probs(c[None], d[None], k[None], self.mcfg, s)["log_probs"][0]
                    lp = lp.flatten(1).T
                else:
                    lp = augmented_log_probs(model, c, d, k, self.mcfg, tta[1], tta[0])["log_probs"]
                ok = valid.cpu()
                cm.add(lp.argmax(-1).cpu()[ok].numpy(), lab.cpu()[ok].numpy())
        finally:
            model.train(was)
        return cm

    def score(self, model) -> float:
        """Token mIoU over the classes present, plain passes."""
        return float(self.confusion(model).miou()["miou"])
