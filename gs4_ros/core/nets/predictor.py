"""Gaussian Prediction Model: one RGB-D backbone, a Gaussian head and a semantic head.

Every token (a stride x stride block) gets one Gaussian expressed as a *residual around the
v0 geometric initialiser's Gaussian for that block* (core/initializer.block_gaussians):
the prior's centre is moved by pixel offsets (dx, dy) and a depth factor, its colour gets
an offset, its scale is exp(raw + log prior scale) clamped, its rotation is the prior's
composed with normalise(1 + raw) and its opacity is sigmoid(raw + logit(init_opacity)).
The residual outputs start at exactly zero, so an untrained model reproduces v0 and
training can only move away from it where the losses say so. The latent feature f is
what the refinement network reads later.

Geometry is protected, because the tracker aligns against the map's rendered surface
(blended centres and normals): a shifted pixel is back-projected onto the block's fitted
plane (the centre slides along the surface), the depth factor is bounded to 0.3%, the
rotation residual turns a Gaussian about its normal with at most a few degrees of tilt,
and the normal axis may not thicken more than the thinner tangential axis. Rendering
losses alone would otherwise trade surface accuracy for colour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import se3
from ..config import MappingConfig
from ..initializer import BlockGaussians, block_gaussians
from .backbone import STRIDES, RGBDBackbone, encode_rgbd

LOG_SCALE_MIN = math.log(1e-4)
LOG_SCALE_MAX = math.log(0.5)
# Residual ranges: a token centre slides at most half a block in the image (along its
# plane) and 0.3% in depth (below the sensor's noise; rendering losses have a small
# systematic pull on depth that would otherwise bias whole keyframes radially and make
# tracking drift); a rotation tilts the normal by at most ~3 degrees.
MAX_PIXEL_SHIFT = 0.5
MAX_LOG_DEPTH = 0.003
MAX_TILT = 0.025


def rotation_residual(raw: torch.Tensor) -> torch.Tensor:
    """[..., 4] raw -> unit quaternion in the Gaussian's local frame: free rotation about
    the local z axis (the normal of a surfel), bounded tilt of that axis."""
    w = 1.0 + raw[..., 0]
    x = MAX_TILT * torch.tanh(raw[..., 1])
    y = MAX_TILT * torch.tanh(raw[..., 2])
    dq = torch.stack([w, x, y, raw[..., 3]], -1)
    return dq / dq.norm(dim=-1, keepdim=True).clamp(min=1e-8)


def scale_residual(log_scales: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """Add [..., 3] raw log-scale residuals; the third (normal) axis grows at most as much
    as the thinner of the others, so a surfel's thin axis stays its thinnest."""
    dz = torch.minimum(raw[..., 2], torch.minimum(raw[..., 0], raw[..., 1]))
    out = log_scales + torch.stack([raw[..., 0], raw[..., 1], dz], -1)
    return out.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)
N_GAUSS_OUT = 2 + 1 + 3 + 3 + 4 + 1  # dx dy dd, colour, scale, rotation, opacity


@dataclass
class TokenGaussians:
    """One Gaussian per token, camera frame, batch-major ([B, T, ...])."""

    means: torch.Tensor           # [B, T, 3]
    log_scales: torch.Tensor      # [B, T, 3]
    quats: torch.Tensor           # [B, T, 4] unit (w, x, y, z)
    opacity_logits: torch.Tensor  # [B, T]
    colors: torch.Tensor          # [B, T, 3] (may leave [0, 1]; clamped when rendered)
    features: torch.Tensor        # [B, T, F]
    sem_logits: torch.Tensor      # [B, T, K]
    valid: torch.Tensor           # [B, T] bool: the block has enough depth
    depth: torch.Tensor           # [B, T] the block's median observed depth
    labels: Optional[torch.Tensor]  # [B, T] long token labels from a label image (255 unknown)
    priors: BlockGaussians        # the v0 blocks the tokens refine, fields [B, T, ...] (.frame(b): image b's)
    grid_shape: tuple

    def world(self, b: int, pose_c2w: torch.Tensor, select: Optional[torch.Tensor] = None):
        """(means, log_scales, quats) of image b in the world frame (rows where select)."""
        sel = self.valid[b] if select is None else select
        R, t = pose_c2w[:3, :3], pose_c2w[:3, 3]
        means = self.means[b][sel] @ R.T + t
        q = self.quats[b][sel]
        qR = se3.rotmat_to_quat(R.to(q.dtype))[None].expand(q.shape[0], 4)
        return means, self.log_scales[b][sel], se3.quat_multiply(qR, q)


