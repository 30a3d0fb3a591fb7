"""The ScanNet-20 label set the synthetic scenes are annotated with, and a colour map."""
from __future__ import annotations

import numpy as np

from ...core.config import SCANNET20_CLASSES
from ...core.palette import SCANNET20_PALETTE, colorize_labels as _colorize

# The label set is the pipeline's default class list (core/config), so labels and the
# classes the map is configured with cannot drift apart.
CLASS_ID = {name: i for i, name in enumerate(SCANNET20_CLASSES)}
UNLABELLED = 255  # surfaces outside the class set (the ceiling)

# Distinct colours for looking at label images (not used by any algorithm).
PALETTE = SCANNET20_PALETTE        # core/palette: the colours every picture of the project uses


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """HxW class ids -> HxWx3 uint8; unlabelled (255) is black."""
    return _colorize(labels, len(PALETTE), unknown=(0, 0, 0))
