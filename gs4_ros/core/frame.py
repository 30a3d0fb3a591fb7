"""Frames and camera intrinsics shared by every layer.

Images are numpy at the edges (HxWx3 uint8 colour, HxW float32 depth in metres, 0 =
invalid); the pipeline moves them to torch on its device.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import torch


class FrameError(ValueError):
    """A frame that cannot be used (sizes, encodings, empty depth): callers skip it."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of width x height."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self):
        if not (self.fx > 0 and self.fy > 0):
            raise FrameError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise FrameError(f"image size must be positive, got {self.width}x{self.height}")

    def K(self, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.tensor(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]],
            device=device,
            dtype=dtype,
        )

    def K_numpy(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics for the same camera resampled to width x height.

        Pixel centres sit at +0.5, so the principal point scales as (c + 0.5) * s - 0.5.
        """
        sx, sy = width / self.width, height / self.height
        return Intrinsics(
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
            width=int(width),
            height=int(height),
        )

    @staticmethod
    def from_K(K, width: int, height: int) -> "Intrinsics":
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        return Intrinsics(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                          int(width), int(height))


@dataclass
class RGBDFrame:
    """One synchronised RGB-D observation, as every source (dataset, bag, ROS) delivers it.

    `labels` holds optional per-pixel class ids (255 = unknown) from ground truth or an
    external segmenter; `gt_pose` is camera-to-world when a dataset has it.
    """

    index: int
    timestamp: float
    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: Intrinsics
    gt_pose: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    meta: dict = field(default_factory=dict)

    def validate(self, min_valid_fraction: float = 0.01) -> "RGBDFrame":
        """Raise FrameError with a readable reason if the frame cannot be tracked or mapped."""
        rgb, depth, intr = self.rgb, self.depth, self.intrinsics
        if rgb is None or depth is None:
            raise FrameError("frame has no colour or no depth image")
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise FrameError(f"colour must be HxWx3 uint8, got shape {rgb.shape} dtype {rgb.dtype}")
        if depth.ndim != 2 or depth.dtype != np.float32:
            raise FrameError(f"depth must be HxW float32 metres, got shape {depth.shape} dtype {depth.dtype}")
        if rgb.shape[:2] != depth.shape:
            raise FrameError(f"colour {rgb.shape[1]}x{rgb.shape[0]} and depth "
                             f"{depth.shape[1]}x{depth.shape[0]} differ in size")
        if (intr.height, intr.width) != depth.shape:
            raise FrameError(f"intrinsics are for {intr.width}x{intr.height} but the images are "
                             f"{depth.shape[1]}x{depth.shape[0]}")
        if self.labels is not None and self.labels.shape != depth.shape:
            raise FrameError(f"label image {self.labels.shape} does not match depth {depth.shape}")
        finite = np.isfinite(depth)
        valid = finite & (depth > 0)
        frac = float(valid.mean())
        if frac < min_valid_fraction:
            raise FrameError(f"only {100 * frac:.2f}% of depth pixels are valid (NaN, zero or "
                             f"negative elsewhere); need at least {100 * min_valid_fraction:.1f}%")
        return self

    def sanitized(self) -> "RGBDFrame":
        """Copy with NaN/inf/negative depth set to 0 (the invalid marker)."""
        d = self.depth
        bad = ~np.isfinite(d) | (d < 0)
        if bad.any():
            d = d.copy()
            d[bad] = 0.0
            return replace(self, depth=d)
        return self

    def resized(self, width: int, height: int) -> "RGBDFrame":
        """Downsample colour (area) and depth/labels (nearest, so no mixed depths)."""
        import cv2

        if (width, height) == (self.intrinsics.width, self.intrinsics.height):
            return self
        rgb = cv2.resize(self.rgb, (width, height), interpolation=cv2.INTER_AREA)
        depth = cv2.resize(self.depth, (width, height), interpolation=cv2.INTER_NEAREST)
        labels = None
        if self.labels is not None:
            labels = cv2.resize(self.labels, (width, height), interpolation=cv2.INTER_NEAREST)
        return replace(self, rgb=rgb, depth=depth, labels=labels,
                       intrinsics=self.intrinsics.scaled(width, height))