def _head(cin: int, cout: int, zero: bool) -> nn.Sequential:
    last = nn.Conv2d(cin, cout, 1)
    if zero:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Conv2d(cin, cin, 3, 1, 1), nn.ReLU(inplace=True), last)


class SemanticContext(nn.Module):
    """Residual logits from a wider view than the 3x3 semantic head's: two dilated
    convolutions (about a metre of wall at 3 m) and the frame's pooled coarsest features.

    The classes the plain head confuses are told apart by context, not by the block itself:
    a sofa and a bed are both soft boxes, a shower curtain is a curtain in a bathroom. The
    output layer starts at zero, so adding the branch to trained weights changes nothing
    until it is trained."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.local = nn.Sequential(nn.Conv2d(width, width, 3, 1, 2, dilation=2), nn.ReLU(inplace=True),
                                   nn.Conv2d(width, width, 3, 1, 4, dilation=4), nn.ReLU(inplace=True))
        self.glob = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(2 * width, num_classes, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, feats: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        g = self.glob(coarse.mean((2, 3)))[:, :, None, None].expand(-1, -1, *feats.shape[-2:])
        return self.out(torch.cat([self.local(feats), g], 1))


class SemanticGeometry(nn.Module):
    """Residual logits from each token's geometry next to its features: the block's fitted
    normal in the camera frame, its depth, its image row and whether it has depth.

    Colour and texture do not generalise across rooms the way geometry does: on held-out
    room 902 the head took a wooden floor for a bookshelf (floor IoU 0.05), though a floor
    faces up and a bookshelf's front does not. The output layer starts at zero, so adding
    the branch to trained weights changes nothing until it is trained."""

    IN = 6   # normal (3), depth / 4 m, image row in [-1, 1], valid

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width + self.IN, width, 3, 1, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, 1, 2, dilation=2), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(width, num_classes, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @staticmethod
    def inputs(normals: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor, grid_shape) -> torch.Tensor:
        """[B, T, 3] block normals (facing the camera), [B, T] depth and validity -> [B, 6, h, w]."""
        B = depth.shape[0]
        hb, wb = grid_shape
        v = valid.to(depth.dtype)
        row = torch.linspace(-1.0, 1.0, hb, device=depth.device, dtype=depth.dtype)
        row = row[:, None].expand(hb, wb).reshape(1, -1).expand(B, -1)
        # where, not a product: a block without depth may hold a non-finite normal.
        n = torch.where(valid[..., None], normals, torch.zeros_like(normals))
        d = torch.where(valid, depth / 4.0, torch.zeros_like(depth))
        x = torch.cat([n, d[..., None], row[..., None], v[..., None]], -1)
        return x.transpose(1, 2).reshape(B, SemanticGeometry.IN, hb, wb)

    def forward(self, feats: torch.Tensor, geo: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(torch.cat([feats, geo], 1)))


class SemanticAttention(nn.Module):
    """Residual logits from self-attention over the whole frame's stride-32 tokens (300 at
    640x480), brought back to the token grid and read next to each token's own features.

    The head's remaining errors are whole objects given a neighbouring class (a desk taken
    for a sofa, a table for a desk): the block alone cannot say which, the room around it
    can (chairs at it, a wall behind it, what else stands in the frame). Convolutions reach
    a fixed neighbourhood; attention lets every token weigh every other one at the cost of
    a few hundred tokens (chunk 12 in MODEL_CARD.md: map mIoU over 20 held-out rooms 63.0%
    -> 66.5%). No dropout and layer norms only, so one frame at inference behaves as in
    training; the output layer starts at zero, so adding the branch to trained weights
    changes nothing until it is trained."""

    def __init__(self, width: int, num_classes: int, dim: int = 96, layers: int = 2, heads: int = 4,
                 freqs: int = 4):
        super().__init__()
        self.freqs = freqs
        self.inp = nn.Linear(width + 4 * freqs, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.fuse = nn.Sequential(nn.Conv2d(width + dim, width, 3, 1, 1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(width, num_classes, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def position(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """[h*w, 4*freqs] sines and cosines of each coarse token's row and column."""
        r = torch.linspace(-1.0, 1.0, h, device=like.device, dtype=like.dtype)[:, None].expand(h, w)
        c = torch.linspace(-1.0, 1.0, w, device=like.device, dtype=like.dtype)[None].expand(h, w)
        f = (2.0 ** torch.arange(self.freqs, device=like.device, dtype=like.dtype)) * (math.pi / 2)
        a = torch.stack([r, c], -1)[..., None] * f
        return torch.cat([a.sin(), a.cos()], -1).reshape(h * w, -1)

    def forward(self, feats: torch.Tensor, coarse: torch.Tensor, stride: int) -> torch.Tensor:
        """feats [B, C, h, w] at `stride`, coarse [B, C, H/32, W/32] (padded input)."""
        B, _, hc, wc = coarse.shape
        x = coarse.flatten(2).transpose(1, 2)
        x = torch.cat([x, self.position(hc, wc, x)[None].expand(B, -1, -1)], -1)
        y = self.encoder(self.inp(x)).transpose(1, 2).reshape(B, -1, hc, wc)
        up = 32 // stride
        if up > 1:
            y = F.interpolate(y, scale_factor=up, mode="bilinear", align_corners=False)
        # The coarse grid covers the input padded to /32: crop, as the backbone's levels are.
        y = y[..., :feats.shape[-2], :feats.shape[-1]]
        return self.out(self.fuse(torch.cat([feats, y], 1)))


