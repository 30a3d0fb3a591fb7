"""Planar filling of large depth holes before a keyframe is mapped.

Depth sensors return nothing on glass, on dark or shiny surfaces, in dropout blobs and
beyond their range, so an RGB-D map has no Gaussians there and every later view of the
spot renders empty: on the synthetic rooms a window pane (its outside view painted on the
glass) is a third of some frames, and a far wall past the 6 m limit a fifth of room 902's.
When the valid pixels around a hole lie on one plane (the window frame, the wall around a
dropout), the hole is most likely that plane too: its pixels get the depth of the
ray-plane intersection, and mapping places Gaussians there. When they do not, the hole
takes those of the frame's dominant planes that a good part of its surroundings lies on
and that no surrounding point lies behind: a wall continues behind the plant or the
curtain in front of it, and two walls meet in the far corner beyond the range; a nearer
surface through which a farther one shows does not continue. Each pixel takes the
nearest such plane (seen from inside a room, the first wall a ray meets), and behind an
occluder only within a quarter of the image width of the surroundings that lie on it (a
hole can sprawl from a near object round the border to a far wall). Where no such plane
reaches and the hole's surroundings lie at the range limit in good part (a far wall seen
only as speckles), a backdrop facing the camera at that depth takes the rest. What this
cannot know: a surface hidden in the hole itself (the side of a pillar seen edge-on)
gets the wall behind it. Tracking and depth fusion keep using the measured depth only.

Done on the host with OpenCV and numpy (connected components, a dilation per hole, a
small RANSAC for the frame's planes only when a hole needs them) because holes are few
and irregular; a 640x480 keyframe costs 9-22 ms with one-plane holes only and 24-30 ms
with the rest (medians on a 2-core CPU, benchmarks/depth_fill.py).
"""
from __future__ import annotations

from typing import List, Tuple

import cv2
import numpy as np


