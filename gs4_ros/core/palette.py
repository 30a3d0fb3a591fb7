"""Class colours, one set for every picture the project makes: RViz clouds and rendered
semantic images, evaluation reports and the synthetic rooms' previews (they had three
copies, two of them with other colours than RViz showed).

The first 20 are ScanNet's benchmark colours, so maps look as ScanNet-20 results usually
do; further classes (a longer configured class list) walk the hue circle by the golden
ratio, which keeps neighbours apart however many there are.
"""
from __future__ import annotations

import colorsys

import numpy as np

SCANNET20_PALETTE = np.array([
    (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34),
    (140, 86, 75), (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189),
    (196, 156, 148), (23, 190, 207), (247, 182, 210), (219, 219, 141), (255, 127, 14),
    (158, 218, 229), (44, 160, 44), (112, 128, 144), (227, 119, 194), (82, 84, 163),
], dtype=np.uint8)


def class_palette(n: int, unknown=(128, 128, 128)) -> np.ndarray:
    """(n+1)x3 uint8: n class colours, then (index n) the colour of unknown."""
    cols = [tuple(int(c) for c in SCANNET20_PALETTE[i]) for i in range(min(n, len(SCANNET20_PALETTE)))]
    for i in range(len(cols), n):
        h = (i * 0.618033988749895) % 1.0
        s = 0.65 + 0.3 * ((i // 7) % 2)
        v = 0.95 - 0.25 * ((i // 3) % 2)
        cols.append(tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v)))
    cols.append(tuple(unknown))
    return np.asarray(cols, dtype=np.uint8).reshape(n + 1, 3)


def colorize_labels(labels: np.ndarray, num_classes: int = 20, unknown=(128, 128, 128)) -> np.ndarray:
    """Class ids (255 or >= num_classes = unknown) -> RGB uint8 of the same shape + 3."""
    pal = class_palette(num_classes, unknown)
    lab = np.asarray(labels).astype(np.int64)
    return pal[np.where((lab >= num_classes) | (lab < 0), num_classes, lab)]