# Attribute names of the semantic head and its optional residual branches, on the predictor
# and on each SemanticMember: training (train/fit.py) and train/ensemble.py select by them.
SEMANTIC_PARTS = ("sem_head", "sem_context", "sem_geometry", "sem_attention")


def _semantic_parts(width: int, num_classes: int, context: bool, geometry: bool, attention: bool) -> dict:
    """The semantic head and its optional residual branches, by attribute name (SEMANTIC_PARTS)."""
    return {"sem_head": _head(width, num_classes, zero=False),
            "sem_context": SemanticContext(width, num_classes) if context else None,
            "sem_geometry": SemanticGeometry(width, num_classes) if geometry else None,
            "sem_attention": SemanticAttention(width, num_classes) if attention else None}


def _head_logits(m: nn.Module, feats, coarse, geo, stride: int) -> torch.Tensor:
    """Logits of the semantic parts held by m (the predictor or a SemanticMember)."""
    sem = m.sem_head(feats)
    if m.sem_context is not None:
        sem = sem + m.sem_context(feats, coarse)
    if m.sem_geometry is not None:
        sem = sem + m.sem_geometry(feats, geo)
    if m.sem_attention is not None:
        sem = sem + m.sem_attention(feats, coarse, stride)
    return sem


class SemanticMember(nn.Module):
    """One more semantic head on the same backbone features, for an ensemble of heads
    (train/ensemble.py): the predictor's own semantic parts, with their own weights."""

    def __init__(self, width: int, num_classes: int, context: bool, geometry: bool, attention: bool):
        super().__init__()
        for name, mod in _semantic_parts(width, num_classes, context, geometry, attention).items():
            setattr(self, name, mod)


