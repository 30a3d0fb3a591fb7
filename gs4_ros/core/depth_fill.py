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
holes are few and irregular; a keyframe costs a few milliseconds at 640x480.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np


def fill_planar_holes(depth: np.ndarray, K: np.ndarray, min_area: int = 64, max_fraction: float = 0.6,
                      ring: int = 4, min_ring_points: int = 40, max_rms: float = 0.006,
                      min_depth: float = 0.1, max_depth: float = 6.0,
                      min_incidence: float = 0.2) -> Tuple[np.ndarray, np.ndarray]:
    """(filled depth, mask of filled pixels) for an [H, W] float depth image in metres
    (0 or non-finite = no measurement) and 3x3 intrinsics K.

    A hole (8-connected invalid region) is filled when it has at least min_area pixels and
    at most max_fraction of the image, the valid pixels within `ring` pixels of it number
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
    kernel = np.ones((3, 3), np.uint8)
    for c in range(1, n):
        x0, y0, w, h, area = (int(v) for v in stats[c])
        if area < min_area or area > max_fraction * H * W:
            continue
        xa, ya = max(0, x0 - ring), max(0, y0 - ring)
        xb, yb = min(W, x0 + w + ring), min(H, y0 + h + ring)
        hole = lab[ya:yb, xa:xb] == c
        around = cv2.dilate(hole.astype(np.uint8), kernel, iterations=ring).astype(bool) & ~hole
        zc = d[ya:yb, xa:xb]
        around &= zc > 0
        vs, us = np.nonzero(around)
        if vs.size < min_ring_points:
            continue
        z = zc[vs, us].astype(np.float64)
        P = np.stack([(us + xa - cx) / fx * z, (vs + ya - cy) / fy * z, z], 1)
        centre = P.mean(0)
        _, sv, vt = np.linalg.svd(P - centre, full_matrices=False)
        normal = vt[2]
        rms = sv[2] / np.sqrt(P.shape[0])
        if rms > max_rms + 0.005 * float(np.median(z)):
            continue
        hv, hu = np.nonzero(hole)
        rays = np.stack([(hu + xa - cx) / fx, (hv + ya - cy) / fy, np.ones(hu.size)], 1)
        den = rays @ normal
        cos = np.abs(den) / np.linalg.norm(rays, axis=1)
        if cos.min() < min_incidence:
            continue
        t = (centre @ normal) / den                  # depth along z (rays have z = 1)
        if t.min() < min_depth or t.max() > max_depth:
            continue
        out[hv + ya, hu + xa] = t.astype(np.float32)
        filled[hv + ya, hu + xa] = True
    return out, filled
