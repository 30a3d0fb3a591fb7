"""A Kinect-like RGB-D sensor applied to clean renders.

Depth: axial noise sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2 m (Nguyen et al. 2012 for the
Kinect v1), millimetre quantisation, and the holes real sensors have: outside 0.3-6 m, at
depth discontinuities (a ragged band), at grazing angles, on glass, random dropout blobs
and speckle. Colour: slight optical blur, optional slow exposure drift, shot and read
noise, 8-bit quantisation. All randomness comes from a CPU generator seeded by
(sequence seed, frame index), so frames are reproducible and independent of access order
and device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F


class NoiseBank:
    """Large fixed tables of Gaussian and uniform samples. A frame reads windows at random
    offsets of two tables and combines them, so per-frame noise costs a few additions
    instead of drawing hundreds of thousands of fresh samples."""

    _tables: Dict = {}

    @classmethod
    def _table(cls, kind: str, size: int, dev) -> torch.Tensor:
        key = (kind, size, str(dev))
        if key not in cls._tables:
            rng = np.random.default_rng({"na": 101, "nb": 202, "ua": 303, "ub": 404}[kind])
            vals = rng.standard_normal(size) if kind[0] == "n" else rng.random(size)
            cls._tables[key] = torch.from_numpy(vals.astype(np.float32)).to(dev)
        return cls._tables[key]

    @classmethod
    def _windows(cls, kinds, n, g, dev):
        size = 1 << max(21, int(np.ceil(np.log2(2 * n + 1))))
        offs = torch.randint(0, size - n, (2,), generator=g).tolist()
        return [cls._table(k, size, dev)[o:o + n] for k, o in zip(kinds, offs)]

    @classmethod
    def normal(cls, shape, g, dev) -> torch.Tensor:
        n = int(np.prod(shape))
        a, b = cls._windows(("na", "nb"), n, g, dev)
        return ((a + b) * 0.70710678).view(shape)

    @classmethod
    def uniform(cls, shape, g, dev) -> torch.Tensor:
        n = int(np.prod(shape))
        a, b = cls._windows(("ua", "ub"), n, g, dev)
        return torch.frac(a + b).view(shape)


def depth_sigma(z):
    """Axial depth noise standard deviation (m) at depth z (m)."""
    return 0.0012 + 0.0019 * (z - 0.4) ** 2


@dataclass
class SensorModel:
    depth_noise: bool = True
    quantise_mm: bool = True
    min_range: float = 0.3
    max_range: float = 6.0
    edge_holes: bool = True
    edge_jump: float = 0.03  # m, plus 4% of depth, counts as a discontinuity
    grazing_holes: bool = True
    glass_holes: bool = True
    dropout_fraction: float = 0.02  # area of random dropout blobs
    speckle_fraction: float = 0.001
    blur_sigma: float = 0.5  # px at 640x480
    colour_read_noise: float = 1.2  # in 8-bit counts
    colour_shot_noise: float = 0.6  # counts * sqrt(value in counts / 255)
    exposure_amplitude: float = 0.0  # e.g. 0.05 for +-5 % slow gain drift

    @staticmethod
    def clean() -> "SensorModel":
        """No noise and no holes (only the range limits): for debugging and ground truth."""
        return SensorModel(depth_noise=False, quantise_mm=False, edge_holes=False, grazing_holes=False,
                           glass_holes=False, dropout_fraction=0.0, speckle_fraction=0.0, blur_sigma=0.0,
                           colour_read_noise=0.0, colour_shot_noise=0.0, exposure_amplitude=0.0)

    def generator(self, seed: int, index: int) -> torch.Generator:
        g = torch.Generator(device="cpu")
        g.manual_seed((int(seed) * 1_000_003 + int(index) * 7919 + 12345) % (2 ** 63 - 1))
        return g

    def apply(self, clean: Dict[str, torch.Tensor], seed: int, index: int, t: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """(rgb uint8 HxWx3, depth float32 HxW metres) from a clean render, on its device."""
        dev = clean["depth"].device
        H, W = clean["depth"].shape
        g = self.generator(seed, index)
        scale = W / 640.0
        return self._colour(clean["rgb"], g, H, W, dev, scale, seed, t), self._depth(clean, g, H, W, dev, scale)

    # -- depth ------------------------------------------------------------------------
    def _depth(self, clean, g, H, W, dev, scale):
        z = clean["depth"]
        valid = z > 0
        if self.depth_noise:
            n = NoiseBank.normal((H, W), g, dev)
            z = z + depth_sigma(z) * n
        if self.quantise_mm:
            z = torch.round(z * 1000.0) / 1000.0
        bad = ~valid | (z < self.min_range) | (z > self.max_range)
        if self.edge_holes:
            bad |= self._edges(clean["depth"], g, H, W, dev, scale)
        if self.grazing_holes:
            c = clean["cos_view"]
            u = NoiseBank.uniform((H, W), g, dev)
            bad |= c < 0.08 + 0.12 * u
        if self.glass_holes:
            bad |= clean["glass"]
        if self.dropout_fraction > 0:
            bad |= self._blobs(g, H, W, dev)
        if self.speckle_fraction > 0:
            bad |= NoiseBank.uniform((H, W), g, dev) < self.speckle_fraction
        return torch.where(bad, torch.zeros_like(z), z).float()

    def _edges(self, z, g, H, W, dev, scale):
        """A ragged invalid band where depth jumps between neighbours."""
        zp = F.pad(z[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
        c = zp[1:-1, 1:-1]
        jump = torch.zeros_like(c, dtype=torch.bool)
        thr = self.edge_jump + 0.04 * c
        for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
            jump |= (zp[dy:dy + H, dx:dx + W] - c).abs() > thr
        width = max(1, int(round(1.5 * scale)))
        grown = F.max_pool2d(jump[None, None].float(), 2 * width + 1, stride=1, padding=width)[0, 0] > 0
        keep = NoiseBank.uniform((H, W), g, dev) < 0.55
        return jump | (grown & keep)

    def _blobs(self, g, H, W, dev):
        """Dropout blobs: the top dropout_fraction of a smooth random field."""
        gh, gw = max(3, H // 40), max(3, W // 40)
        field = torch.rand((1, 1, gh, gw), generator=g)
        field = F.interpolate(field, size=(H, W), mode="bicubic", align_corners=False)[0, 0]
        sub = field[::4, ::4].reshape(-1)
        k = max(1, int(round(sub.numel() * (1.0 - self.dropout_fraction))))
        thr = torch.kthvalue(sub, k).values
        return (field > thr).to(dev)

    # -- colour -----------------------------------------------------------------------
    def _colour(self, rgb, g, H, W, dev, scale, seed, t):
        x = rgb
        sig = self.blur_sigma * scale
        if sig > 0.05:  # separable 3-tap Gaussian, edges replicated
            w1 = float(np.exp(-1.0 / (2 * sig * sig)))
            x = _blur3(_blur3(x, w1, 1), w1, 0)
        if self.exposure_amplitude > 0:
            ph = (int(seed) % 1000) * 0.37
            gain = 1.0 + self.exposure_amplitude * (0.7 * np.sin(2 * np.pi * t / 9.0 + ph) +
                                                    0.3 * np.sin(2 * np.pi * t / 3.7 + 2 * ph))
            x = x * float(gain)
        x = x * 255.0
        if self.colour_read_noise > 0 or self.colour_shot_noise > 0:
            n = NoiseBank.normal((H, W, 3), g, dev)
            sd = self.colour_read_noise + self.colour_shot_noise * torch.sqrt(x.clamp(min=0) / 255.0) * 4.0
            x = x + sd * n
        return x.round().clamp(0, 255).to(torch.uint8)


def _blur3(x: torch.Tensor, w1: float, dim: int) -> torch.Tensor:
    """(w1, 1, w1) / (1 + 2 w1) blur along dim of an HxWxC image, edges replicated."""
    n = x.shape[dim]
    prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    return (x + w1 * (prev + nxt)) * (1.0 / (1.0 + 2.0 * w1))
