"""Colour-to-depth registration for recordings whose colour and depth cameras differ.

The tracker and the map treat a pixel's colour and depth as one observation of one
surface point, so a colour image taken through another lens (another focal length, a few
centimetres to the side) has to be resampled into the depth camera's view first, as an
RGB-D driver's "depth_registered" mode does on a live sensor. Left unregistered, a pan
moves the colour image by f_rgb * angle pixels where the model expects f_depth * angle,
and the photometric term pulls the estimated rotation by their ratio (7-Scenes: 525 /
585, about 10%).

Written here with numpy and cv2.remap: each depth pixel is back-projected, moved into the
colour camera and projected there; pixels without depth use a fixed fallback distance
(where the parallax of a few centimetres of baseline is a pixel or two).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class ColorCamera:
    """The colour camera relative to the depth camera: pinhole intrinsics at the images'
    resolution and the rigid transform taking depth-camera points into colour-camera
    points (OpenCV axes, metres)."""

    fx: float
    fy: float
    cx: float
    cy: float
    rgb_from_depth: np.ndarray  # [4, 4]

    def scaled(self, sx: float, sy: float) -> "ColorCamera":
        """The same camera for images resized by (sx, sy)."""
        return ColorCamera(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, self.rgb_from_depth)


@lru_cache(maxsize=8)
def _rotated_rays(h: int, w: int, K: tuple, R: tuple) -> np.ndarray:
    """[H, W, 3] float32 R @ (x/z, y/z, 1) of each depth pixel: a colour-camera point is
    then depth * ray + t, two multiply-adds per pixel instead of a back-projection."""
    fx, _, cx, _, fy, cy = K[:6]
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1)
    return (rays @ np.array(R).reshape(3, 3).T).astype(np.float32)


def register_color(rgb: np.ndarray, depth: np.ndarray, depth_K: np.ndarray, cam: ColorCamera,
                   fallback_depth: float = 2.0) -> np.ndarray:
    """[H, W, 3] colour resampled onto the depth image's pixel grid (same size as depth).

    depth: [H, W] metres (0 or non-finite: no depth). Occlusion between the two views is
    not resolved: at a depth edge a pixel may take the colour of the surface behind."""
    h, w = depth.shape
    z = np.where(np.isfinite(depth) & (depth > 0), depth, fallback_depth).astype(np.float32)
    K = np.asarray(depth_K, dtype=np.float64)
    rays = _rotated_rays(h, w, (K[0, 0], K[0, 1], K[0, 2], K[1, 0], K[1, 1], K[1, 2]),
                         tuple(np.asarray(cam.rgb_from_depth[:3, :3], dtype=np.float64).ravel()))
    t = np.asarray(cam.rgb_from_depth[:3, 3], dtype=np.float32)
    qx = z * rays[..., 0] + t[0]
    qy = z * rays[..., 1] + t[1]
    qz = np.maximum(z * rays[..., 2] + t[2], 1e-6)
    map_x = cam.fx * qx / qz + cam.cx
    map_y = cam.fy * qy / qz + cam.cy
    return cv2.remap(rgb, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
