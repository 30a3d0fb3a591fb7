"""Random but plausible materials: palettes of real-world finishes with per-object jitter."""
from __future__ import annotations

import colorsys

import numpy as np

from . import textures as tx
from .scene import SceneBuilder

WOODS = [(0.76, 0.58, 0.38), (0.45, 0.29, 0.17), (0.62, 0.36, 0.22), (0.86, 0.80, 0.70),
         (0.28, 0.19, 0.13), (0.80, 0.67, 0.46), (0.55, 0.42, 0.30)]
FABRICS = [(0.45, 0.47, 0.50), (0.20, 0.25, 0.40), (0.78, 0.72, 0.62), (0.42, 0.46, 0.30),
           (0.50, 0.16, 0.18), (0.18, 0.45, 0.47), (0.80, 0.62, 0.20), (0.30, 0.30, 0.32),
           (0.65, 0.55, 0.70), (0.85, 0.85, 0.82), (0.55, 0.30, 0.20)]
PAINTS = [(0.93, 0.92, 0.88), (0.94, 0.90, 0.80), (0.82, 0.83, 0.82), (0.76, 0.84, 0.90),
          (0.76, 0.83, 0.74), (0.93, 0.83, 0.82), (0.88, 0.80, 0.68), (0.95, 0.92, 0.72),
          (0.62, 0.70, 0.78), (0.85, 0.75, 0.62)]
ACCENTS = [(0.20, 0.30, 0.45), (0.60, 0.25, 0.20), (0.25, 0.45, 0.35), (0.85, 0.65, 0.30),
           (0.35, 0.35, 0.38), (0.55, 0.40, 0.60)]
FURNITURE_PAINTS = [(0.95, 0.95, 0.93), (0.20, 0.20, 0.22), (0.60, 0.62, 0.65), (0.35, 0.45, 0.55),
                    (0.88, 0.86, 0.80), (0.45, 0.52, 0.42)]
CERAMIC = (0.93, 0.93, 0.92)
METALS = [(0.72, 0.73, 0.75), (0.90, 0.90, 0.88), (0.18, 0.18, 0.19), (0.55, 0.56, 0.58)]
STONES = [((0.88, 0.87, 0.85), (0.45, 0.45, 0.47)), ((0.20, 0.20, 0.22), (0.70, 0.70, 0.72)),
          ((0.80, 0.74, 0.64), (0.50, 0.40, 0.30)), ((0.60, 0.62, 0.60), (0.30, 0.32, 0.30))]


def jitter(rng, rgb, amount=0.06, sat=0.1):
    """Small random shift of lightness and saturation, so no two objects match exactly."""
    h, l, s = colorsys.rgb_to_hls(*np.clip(rgb, 0, 1))
    l = np.clip(l * (1 + rng.uniform(-amount, amount)), 0.03, 0.97)
    s = np.clip(s * (1 + rng.uniform(-sat, sat) * 3), 0, 1)
    h = (h + rng.uniform(-0.02, 0.02)) % 1.0
    return np.array(colorsys.hls_to_rgb(h, l, s))


def pick(rng, options):
    return options[int(rng.integers(len(options)))]


def shade(rgb, f):
    return np.clip(np.asarray(rgb, float) * f, 0, 1)


def random_hue(rng, lo_l=0.3, hi_l=0.75, lo_s=0.3, hi_s=0.8):
    return np.array(colorsys.hls_to_rgb(rng.uniform(), rng.uniform(lo_l, hi_l), rng.uniform(lo_s, hi_s)))


