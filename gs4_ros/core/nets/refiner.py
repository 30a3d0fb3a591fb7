"""Gaussian Refinement Network: local attention over 3D kNN neighbourhoods.

Inputs are the map Gaussians visible in the current frame together with the frame's new
Gaussians. Each Gaussian attends to its k nearest neighbours in world space (relative
positions normalised by its own size, so the same weights serve near and far surfaces),
and the last layer emits residuals of colour, log-scale, rotation and opacity, never of
position: geometry comes from depth and the tracker, the refiner only settles appearance
and coverage where views overlap. The last layer starts at zero, so an untrained refiner
changes nothing.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn as nn

from .. import se3
from .knn import knn
from .predictor import rotation_residual, scale_residual

N_REFINE_OUT = 3 + 3 + 4 + 1  # colour, log-scale, rotation, opacity
FIELDS = ("means", "log_scales", "quats", "opacity_logits", "colors", "features")


class LocalAttention(nn.Module):
    """Pre-norm multi-head attention of each token over its kNN, plus a feed-forward."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.ReLU(inplace=True),
                                nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor, nbr: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        N, D = h.shape
        k = nbr.shape[1]
        x = self.norm(h)
        q = self.q(x).view(N, self.heads, 1, D // self.heads)
        kv = self.kv(x)[nbr] + torch.cat([pos, pos], -1)                 # [N, k, 2D]
        key, val = kv.view(N, k, 2, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ key.transpose(-1, -2)) * (D // self.heads) ** -0.5   # [N, h, 1, k]
        y = (att.softmax(-1) @ val).reshape(N, D)
        h = h + self.out(y)
        return h + self.ff(h)


class GaussianRefiner(nn.Module):
    def __init__(self, feature_dim: int = 16, hidden: int = 64, heads: int = 4, k: int = 16, layers: int = 2):
        super().__init__()
        self.feature_dim, self.hidden, self.heads, self.k, self.layers = feature_dim, hidden, heads, k, layers
        self.embed = nn.Sequential(nn.Linear(feature_dim + 12, hidden), nn.ReLU(inplace=True),
                                   nn.Linear(hidden, hidden))
        self.pos = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList([LocalAttention(hidden, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, N_REFINE_OUT)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def arch(self) -> dict:
        return {"feature_dim": self.feature_dim, "hidden": self.hidden, "heads": self.heads, "k": self.k,
                "layers": self.layers}

    def forward(self, g: Dict[str, torch.Tensor], is_new: torch.Tensor) -> torch.Tensor:
        """g: per-Gaussian raw fields of the set (FIELDS); is_new [N] bool -> residuals [N, 11]."""
        means = g["means"]
        q = g["quats"] / g["quats"].norm(dim=-1, keepdim=True).clamp(min=1e-8)
        q = torch.where(q[:, :1] < 0, -q, q)
        ls = g["log_scales"]
        x = torch.cat([g["features"], g["colors"], ls - ls.mean(-1, keepdim=True), ls.mean(-1, keepdim=True) + 4.0,
                       torch.tanh(g["opacity_logits"] / 4)[:, None], q[:, 1:], is_new[:, None].to(means.dtype)], -1)
        h = self.embed(x)
        nbr = knn(means, self.k)                                         # [N, k]
        rho = torch.exp(ls.max(-1).values).clamp(min=1e-3)[:, None, None]
        rel = (means[nbr] - means[:, None]).detach() / rho               # [N, k, 3]
        rel = rel.clamp(-20, 20)
        pos = self.pos(torch.cat([rel, rel.norm(dim=-1, keepdim=True)], -1))
        for blk in self.blocks:
            h = blk(h, nbr, pos)
        return self.head(self.norm(h))


def apply_residuals(g: Dict[str, torch.Tensor], res: torch.Tensor) -> Dict[str, torch.Tensor]:
    """New raw fields (colour, log-scale, quaternion, opacity logit) with residuals res
    [N, 11] applied; positions and features are passed through unchanged. Rotation and
    scale residuals are constrained as in the predictor (turn about the local z axis, a
    thin z axis stays thinnest), so the surface normals the tracker uses stay put."""
    out = dict(g)
    out["colors"] = g["colors"] + res[:, 0:3]
    out["log_scales"] = scale_residual(g["log_scales"], res[:, 3:6])
    out["quats"] = se3.quat_multiply(g["quats"], rotation_residual(res[:, 6:10]))
    out["opacity_logits"] = g["opacity_logits"] + res[:, 10]
    return out
