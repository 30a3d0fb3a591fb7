"""Keyframe segmenter: a wider RGB-D network for the end-of-run semantic pass only.

The semantic head shares the predictor's backbone, which is built to cost a few
milliseconds on every mapped frame; three heads on it and test-time passes left the
held-out rooms just under the mIoU asked for, and the heads' remaining errors are whole
objects taken for a neighbouring class (docs/results.md): the features, not the heads,
are short. The final semantic pass (SLAMPipeline.final_semantics) runs once per kept
keyframe at the end of a run, where tens of milliseconds a keyframe cost nothing a robot
waits for, so a wider network can serve there while the online map keeps the shared
head. It reads colour, inverse depth and the surface normal (geometry generalises across
rooms where texture does not), classifies every stride-4 cell and gives each token the
mean of its cells' probabilities, so `semantic_tta.augmented_log_probs` takes it in place
of the predictor.

Batch normalisation is used here (unlike the predictor's backbone): the network only
ever runs in eval mode after training, where a batch of one behaves like any other.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import MappingConfig
from ..geometry import backproject, normals_from_points
from ..initializer import block_gaussians
from .backbone import encode_rgbd
from .weights import save_atomically

FORMAT = "gs4_segmenter/1"
DEFAULT_SEGMENTER = Path(__file__).resolve().parents[2] / "weights" / "gs4_segmenter.pt"
IN_CHANNELS = 8          # colour (3), inverse depth (1), normal (3), depth valid (1)
OUT_STRIDE = 4


def segmenter_inputs(rgb: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """[B,H,W,3] colour in [0,1], [B,H,W] depth, K [B,3,3] -> [B,8,H,W]: the predictor's
    encoding (colour, inverse depth) with the camera-frame normal (radius 2, zero where
    undefined) and the depth-valid mask."""
    x = encode_rgbd(rgb, depth)
    ns = []
    for b in range(depth.shape[0]):
        valid = depth[b] > 0
        n, ok = normals_from_points(backproject(depth[b], K[b]), valid, radius=2)
        ns.append(torch.cat([n * ok[..., None], valid[..., None].to(n.dtype)], -1))
    return torch.cat([x, torch.stack(ns).permute(0, 3, 1, 2).to(x.dtype)], 1)


class _Res(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.a = nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, bias=False)
        self.na = nn.BatchNorm2d(cout)
        self.b = nn.Conv2d(cout, cout, 3, 1, dilation, dilation=dilation, bias=False)
        self.nb = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        y = F.relu(self.na(self.a(x)), inplace=True)
        return F.relu(self.nb(self.b(y)) + self.skip(x), inplace=True)


class _Pooled(nn.Module):
    """Room-scale context: the coarsest features averaged over 1x1, 2x2 and 4x4 cells."""

    def __init__(self, c: int, bins: Sequence[int] = (1, 2, 4)):
        super().__init__()
        self.bins = tuple(bins)
        self.proj = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c // 4, 1, bias=False), nn.BatchNorm2d(c // 4),
                                                nn.ReLU(inplace=True)) for _ in self.bins)
        self.out = nn.Sequential(nn.Conv2d(c + len(self.bins) * (c // 4), c, 3, 1, 1, bias=False),
                                 nn.BatchNorm2d(c), nn.ReLU(inplace=True))

    def forward(self, x):
        h, w = x.shape[-2:]
        parts = [x] + [F.interpolate(p(F.adaptive_avg_pool2d(x, b)), (h, w), mode="bilinear", align_corners=False)
                       for b, p in zip(self.bins, self.proj)]
        return self.out(torch.cat(parts, 1))


class KeyframeSegmenter(nn.Module):
    """[B,8,H,W] inputs -> [B,K,H/4,W/4] logits (input padded to a multiple of 32)."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (32, 64, 128, 192, 256), decoder: int = 96):
        super().__init__()
        c = list(widths)
        self.num_classes, self.widths, self.decoder = int(num_classes), c, int(decoder)
        self.stem = nn.Sequential(nn.Conv2d(IN_CHANNELS, c[0], 3, 2, 1, bias=False), nn.BatchNorm2d(c[0]),
                                  nn.ReLU(inplace=True), _Res(c[0], c[0]))                     # /2
        self.s4 = nn.Sequential(_Res(c[0], c[1], 2), _Res(c[1], c[1]))                           # /4
        self.s8 = nn.Sequential(_Res(c[1], c[2], 2), _Res(c[2], c[2]))                           # /8
        self.s16 = nn.Sequential(_Res(c[2], c[3], 2), _Res(c[3], c[3], dilation=2))              # /16
        self.s32 = nn.Sequential(_Res(c[3], c[4], 2), _Res(c[4], c[4], dilation=2))              # /32
        self.context = _Pooled(c[4])
        self.lat = nn.ModuleList(nn.Conv2d(ci, decoder, 1) for ci in (c[1], c[2], c[3], c[4]))
        self.fuse = nn.Sequential(nn.Conv2d(4 * decoder, decoder, 3, 1, 1, bias=False), nn.BatchNorm2d(decoder),
                                  nn.ReLU(inplace=True), nn.Conv2d(decoder, decoder, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(decoder), nn.ReLU(inplace=True))
        self.cls = nn.Conv2d(decoder, num_classes, 1)

    def arch(self) -> dict:
        return {"num_classes": self.num_classes, "widths": list(self.widths), "decoder": self.decoder}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        ph, pw = (-H) % 32, (-W) % 32
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        e4 = self.s4(self.stem(x))
        e8 = self.s8(e4)
        e16 = self.s16(e8)
        e32 = self.context(self.s32(e16))
        size = e4.shape[-2:]
        ups = [self.lat[0](e4)] + [F.interpolate(lat(e), size, mode="bilinear", align_corners=False)
                                   for lat, e in zip(self.lat[1:], (e8, e16, e32))]
        out = self.cls(self.fuse(torch.cat(ups, 1)))
        return out[..., : H // OUT_STRIDE, : W // OUT_STRIDE]

    def cell_logits(self, rgb: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """[B,K,H/4,W/4] logits of frames (rgb [B,H,W,3] in [0,1], depth [B,H,W], K [B,3,3])."""
        return self(segmenter_inputs(rgb, depth, K))

    @torch.no_grad()
    def token_log_probs(self, rgb: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, stride: int) -> torch.Tensor:
        """[B,K,H/s,W/s] class log-probabilities of each stride-s token, its probabilities
        the mean of its stride-4 cells' (K [B,3,3])."""
        if stride % OUT_STRIDE:
            raise ValueError(f"the segmenter serves token strides that are multiples of {OUT_STRIDE}, got {stride}")
        H, W = depth.shape[-2:]
        prob = self.cell_logits(rgb, depth, K).float().softmax(1)
        f = stride // OUT_STRIDE
        hb, wb = H // stride, W // stride
        return F.avg_pool2d(prob[..., : hb * f, : wb * f], f).clamp(min=1e-8).log()

    @torch.no_grad()
    def semantic_log_probs(self, rgb: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, cfg: MappingConfig,
                           stride: int = 8) -> dict:
        """As GaussianPredictor.semantic_log_probs: {"log_probs": [B,K,H/s,W/s], "valid",
        "depth": [B,T]}, a token's probabilities the mean of its stride-4 cells'; validity
        and depth are the v0 blocks' (what fusion gates on)."""
        B, H, W = depth.shape
        Ks = K[None].expand(B, 3, 3) if K.dim() == 2 else K
        lp = self.token_log_probs(rgb, depth, Ks, stride)
        blocks = block_gaussians(depth, rgb, Ks, cfg, None, stride=stride)
        return {"log_probs": lp, "valid": blocks.valid, "depth": blocks.depth}


def save_segmenter(path, model: KeyframeSegmenter, class_names: List[str], meta: Optional[dict] = None):
    """Half-precision weights (the file ships inside the package; the network's outputs
    moved by less than 1e-3 in log-probability when tested), loadable with weights_only."""
    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    blob = {"format": FORMAT, "class_names": list(class_names), "arch": model.arch(), "state": state,
            "meta": dict(meta or {})}
    save_atomically(blob, path)


def load_segmenter(path, device="cpu"):
    """(segmenter in eval mode on device, info with class_names and meta)."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gs4 segmenter file (format {FORMAT})")
    model = KeyframeSegmenter(**blob["arch"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state"].items()})
    info = {"class_names": list(blob["class_names"]), "meta": blob.get("meta", {}), "path": str(path)}
    return model.to(device).eval(), info
