"""Colour words for queries ("red chair", "white door"): an object's colour is the name
whose prototype lies nearest (CIELAB) to the median of its Gaussians' colours.

Per Gaussian the name would flicker with texture and shading; over an object's Gaussians
the median is steady. Prototypes are plain sRGB swatches of the basic colour terms; Lab
distances between them are what separates e.g. brown from orange and grey from white.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

COLOURS: Dict[str, tuple] = {
    "red": (190, 35, 35), "orange": (230, 125, 30), "yellow": (230, 205, 50), "green": (50, 140, 60),
    "blue": (45, 75, 180), "purple": (115, 55, 145), "pink": (230, 140, 175), "brown": (115, 75, 45),
    "black": (25, 25, 25), "white": (240, 240, 235), "grey": (128, 128, 128),
    "beige": (215, 190, 150),       # light wood and sand: neither white nor brown
}
ALIASES = {"gray": "grey", "violet": "purple", "tan": "beige"}


def colour_word(word: str) -> Optional[str]:
    """The colour a word names ("gray" -> "grey"), or None."""
    w = ALIASES.get(word, word)
    return w if w in COLOURS else None


def _lab(rgb01: np.ndarray) -> np.ndarray:
    import cv2

    # float32 in [0, 1]: OpenCV then gives L in 0-100 and a, b unscaled (its 8-bit output
    # stretches L to 0-255, which would overweight lightness).
    f = np.clip(np.asarray(rgb01, np.float32), 0, 1).reshape(-1, 1, 3)
    return cv2.cvtColor(f, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)


_NAMES = list(COLOURS)
_PROTO = _lab(np.array([COLOURS[n] for n in _NAMES], np.float64) / 255.0)


def name_colour(rgb01: np.ndarray) -> str:
    """The colour name of a set of colours [M, 3] in [0, 1] (their median in Lab)."""
    lab = np.median(_lab(rgb01), axis=0)
    return _NAMES[int(np.argmin(((_PROTO - lab) ** 2).sum(-1)))]
