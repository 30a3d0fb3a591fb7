"""Test-time augmentation of the semantic head, for the end-of-sequence semantic pass.

The head's remaining errors are whole objects given a neighbouring class the same way in
every view, so fusing more views of one kind does not mend them (docs/results.md,
"Semantic fusion over views"). The same frame mirrored and seen at other scales does move
them: the head's receptive field then covers the object differently. Averaging the
log-probabilities of the plain, mirrored, 0.75x and 1.25x passes raised token mIoU on
both the validation and the held-out rooms (docs/results.md). Each pass is a full
backbone and head evaluation, more than the 8 ms a mapped frame may cost, so the passes
run once per keyframe at the end of a sequence (SLAMPipeline.final_semantics).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..config import MappingConfig
from ..frame import Intrinsics


def rescaled(rgb: torch.Tensor, depth: torch.Tensor, Ks: torch.Tensor, scale: float, multiple: int,
             labels: Optional[torch.Tensor] = None):
    """(colour, depth, Ks, labels) of a batch ([B,H,W,3], [B,H,W], [B,3,3], [B,H,W] or None)
    at `scale`, sizes rounded to `multiple`: colour bilinear (antialiased when shrinking),
    depth and labels nearest (interpolation would invent surfaces and classes between two
    objects), K as Intrinsics.scaled maps it. The batch itself when the size stays. The
    final pass's rescaled views and the segmenter's training batches both come from here."""
    B, H, W = depth.shape
    h, w = max(multiple, round(H * scale / multiple) * multiple), max(multiple, round(W * scale / multiple) * multiple)
    if (h, w) == (H, W):
        return rgb, depth, Ks, labels
    c = F.interpolate(rgb.permute(0, 3, 1, 2), (h, w), mode="bilinear", align_corners=False,
                      antialias=h < H or w < W).permute(0, 2, 3, 1)
    nearest = lambda x: F.interpolate(x[:, None].float(), (h, w), mode="nearest")[:, 0].to(x.dtype)  # noqa: E731
    K2 = torch.stack([Intrinsics(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), W, H)
                      .scaled(w, h).K(k.device, k.dtype) for k in Ks])
    return c, nearest(depth), K2, None if labels is None else nearest(labels)


def _mirrored(rgb: torch.Tensor, depth: torch.Tensor, K: torch.Tensor):
    Km = K.clone()
    Km[0, 2] = (depth.shape[1] - 1) - K[0, 2]
    return rgb.flip(1), depth.flip(1), Km


@torch.no_grad()
def augmented_log_probs(pred, rgb: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, cfg: MappingConfig,
                        scales: Sequence[float] = (0.75, 1.25), mirror: bool = True) -> dict:
    """Class log-probabilities of one frame's blocks at cfg.stride, averaged over the plain
    pass, its mirror image (with `mirror`) and the frame at each of `scales`:
    {"log_probs": [T, K], "valid": [T], "depth": [T], "grid_shape": (rows, cols)}, with
    validity and depth from the plain frame's blocks (what fusion gates on). The rescaled
    passes are not mirrored as well: on the validation and held-out rooms that added
    nothing (docs/results.md).

    rgb [H,W,3] in [0,1], depth [H,W] metres, K [3,3]. Passes at other scales are resampled
    to the plain grid, bilinearly in log-probability."""
    s = cfg.stride
    H, W = depth.shape
    hb, wb = H // s, W // s
    base = pred.semantic_log_probs(rgb[None], depth[None], K[None], cfg, s)
    passes = [base["log_probs"]]
    if mirror:
        passes.append(pred.semantic_log_probs(*(x[None] for x in _mirrored(rgb, depth, K)), cfg, s)["log_probs"].flip(3))
    for scale in scales:
        if not scale > 0:
            raise ValueError(f"semantic test-time scales must be positive, got {scale}")
        lp = pred.semantic_log_probs(*rescaled(rgb[None], depth[None], K[None], float(scale), s)[:3], cfg, s)["log_probs"]
        if lp.shape[-2:] != (hb, wb):
            lp = F.interpolate(lp, (hb, wb), mode="bilinear", align_corners=False)
        passes.append(lp)
    mean = torch.stack(passes).mean(0)[0]
    return {"log_probs": mean.flatten(1).T, "valid": base["valid"][0], "depth": base["depth"][0],
            "grid_shape": (hb, wb)}