def fill_planar_holes(depth: np.ndarray, K: np.ndarray, min_area: int = 64, max_fraction: float = 0.6,
                      ring: int = 4, min_ring_points: int = 40, max_rms: float = 0.006,
                      min_depth: float = 0.1, max_depth: float = 6.0,
                      min_incidence: float = 0.2, min_solidity: float = 0.2,
                      occluded_fill: bool = True, open_radius: int = 3,
                      occluded_reach: float = 0.25, beyond_range: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """(filled depth, mask of filled pixels) for an [H, W] float depth image in metres
    (0 or non-finite = no measurement) and 3x3 intrinsics K.

    A hole (8-connected invalid region after an opening of open_radius, which cuts off
    thin bands along object edges) is considered when it has at least min_area pixels and
    at most max_fraction of the image and covers at least min_solidity of its bounding
    box. If the valid pixels within `ring` pixels of it (at least min_ring_points) fit one
    plane with an RMS distance below max_rms metres (+0.5% of their depth), the hole is
    filled with it when every filled depth lies in [min_depth, max_depth] at a ray-plane
    incidence cosine above min_incidence. Otherwise, with occluded_fill, the frame's
    planes judged on a ring three times as wide fill the pixels where the nearest of them
    meets those limits (see the module docstring); behind an occluder a plane reaches at
    most occluded_reach x the image width from the ring pixels that lie on it. With
    beyond_range > 0 (metres), a hole whose wide ring lies that far or farther in good part
    also gets a backdrop there (_beyond_range_backdrop).
    """
    d = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    H, W = d.shape
    invalid = (d <= 0).astype(np.uint8)
    out = d.copy()
    filled = np.zeros((H, W), bool)
    if not invalid.any():
        return out, filled
    if open_radius > 0:
        # Thin bands of missing depth (object edges, grazing angles) join separate holes
        # into one component spanning many surfaces; an opening cuts them off so each hole
        # is judged on its own ring, and the bands themselves stay empty.
        k = 2 * open_radius + 1
        invalid = cv2.morphologyEx(invalid, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(invalid, connectivity=8)
    planes = None                                   # the frame's planes, found when first needed
    areas = stats[:, cv2.CC_STAT_AREA]
    # Compact holes only: a thin ragged band (missing depth along an object's edge) fills
    # a small part of its bounding box and borders two surfaces anyway.
    solidity = areas / np.maximum(stats[:, cv2.CC_STAT_WIDTH] * stats[:, cv2.CC_STAT_HEIGHT], 1)
    big = np.nonzero((areas >= min_area) & (areas <= max_fraction * H * W) & (solidity >= min_solidity))[0]
    for c in big[big > 0]:                        # label 0 is the valid pixels
        x0, y0, w, h, area = (int(v) for v in stats[c])
        m = 3 * ring                                # crop margin: room for the wide ring
        xa, ya = max(0, x0 - m), max(0, y0 - m)
        xb, yb = min(W, x0 + w + m), min(H, y0 + h + m)
        hole = lab[ya:yb, xa:xb] == c
        zc = d[ya:yb, xa:xb]
        P, z = _ring_points(_ring_mask(hole, zc, ring), zc, xa, ya, K)
        if z.size < min_ring_points:
            continue
        centre = P.mean(0)
        evals, evecs = np.linalg.eigh((P - centre).T @ (P - centre))   # ascending: the normal first
        cands, backdrop = [(evecs[:, 0], centre)], None
        occluded = np.sqrt(max(evals[0], 0.0) / P.shape[0]) > max_rms + 0.005 * float(np.median(z))
        if occluded:
            if not occluded_fill:
                continue
            if planes is None:
                planes = frame_planes(d, K, max_rms)
            # Judged on a wider ring: next to a hole beyond the sensor's range the few valid
            # depths are the ones noise pulled nearer, a biased sample of the wall.
            wide = _ring_mask(hole, zc, 3 * ring)
            Pw, zw = _ring_points(wide, zc, xa, ya, K)
            cands = _occluded_planes(Pw, zw, planes, max_rms)
            backdrop = _beyond_range_backdrop(zw, beyond_range, min_ring_points)
            if not cands and backdrop is None:
                continue
        # Rays (x/z, y/z, 1) of the hole's pixels. Of several planes each pixel takes the
        # nearest one in front of the camera: seen from inside a room, the first wall a ray
        # meets is the one it sees.
        vv, uu = np.nonzero(hole)
        rays = _rays(uu + xa, vv + ya, K)
        t, ok = np.full(uu.size, np.inf), np.zeros(uu.size, bool)
        if cands:
            ts = np.stack([_plane_depth(n, c, rays) for n, c in cands])
            ts = np.where(ts > 0, ts, np.inf)
            if occluded:
                ts = np.where(_near_support(wide, zc, xa, ya, K, cands, max_rms, occluded_reach * W)[:, vv, uu],
                              ts, np.inf)
            k = ts.argmin(0)
            t = ts[k, np.arange(uu.size)]
            normals = np.stack([n for n, _ in cands])[k]
            cos = np.abs((rays * normals).sum(1)) / np.linalg.norm(rays, axis=1)
            if not occluded:
                # One plane through the ring: all of the hole or none of it.
                if cos.min() < min_incidence or t.min() < min_depth or t.max() > max_depth:
                    continue
                ok = np.ones(uu.size, bool)
            else:
                ok = (cos >= min_incidence) & (t >= min_depth) & (t <= max_depth)
        if occluded and backdrop is not None and not ok.all():
            # Only where no frame plane reaches: the backdrop at the range limit lies in
            # front of the walls that form a far corner beyond it (room 902), and taking
            # the nearest plane would cut that corner off.
            rest = np.nonzero(~ok)[0]
            tb = _plane_depth(*backdrop, rays[rest])
            near = _near_support(wide, zc, xa, ya, K, [backdrop], max_rms, occluded_reach * W)[0, vv[rest], uu[rest]]
            okb = near & (tb >= min_depth) & (tb <= max_depth)
            t[rest[okb]] = tb[okb]
            ok[rest[okb]] = True
        out[vv[ok] + ya, uu[ok] + xa] = t[ok].astype(np.float32)
        filled[vv[ok] + ya, uu[ok] + xa] = True
    return out, filled


def _rays(u: np.ndarray, v: np.ndarray, K: np.ndarray) -> np.ndarray:
    """[..., 3] rays (x/z, y/z, 1) of pixels (u, v): a point at depth z is rays * z. Numpy
    on the host, like the rest of this module (geometry.backproject is its torch twin for
    whole images)."""
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    return np.stack([(u - cx) / fx, (v - cy) / fy, np.ones(np.shape(u))], -1)


def _ring_mask(hole: np.ndarray, zc: np.ndarray, width: int) -> np.ndarray:
    """The valid pixels within `width` pixels of a hole (hole and zc: crops)."""
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    return cv2.dilate(hole.view(np.uint8), k).astype(bool) & ~hole & (zc > 0)


def _ring_points(around: np.ndarray, zc: np.ndarray, xa: int, ya: int, K: np.ndarray,
                 max_points: int = 4000) -> Tuple[np.ndarray, np.ndarray]:
    """Camera-frame points and depths of a ring's pixels (_ring_mask; crops whose top-left
    pixel is (xa, ya))."""
    vs, us = np.nonzero(around)
    if vs.size > max_points:                         # plenty for a plane: keep the fit cheap
        keep = np.linspace(0, vs.size - 1, max_points).astype(np.int64)
        vs, us = vs[keep], us[keep]
    z = zc[vs, us].astype(np.float64)
    return _rays(us + xa, vs + ya, K) * z[:, None], z


def _tolerance(z: np.ndarray, max_rms: float) -> np.ndarray:
    """Point-to-plane distance (m) still counted as on the plane: grows with depth like the noise."""
    return 2.0 * (max_rms + 0.005 * z)


def frame_planes(d: np.ndarray, K: np.ndarray, max_rms: float = 0.006, grid: int = 0, max_planes: int = 6,
                 iterations: int = 128, min_support: float = 0.04, reach: int = 4) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The frame's dominant planes as (unit normal, point), largest first, by sequential
    RANSAC on every grid-th valid pixel (default: about 80 x 60 of them). Each sample's
    three points lie within `reach` grid cells of each other, so they mostly share a
    surface and a wall seen in a tenth of the frame is found in a hundred tries. Written
    here rather than taken from Open3D (not a dependency): a few vectorised lines.
    Deterministic (fixed seed)."""
    grid = grid or max(1, d.shape[1] // 80)          # about 80 x 60 samples at any size
    v, u = np.mgrid[grid // 2:d.shape[0]:grid, grid // 2:d.shape[1]:grid]
    z = d[v, u].astype(np.float64)
    gh, gw = z.shape
    P = (_rays(u, v, K) * z[..., None]).reshape(-1, 3)
    z = z.reshape(-1)
    tol = _tolerance(z, max_rms)
    rng = np.random.default_rng(0)
    planes = []
    left = z > 0
    total = int(left.sum())
    while len(planes) < max_planes and left.sum() >= max(min_support * total, 3):
        seeds = rng.choice(np.nonzero(left)[0], size=iterations)
        r0, c0 = seeds // gw, seeds % gw
        off = rng.integers(-reach, reach + 1, size=(2, 2, iterations))
        r12 = np.clip(r0 + off[:, 0], 0, gh - 1)
        c12 = np.clip(c0 + off[:, 1], 0, gw - 1)
        i1, i2 = r12[0] * gw + c12[0], r12[1] * gw + c12[1]
        A = P[seeds]
        nrm = np.cross(P[i1] - A, P[i2] - A)
        length = np.linalg.norm(nrm, axis=1)
        good = (length > 1e-9) & left[i1] & left[i2]
        if not good.any():
            break
        nrm, A = nrm[good] / length[good, None], A[good]
        rows = np.nonzero(left)[0]
        Q, tq = P[rows], tol[rows]
        inl = np.abs(Q @ nrm.T - (nrm * A).sum(1)[None]) < tq[:, None]      # [points, samples]
        best = inl[:, int(inl.sum(0).argmax())]
        if best.sum() < min_support * total:
            break
        for _ in range(3):                          # refit on the inliers, re-select them
            c = Q[best].mean(0)
            normal = np.linalg.eigh((Q[best] - c).T @ (Q[best] - c))[1][:, 0]
            best = np.abs((Q - c) @ normal) < tq
            if best.sum() < 3:
                break
        planes.append((normal, c))
        left[rows[np.abs((Q - c) @ normal) < tq]] = False
    return planes


def _plane_depth(normal: np.ndarray, point: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Depth (z) at which rays (x/z, y/z, 1) meet the plane; inf where nearly parallel."""
    den = rays @ normal
    safe = np.abs(den) > 1e-6
    return np.where(safe, (point @ normal) / np.where(safe, den, 1.0), np.inf)


def _beyond_range_backdrop(z: np.ndarray, beyond_range: float, min_points: int, min_share: float = 0.1):
    """A plane facing the camera at the median depth of the ring's far points, when at
    least min_share of the ring (and min_points) lies at beyond_range or farther; else None.

    A wall past the sensor's range is seen only where noise pulls its depth inside the
    range: a few speckles at the limit, too few and too biased for a plane of their own
    (synthetic room 910's far wall, 6-6.75 m, left empty and rendered black in a fifth of
    every view). The hole's surface lies at least that far, so a backdrop at the range
    limit is the nearest guess that agrees with the sensor; a slant cannot be recovered
    from depths cut off at the limit, so it faces the camera. It fills only the pixels no
    frame plane reaches (fill_planar_holes)."""
    if beyond_range <= 0 or z.size == 0:
        return None
    far = z >= beyond_range
    if far.sum() < min_points or far.mean() < min_share:
        return None
    return np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, float(np.median(z[far]))])


