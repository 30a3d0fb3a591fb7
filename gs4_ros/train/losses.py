"""Rendering and segmentation losses of the training scripts.

Colour MSE + (1 - SSIM) (pytorch_msssim), depth L1 and cross-entropy on rendered
semantics, each restricted to a pixel mask (the co-visible pixels of a view); SSIM needs
whole images, so pixels outside the mask take the target's value in the prediction.

Depth is compared as the tracker sees it: the ray / blended-plane intersection
(RenderOutput.surface_depth). The alpha-blended centre depth is biased towards the nearest
centre on slanted surfaces, and fitting it pushed predicted surfaces ~1.3% too far, which
made tracking drift. A coverage term (1 - alpha on observed pixels) keeps the map's
silhouette closed, so co-visibility does not re-insert Gaussians behind thinned ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from pytorch_msssim import ssim as _ssim


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of [N, 3, H, W] images in [0, 1]."""
    return _ssim(x, y, data_range=1.0, size_average=True)


@dataclass
class LossWeights:
    color: float = 1.0     # MSE
    ssim: float = 0.2      # (1 - SSIM)
    depth: float = 0.5     # L1, metres
    sem: float = 0.1       # CE on rendered semantics
    token: float = 0.1     # CE of the per-token semantic logits
    alpha: float = 0.1     # 1 - silhouette on observed pixels


def render_losses(out, rgb_tgt: torch.Tensor, depth_tgt: torch.Tensor, mask: torch.Tensor,
                  labels: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """out: RenderOutput of V views; rgb_tgt [V,H,W,3] in [0,1]; depth_tgt, mask [V,H,W];
    labels [V,H,W] long (>= K or 255 ignored)."""
    m = mask.to(out.color.dtype)
    n = m.sum().clamp(min=1)
    mse = (((out.color - rgb_tgt) ** 2).sum(-1) * m).sum() / (3 * n)
    pred = torch.where(mask[..., None], out.color, rgb_tgt)
    ss = 1 - ssim(pred.permute(0, 3, 1, 2), rgb_tgt.permute(0, 3, 1, 2))
    dm = m * (depth_tgt > 0).to(m.dtype)
    rd = out.surface_depth if out.surface_depth is not None else out.depth
    dl1 = ((rd - depth_tgt).abs() * dm).sum() / dm.sum().clamp(min=1)
    cover = ((1 - out.alpha) * dm).sum() / dm.sum().clamp(min=1)
    res = {"color_mse": mse, "ssim": ss, "depth_l1": dl1, "coverage": cover}
    if labels is not None and out.semantics is not None:
        Kc = out.semantics.shape[-1]
        ok = mask & (labels < Kc) & (out.alpha.detach() > 0.5)
        if ok.any():
            p = out.semantics[ok] / out.alpha[ok][:, None].clamp(min=1e-6)
            res["sem_ce"] = F.nll_loss(torch.log(p.clamp(min=1e-6)), labels[ok])
    return res


def total(parts: Dict[str, torch.Tensor], w: LossWeights) -> torch.Tensor:
    keys = {"color_mse": w.color, "ssim": w.ssim, "depth_l1": w.depth, "sem_ce": w.sem, "token_ce": w.token,
            "token_ce_aug": w.token, "coverage": w.alpha}
    return sum(keys[k] * v for k, v in parts.items() if k in keys)


def token_kl(logits: torch.Tensor, teacher_log_probs: torch.Tensor, valid: torch.Tensor) -> Optional[torch.Tensor]:
    """KL(teacher || head) per valid token, averaged: [B, T, K] logits of the head against
    [B, T, K] log-probabilities of a teacher (the keyframe segmenter) on the same frames."""
    ok = valid.reshape(-1)
    if not ok.any():
        return None
    t = teacher_log_probs.reshape(-1, teacher_log_probs.shape[-1])[ok].float()
    s = logits.reshape(-1, logits.shape[-1])[ok].log_softmax(-1)
    return (t.exp() * (t - s)).sum(-1).mean()


def token_ce(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor,
             num_classes: int, power: float = 0.5) -> Optional[torch.Tensor]:
    """Cross-entropy of [B, T, K] token logits against the blocks' majority labels
    ([B, T], 255 unknown), each class weighted by its token count in the batch to the
    -power (0.5: inverse square root; 0: plain CE), the weights scaled so a token weighs 1
    on average: walls and floors cover most tokens, and mIoU counts every present class
    alike."""
    tl = labels.reshape(-1).long()
    ok = valid.reshape(-1) & (tl < num_classes)
    if not ok.any():
        return None
    cnt = torch.bincount(tl[ok], minlength=num_classes).to(logits.dtype)
    cw = torch.where(cnt > 0, cnt.clamp(min=1).pow(-power), torch.zeros_like(cnt))
    cw = cw * ok.sum() / (cw * cnt).sum()
    return F.cross_entropy(logits.reshape(-1, num_classes)[ok], tl[ok], weight=cw)
