"""The ScanNet-20 label set the synthetic scenes are annotated with, and a colour map."""
from __future__ import annotations

import numpy as np

SCANNET20_CLASSES = [
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "otherfurniture",
]
CLASS_ID = {name: i for i, name in enumerate(SCANNET20_CLASSES)}
UNLABELLED = 255  # surfaces outside the class set (the ceiling)

# Distinct colours for looking at label images (not used by any algorithm).
PALETTE = np.array([
    [174, 199, 232], [152, 223, 138], [31, 119, 180], [255, 187, 120], [188, 189, 34],
    [140, 86, 75], [255, 152, 150], [214, 39, 40], [197, 176, 213], [148, 103, 189],
    [196, 156, 148], [23, 190, 207], [247, 182, 210], [219, 219, 141], [255, 127, 14],
    [158, 218, 229], [44, 160, 44], [112, 128, 144], [227, 119, 194], [82, 84, 163],
], dtype=np.uint8)


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """HxW class ids -> HxWx3 uint8; unlabelled (255) is black."""
    out = np.zeros(labels.shape + (3,), np.uint8)
    ok = labels < len(PALETTE)
    out[ok] = PALETTE[labels[ok]]
    return out
