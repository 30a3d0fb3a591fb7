"""Shared RGB-D backbone of the Gaussian prediction model.

It runs on every mapped frame, so it is built for speed: a plain strided conv encoder down
to stride 32 (no normalisation layers, so batch size 1 at inference behaves exactly like
training) and a light FPN-style top-down path that brings stride-16/32 context back to the
stride-8 tokens. Output levels at strides 8, 16 and 32 share one channel width, so the
same heads serve every token stride.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

STRIDES = (8, 16, 32)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU(inplace=True))


def encode_rgbd(rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """[B,H,W,3] colour in [0,1] and [B,H,W] metric depth (0 invalid) -> [B,4,H,W].

    Depth enters as inverse depth, which maps invalid pixels (0) to 'very far' without a
    special value and keeps near, well-measured surfaces at high resolution."""
    inv = torch.where(depth > 0, 1.0 / depth.clamp(min=0.2), torch.zeros_like(depth)).clamp(max=5.0)
    x = torch.cat([(rgb - 0.45) / 0.25, inv[..., None]], -1)
    return x.permute(0, 3, 1, 2).contiguous()


class RGBDBackbone(nn.Module):
    """4-channel input -> {8: [B,C,H/8,W/8], 16: ..., 32: ...} (input padded to /32)."""

    def __init__(self, width: int = 64):
        super().__init__()
        c = [24, 40, 64, 96, 128]
        self.stem = nn.Sequential(_conv(4, c[0], 2), _conv(c[0], c[0]))            # /2
        self.enc4 = nn.Sequential(_conv(c[0], c[1], 2), _conv(c[1], c[1]))         # /4
        self.enc8 = nn.Sequential(_conv(c[1], c[2], 2), _conv(c[2], c[2]))         # /8
        self.enc16 = nn.Sequential(_conv(c[2], c[3], 2), _conv(c[3], c[3]))        # /16
        self.enc32 = nn.Sequential(_conv(c[3], c[4], 2), _conv(c[4], c[4]))        # /32
        self.lat = nn.ModuleDict({"8": nn.Conv2d(c[2], width, 1), "16": nn.Conv2d(c[3], width, 1),
                                  "32": nn.Conv2d(c[4], width, 1)})
        self.smooth = nn.ModuleDict({k: _conv(width, width) for k in ("8", "16", "32")})
        self.width = width

    def forward(self, x: torch.Tensor) -> Dict[int, torch.Tensor]:
        H, W = x.shape[-2:]
        ph, pw = (-H) % 32, (-W) % 32
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        e8 = self.enc8(self.enc4(self.stem(x)))
        e16 = self.enc16(e8)
        e32 = self.enc32(e16)
        p32 = self.lat["32"](e32)
        p16 = self.lat["16"](e16) + F.interpolate(p32, scale_factor=2, mode="nearest")
        p8 = self.lat["8"](e8) + F.interpolate(p16, scale_factor=2, mode="nearest")
        return {8: self.smooth["8"](p8), 16: self.smooth["16"](p16), 32: self.smooth["32"](p32)}
