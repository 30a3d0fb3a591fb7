"""Planar filling of large depth holes before a keyframe is mapped.

Depth sensors return nothing on glass, on dark or shiny surfaces and in dropout blobs, so
an RGB-D map has no Gaussians there and every later view of the spot renders empty: on
the synthetic rooms a window pane (its outside view painted on the glass) is a third of
some frames. When the valid pixels around a hole lie on one plane (the window frame, the
wall around a dropout), the hole is most likely that plane too: its pixels get the depth
of the ray-plane intersection, and mapping places Gaussians there. Holes between
surfaces at different depths (object edges) fail the plane fit and stay empty. Tracking
and depth fusion keep using the measured depth only.

Done on the host with OpenCV (connected components, a dilation per hole) because the
holes are few and irregular; a 640x480 keyframe costs 5-9 ms on a 2-core CI machine.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np


def fill_planar_holes(depth: np.ndarray, K: np.ndarray, min_area: int = 64, max_fraction: float = 0.6,
                      ring: int = 4, min_ring_points: int = 40, max_rms: float = 0.006,
                      min_depth: float = 0.1, max_depth: float = 6.0,
                      min_incidence: float = 0.2, min_solidity: float = 0.2) -> Tuple[np.ndarray, np.ndarray]:
    """(filled depth, mask of filled pixels) for an [H, W] float depth image in metres
    (0 or non-finite = no measurement) and 3x3 intrinsics K.

    A hole (8-connected invalid region) is filled when it has at least min_area pixels and
    at most max_fraction of the image, covers at least min_solidity of its bounding box,
    the valid pixels within `ring` pixels of it number
    at least min_ring_points and fit a plane with an RMS distance below max_rms metres
    (+0.5% of their depth), and every filled depth lies in [min_depth, max_depth] at a
    ray-plane incidence cosine above min_incidence.
    """
    d = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    H, W = d.shape
    invalid = (d <= 0).astype(np.uint8)
    out = d.copy()
    filled = np.zeros((H, W), bool)
    if not invalid.any():
        return out, filled
    n, lab, stats, _ = cv2.connectedComponentsWithStats(invalid, connectivity=8)
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    kernel = np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)
    areas = stats[:, cv2.CC_STAT_AREA]
    # Compact holes only: a thin ragged band (missing depth along an object's edge) fills
    # a small part of its bounding box and borders two surfaces anyway.
    solidity = areas / np.maximum(stats[:, cv2.CC_STAT_WIDTH] * stats[:, cv2.CC_STAT_HEIGHT], 1)
    big = np.nonzero((areas >= min_area) & (areas <= max_fraction * H * W) & (solidity >= min_solidity))[0]
    for c in big[big > 0]:                        # label 0 is the valid pixels
        x0, y0, w, h, area = (int(v) for v in stats[c])
        xa, ya = max(0, x0 - ring), max(0, y0 - ring)
        xb, yb = min(W, x0 + w + ring), min(H, y0 + h + ring)
        hole = lab[ya:yb, xa:xb] == c
        around = cv2.dilate(hole.view(np.uint8), kernel).astype(bool) & ~hole
        zc = d[ya:yb, xa:xb]
        around &= zc > 0
        vs, us = np.nonzero(around)
        if vs.size < min_ring_points:
            continue
        if vs.size > 4000:                          # plenty for a plane: keep the fit cheap
            keep = np.linspace(0, vs.size - 1, 4000).astype(np.int64)
            vs, us = vs[keep], us[keep]
        z = zc[vs, us].astype(np.float64)
        P = np.stack([(us + xa - cx) / fx * z, (vs + ya - cy) / fy * z, z], 1)
        centre = P.mean(0)
        X = P - centre
        evals, evecs = np.linalg.eigh(X.T @ X)       # ascending: the normal first
        normal = evecs[:, 0]
        rms = np.sqrt(max(evals[0], 0.0) / P.shape[0])
        if rms > max_rms + 0.005 * float(np.median(z)):
            continue
        # Rays (x/z, y/z, 1) of the crop's pixels, as separable row and column terms.
        rx = ((np.arange(xa, xb) - cx) / fx).astype(np.float32)
        ry = ((np.arange(ya, yb) - cy) / fy).astype(np.float32)
        normal = normal.astype(np.float32)
        den = (normal[0] * rx[None, :] + normal[1] * ry[:, None] + normal[2])[hole]
        cos = np.abs(den) / np.sqrt(rx[None, :] ** 2 + ry[:, None] ** 2 + 1.0)[hole]
        if cos.min() < min_incidence:
            continue
        t = (centre @ normal) / den                  # depth along z (rays have z = 1)
        if t.min() < min_depth or t.max() > max_depth:
            continue
        out[ya:yb, xa:xb][hole] = t.astype(np.float32)
        filled[ya:yb, xa:xb][hole] = True
    return out, filled