class Materials:
    """Material factory bound to a scene builder and a random stream."""

    def __init__(self, builder: SceneBuilder, rng: np.random.Generator):
        self.b = builder
        self.rng = rng

    def _seed(self):
        return int(self.rng.integers(1, 2 ** 20))

    def wood(self, base=None, planks=False):
        r = self.rng
        c = jitter(r, base if base is not None else pick(r, WOODS))
        if planks:
            return self.b.material(tx.WOOD, c, shade(jitter(r, c, 0.15), 0.85), shade(c, 0.35), scale=1.0,
                                   params=(r.uniform(0.08, 0.2), r.uniform(0.8, 2.0), float(r.uniform() < 0.5)),
                                   seed=self._seed())
        return self.b.material(tx.WOOD, c, shade(c, 0.9), shade(c, 0.7), scale=1.0,
                               params=(r.uniform(0.3, 0.6), r.uniform(1.5, 3.0), 1.0), seed=self._seed())

    def fabric(self, base=None, plaid=None):
        r = self.rng
        c = jitter(r, base if base is not None else pick(r, FABRICS))
        plaid = r.uniform() < 0.3 if plaid is None else plaid
        period = r.uniform(0.06, 0.2) if plaid else 0.0
        return self.b.material(tx.FABRIC, c, jitter(r, pick(r, FABRICS)), shade(c, 1.3), params=(period,),
                               seed=self._seed())

    def paint(self, base=None, variation=1.0):
        r = self.rng
        c = jitter(r, base if base is not None else pick(r, FURNITURE_PAINTS), 0.04)
        return self.b.material(tx.PLAIN, c, shade(c, 0.95), params=(variation,), seed=self._seed())

    def ceramic(self):
        c = jitter(self.rng, CERAMIC, 0.02, 0.0)
        return self.b.material(tx.PLAIN, c, c, params=(0.3,), seed=self._seed())

    def metal(self, base=None):
        c = jitter(self.rng, base if base is not None else pick(self.rng, METALS), 0.04, 0.0)
        return self.b.material(tx.BRUSHED, c, seed=self._seed())

    def stone(self):
        r = self.rng
        a, v = pick(r, STONES)
        return self.b.material(tx.MARBLE, jitter(r, a, 0.04), jitter(r, v, 0.08), params=(r.uniform(1.0, 3.0),),
                               seed=self._seed())

    def panel(self, base=None, margin=None, panels=1, grain=None):
        r = self.rng
        grain = r.uniform() < 0.4 if grain is None else grain
        c = jitter(r, base if base is not None else (pick(r, WOODS) if grain else pick(r, FURNITURE_PAINTS)))
        return self.b.material(tx.PANEL, c, shade(c, 0.55), params=(margin or r.uniform(0.05, 0.12), panels,
                               float(grain)), seed=self._seed())

    def books(self):
        r = self.rng
        return self.b.material(tx.BOOKS, random_hue(r), random_hue(r), random_hue(r, 0.2, 0.6), seed=self._seed())

    def painting(self):
        r = self.rng
        return self.b.material(tx.PAINTING, random_hue(r, 0.2, 0.8), random_hue(r, 0.2, 0.8),
                               random_hue(r, 0.3, 0.9), seed=self._seed())

    def view(self):
        r = self.rng
        horizon = jitter(r, (0.85, 0.88, 0.92), 0.05)
        zenith = jitter(r, (0.45, 0.62, 0.88), 0.1)
        green = jitter(r, (0.25, 0.45, 0.2), 0.2)
        return self.b.material(tx.VIEW, horizon, green, zenith, params=(r.uniform(0.25, 0.55),),
                               seed=self._seed(), emissive=r.uniform(0.95, 1.1), glass=True)

    def wall_finish(self):
        r = self.rng
        base = jitter(r, pick(r, PAINTS), 0.04)
        u = r.uniform()
        if u < 0.45:
            return self.b.material(tx.PLAIN, base, jitter(r, base, 0.08), params=(1.0,), seed=self._seed())
        if u < 0.75:
            other = shade(base, r.uniform(0.8, 0.92)) if r.uniform() < 0.6 else jitter(r, pick(r, PAINTS))
            return self.b.material(tx.STRIPES, base, other, shade(base, 0.8),
                                   params=(r.uniform(0.08, 0.3), r.uniform(0.3, 0.6), 0), seed=self._seed())
        pattern = 1 if r.uniform() < 0.5 else 2
        return self.b.material(tx.STRIPES, base, shade(base, 0.85), jitter(r, pick(r, ACCENTS), 0.1),
                               params=(r.uniform(0.1, 0.25), r.uniform(0.3, 0.7), pattern), seed=self._seed())

    def floor_finish(self, kind=None):
        r = self.rng
        kind = kind or pick(r, ["wood", "wood", "tiles", "carpet"])
        if kind == "wood":
            return self.wood(planks=True)
        if kind == "tiles":
            a = jitter(r, pick(r, [(0.85, 0.84, 0.80), (0.55, 0.55, 0.56), (0.75, 0.68, 0.58), (0.3, 0.3, 0.32)]))
            grout = shade(a, r.uniform(0.5, 0.8)) if r.uniform() < 0.7 else np.array([0.9, 0.9, 0.88])
            return self.b.material(tx.TILES, a, grout, jitter(r, pick(r, ACCENTS)),
                                   params=(r.uniform(0.2, 0.6), r.uniform(0.004, 0.01), float(r.uniform() < 0.25)),
                                   seed=self._seed())
        a = jitter(r, pick(r, FABRICS))
        return self.b.material(tx.CARPET, a, shade(jitter(r, a, 0.1), 0.7), seed=self._seed())

    def wall_tiles(self):
        r = self.rng
        a = jitter(r, pick(r, [(0.93, 0.93, 0.9), (0.8, 0.87, 0.9), (0.85, 0.85, 0.8), (0.6, 0.72, 0.7),
                               (0.9, 0.86, 0.78)]), 0.04)
        return self.b.material(tx.TILES, a, shade(a, r.uniform(0.55, 0.8)), jitter(r, pick(r, ACCENTS)),
                               params=(r.uniform(0.1, 0.25), r.uniform(0.003, 0.006), float(r.uniform() < 0.15)),
                               seed=self._seed())

    def rug(self):
        r = self.rng
        if r.uniform() < 0.5:
            return self.b.material(tx.STRIPES, jitter(r, pick(r, FABRICS)), jitter(r, pick(r, ACCENTS)),
                                   jitter(r, pick(r, FABRICS)), params=(r.uniform(0.1, 0.3), 0.4, int(r.integers(0, 3))),
                                   seed=self._seed())
        return self.fabric(plaid=True)

    def ceiling(self):
        c = jitter(self.rng, (0.95, 0.95, 0.93), 0.02, 0.0)
        return self.b.material(tx.PLAIN, c, c, params=(0.5,), seed=self._seed())

    def lamp(self):
        c = jitter(self.rng, (1.0, 0.97, 0.88), 0.02, 0.0)
        return self.b.material(tx.PLAIN, c, c, params=(0.2,), seed=self._seed(), emissive=1.0)

    def foliage(self):
        r = self.rng
        g = jitter(r, (0.22, 0.42, 0.18), 0.2)
        return self.b.material(tx.CARPET, g, shade(g, 0.5), seed=self._seed())