def _occluded_planes(P: np.ndarray, z: np.ndarray, planes, max_rms: float, min_ring_support: float = 0.1,
                     max_behind_fraction: float = 0.03, near: float = 3.0):
    """The frame planes a hole continues when its ring is not one plane: each plane a good
    part of the ring lies on, provided no ring point lies behind it. A wall seen past a
    plant or a curtain, or beyond the sensor's range, continues behind them; a gap through
    which something farther shows puts ring points behind the plane and is not filled
    with it. A hole at a room's far corner has the two walls."""
    tol = _tolerance(z, max_rms)
    rays = P / z[:, None]
    keep = []
    for normal, point in planes:
        t = _plane_depth(normal, point, rays)
        support = float(_on_plane(z, t, tol, near).mean())
        behind = float(((t > 0) & (z > t + tol)).mean())
        if support >= min_ring_support and behind <= max_behind_fraction:
            keep.append((normal, point))
    return keep


def _on_plane(z: np.ndarray, t: np.ndarray, tol: np.ndarray, near: float) -> np.ndarray:
    """Ring depths z that lie on a plane met at depth t, or up to `near` tolerances in
    front of it (the ring's support for continuing that plane across the hole)."""
    return (z < t + tol) & (z > t - near * tol)


def _near_support(around: np.ndarray, zc: np.ndarray, xa: int, ya: int, K: np.ndarray, cands,
                  max_rms: float, reach: float, near: float = 3.0) -> np.ndarray:
    """[planes, h, w] bool over a hole's crop (`around`: its wide ring, _ring_mask):
    pixels within `reach` pixels of a ring pixel
    lying on that plane, or nearer to one than to a ring pixel lying on none of the
    candidates.

    A hole can sprawl across surfaces at very different depths (7-Scenes frames 385-388:
    one component runs from the chairs below the table's edge, too near for the sensor,
    round the image border to the dark cabinet 3 m away). Its ring as a whole supports the
    far wall, and filling the whole of it put that wall, 4 m away, below the table. A plane
    now continues behind an occluder (ring pixels on no candidate) only up to `reach`
    pixels from where the ring shows it; away from occluders (a wall past the sensor's
    range, ringed by walls) it fills the hole as before."""
    vs, us = np.nonzero(around)
    z = zc[vs, us].astype(np.float64)
    rays = _rays(us + xa, vs + ya, K)
    tol = _tolerance(z, max_rms)
    on = np.stack([_on_plane(z, _plane_depth(n, c, rays), tol, near) for n, c in cands])
    dist = []
    for mask in list(on) + [~on.any(0)]:
        img = np.ones(around.shape, np.uint8)
        img[vs[mask], us[mask]] = 0
        dist.append(cv2.distanceTransform(img, cv2.DIST_L2, 3) if mask.any() else np.full(around.shape, np.inf, np.float32))
    d = np.stack(dist[:-1])
    return (d <= dist[-1][None]) | (d <= reach)


def mapping_depth(depth: np.ndarray, K: np.ndarray, cfg) -> Tuple[np.ndarray, np.ndarray]:
    """(depth a keyframe is mapped with, mask of filled pixels) under a MappingConfig: the
    measured depth up to cfg.max_depth, holes filled up to cfg.fill_holes_max_depth. The
    pipeline maps with it and training feeds it to the networks, so both see the same."""
    measured = np.where(np.isfinite(depth) & (depth < cfg.max_depth), depth, 0.0).astype(np.float32)
    if cfg.fill_holes_min_area <= 0:
        return measured, np.zeros(measured.shape, bool)
    return fill_planar_holes(measured, K, min_area=cfg.fill_holes_min_area, min_depth=cfg.min_depth,
                             max_depth=cfg.fill_holes_max_depth, occluded_fill=cfg.fill_holes_occluded,
                             occluded_reach=cfg.fill_holes_occluded_reach,
                             beyond_range=cfg.fill_holes_beyond_range)