class GaussianPredictor(nn.Module):
    """RGB-D frame -> TokenGaussians at stride 8 (16 and 32 selectable per call)."""

    def __init__(self, num_classes: int = 20, feature_dim: int = 16, width: int = 64,
                 init_opacity: float = 0.95, sem_context: bool = False, sem_geometry: bool = False,
                 sem_attention: bool = False, sem_members: int = 0):
        super().__init__()
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        self.width = int(width)
        self.backbone = RGBDBackbone(width)
        self.gauss_head = _head(width, N_GAUSS_OUT, zero=True)
        self.feat_head = _head(width, self.feature_dim, zero=False)
        # The branches are optional so that weight files written before a branch existed
        # still load.
        for name, mod in _semantic_parts(width, self.num_classes, sem_context, sem_geometry, sem_attention).items():
            setattr(self, name, mod)
        # Heads trained apart on the same frozen backbone err on different objects: their
        # mean log-probability beat either head alone on unseen rooms (train/ensemble.py).
        self.sem_members = (nn.ModuleList(SemanticMember(width, self.num_classes, sem_context, sem_geometry,
                                                         sem_attention) for _ in range(int(sem_members)))
                            if sem_members else None)
        self.opacity_bias = float(math.log(init_opacity / (1 - init_opacity)))
        # Dropout on what the semantic head reads, in training only (fit's --sem-dropout);
        # not part of the architecture, so weight files do not keep it.
        self.sem_dropout = 0.0

    def arch(self) -> dict:
        return {"num_classes": self.num_classes, "feature_dim": self.feature_dim, "width": self.width,
                "init_opacity": 1 / (1 + math.exp(-self.opacity_bias)), "sem_context": self.sem_context is not None,
                "sem_geometry": self.sem_geometry is not None,
                "sem_attention": self.sem_attention is not None,
                "sem_members": 0 if self.sem_members is None else len(self.sem_members)}

    def semantic_logits(self, feats: torch.Tensor, coarse: torch.Tensor,
                        geo: Optional[torch.Tensor] = None, stride: int = 8) -> torch.Tensor:
        """[B, C, h, w] token features at `stride` (+ the stride-32 level, +
        SemanticGeometry.inputs when that branch exists) -> [B, K, h, w] class logits
        (with sem_members: the heads' mean log-probabilities)."""
        if self.training and self.sem_dropout > 0:
            feats = F.dropout(feats, self.sem_dropout)
            coarse = F.dropout(coarse, self.sem_dropout)
        sem = _head_logits(self, feats, coarse, geo, stride)
        if self.sem_members is None:
            return sem
        heads = [sem] + [_head_logits(m, feats, coarse, geo, stride) for m in self.sem_members]
        return torch.stack(heads).log_softmax(2).mean(0)

    def _priors(self, rgb, depth, Ks, cfg: MappingConfig, labels, s: int):
        """The v0 block Gaussians at stride s (no gradient) with their stacked centres,
        rotations and validity, and the geometry branch's inputs when it exists."""
        with torch.no_grad():
            priors = block_gaussians(depth, rgb, Ks, cfg, labels, stride=s)   # the whole batch: fields [B, T, ...]
        pm, rot, valid = priors.means, priors.rotmats, priors.valid
        geo = (SemanticGeometry.inputs(rot[..., 2], pm[..., 2], valid, (depth.shape[1] // s, depth.shape[2] // s))
               if self.sem_geometry is not None else None)
        return priors, pm, rot, valid, geo

    @torch.no_grad()
    def semantic_inputs(self, rgb: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, cfg: MappingConfig,
                        labels: torch.Tensor, strides) -> dict:
        """What the semantic head reads, at each of `strides`, from one backbone pass:
        {"coarse": stride-32 level, s: {"feats", "geo", "valid", "depth", "labels"}}
        ("labels" None without a label image; "depth" each block's). A training stage that
        changes only the head can keep these instead of running the frozen backbone again
        on every step (train/fit.SemanticCache)."""
        B, H, W = depth.shape
        Ks = K[None].expand(B, 3, 3) if K.dim() == 2 else K
        levels = self.backbone(encode_rgbd(rgb, depth))
        out = {"coarse": levels[32]}
        for s in strides:
            priors, _, _, valid, geo = self._priors(rgb, depth, Ks, cfg, labels, s)
            out[s] = {"feats": levels[s][:, :, :H // s, :W // s], "geo": geo, "valid": valid,
                      "depth": priors.depth, "labels": priors.labels}
        return out

    @torch.no_grad()
    def semantic_log_probs(self, rgb: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, cfg: MappingConfig,
                           stride: int = 8) -> dict:
        """One frame's class log-probabilities per token, without the Gaussians:
        {"log_probs": [B, K, H/s, W/s], "valid", "depth": [B, T] per block}."""
        got = self.semantic_inputs(rgb, depth, K, cfg, None, [stride])
        t = got[stride]
        lp = self.semantic_logits(t["feats"], got["coarse"], t["geo"], stride).log_softmax(1)
        return {"log_probs": lp, "valid": t["valid"], "depth": t["depth"]}

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, cfg: MappingConfig,
                labels: Optional[torch.Tensor] = None, stride: int = 8) -> TokenGaussians:
        """rgb [B,H,W,3] in [0,1], depth [B,H,W] metres, K [3,3] or [B,3,3], labels [B,H,W]."""
        if stride not in STRIDES:
            raise ValueError(f"token stride must be one of {STRIDES}, got {stride}")
        if rgb.dim() == 3:
            rgb, depth = rgb[None], depth[None]
            labels = None if labels is None else labels[None]
        B, H, W = depth.shape
        Ks = K[None].expand(B, 3, 3) if K.dim() == 2 else K
        s = stride
        hb, wb = H // s, W // s
        priors, pm, rot, valid, geo = self._priors(rgb, depth, Ks, cfg, labels, s)
        levels = self.backbone(encode_rgbd(rgb, depth))
        feats = levels[s][:, :, :hb, :wb]
        g = self.gauss_head(feats).flatten(2).transpose(1, 2)          # [B, T, 14]
        f = self.feat_head(feats).flatten(2).transpose(1, 2)
        sem = self.semantic_logits(feats, levels[32], geo, s).flatten(2).transpose(1, 2)
        # Centre: shift the prior's pixel, back-project it onto the block's plane, then
        # scale its depth (a block seen at a grazing angle keeps the prior's pixel).
        fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
        cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
        z = pm[..., 2].clamp(min=1e-3)
        u = fx * pm[..., 0] / z + cx + MAX_PIXEL_SHIFT * s * torch.tanh(g[..., 0])
        v = fy * pm[..., 1] / z + cy + MAX_PIXEL_SHIFT * s * torch.tanh(g[..., 1])
        ray = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)], -1)
        n = rot[..., 2]
        den = (n * ray).sum(-1)
        facing = den.abs() > 0.3 * ray.norm(dim=-1)
        t = torch.where(facing, (n * pm).sum(-1) / torch.where(facing, den, torch.ones_like(den)), z)
        t = torch.minimum(torch.maximum(t, 0.8 * z), 1.25 * z)
        ray = torch.where(facing[..., None], ray, pm / z[..., None])
        means = ray * (t * torch.exp(MAX_LOG_DEPTH * torch.tanh(g[..., 2])))[..., None]
        means = torch.where((pm[..., 2:] > 0), means, pm)
        colors = priors.colors + g[..., 3:6]
        prior_ls = torch.log(priors.scales.clamp(min=1e-6, max=1.0))
        log_scales = scale_residual(prior_ls, g[..., 6:9])
        q_prior = se3.rotmat_to_quat(rot.reshape(-1, 3, 3)).reshape(B, -1, 4)
        dq = rotation_residual(g[..., 9:13])
        quats = se3.quat_multiply(q_prior.reshape(-1, 4), dq.reshape(-1, 4)).reshape(B, -1, 4)
        opacity_logits = g[..., 13] + self.opacity_bias
        lab = priors.labels
        return TokenGaussians(means, log_scales, quats, opacity_logits, colors, f, sem,
                              valid, priors.depth, lab, priors, (hb, wb))
