"""Hand-held camera trajectories through the free space of a synthetic room.

Paths look like someone walking a sensor around: a smooth spline through waypoints in free
floor space, a varying walking speed (0.2-0.55 m/s), gaze that moves between pieces of
furniture with limited yaw and pitch rates, slow height and roll drift, and a little
high-frequency jitter. The `loop` variant circles the room and ends where (and looking
where) it started, for loop-closure tests. Poses are camera-to-world, OpenCV axes.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline

from .scene import Scene

MAX_STEP_M = 0.04
MAX_STEP_DEG = 2.0


def look_rotation(forward: np.ndarray, roll: np.ndarray | float = 0.0) -> np.ndarray:
    """Camera-to-world rotations [..., 3, 3] (columns right, down, forward) for forward
    vectors [..., 3] in a z-up world, rolled about the forward axis."""
    f = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    up = np.broadcast_to(np.array([0.0, 0.0, 1.0]), f.shape)
    r = np.cross(f, up)
    r /= np.linalg.norm(r, axis=-1, keepdims=True)
    d = np.cross(f, r)
    roll = np.asarray(roll, float)[..., None]
    c, s = np.cos(roll), np.sin(roll)
    r2 = c * r + s * d
    d2 = -s * r + c * d
    return np.stack([r2, d2, f], axis=-1)


def angles_to_forward(yaw, pitch):
    return np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], -1)


def rate_limit(x: np.ndarray, max_step: float, smooth: float = 3.0) -> np.ndarray:
    """Follow x with steps no larger than max_step, then smooth (keeps the limit)."""
    y = np.empty_like(x)
    y[0] = x[0]
    for i in range(1, len(x)):
        y[i] = y[i - 1] + np.clip(x[i] - y[i - 1], -max_step, max_step)
    if smooth > 0 and len(y) > 4:
        y = ndimage.gaussian_filter1d(y, smooth, mode="nearest")
    return y


def smooth_noise(rng, n, fps, amp, freqs, periodic_T: Optional[float] = None):
    """Sum of random sinusoids (amplitude amp overall) at the given frequencies in Hz.
    With periodic_T the frequencies are snapped so the signal repeats after that time."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for f in freqs:
        if periodic_T:
            f = max(1, round(f * periodic_T)) / periodic_T
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 1.0)
    return out * amp / max(1.0, np.sqrt(len(freqs) / 2))


def jitter(rng, n, fps, pos_mm=1.2, rot_deg=0.12):
    """Hand tremor: a few mm and a tenth of a degree at 1.5-8 Hz, plus filtered noise."""
    pos = np.stack([smooth_noise(rng, n, fps, pos_mm * 1e-3, rng.uniform(1.5, 8.0, 3)) for _ in range(3)], -1)
    white = ndimage.gaussian_filter1d(rng.normal(0, 1, (n, 3)), 1.5, axis=0)
    pos += white * pos_mm * 0.3e-3
    rot = np.stack([smooth_noise(rng, n, fps, np.radians(rot_deg), rng.uniform(1.5, 8.0, 3)) for _ in range(3)], -1)
    return pos, rot


def small_rotation(rv: np.ndarray) -> np.ndarray:
    """Rotation matrices [n, 3, 3] for small rotation vectors [n, 3] (Rodrigues)."""
    th = np.linalg.norm(rv, axis=-1, keepdims=True)[..., None]
    k = rv / np.maximum(np.linalg.norm(rv, axis=-1, keepdims=True), 1e-12)
    K = np.zeros(rv.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2] = -k[..., 2], k[..., 1]
    K[..., 1, 0], K[..., 1, 2] = k[..., 2], -k[..., 0]
    K[..., 2, 0], K[..., 2, 1] = -k[..., 1], k[..., 0]
    return np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * (K @ K)


class FreeSpace:
    """Clearance (distance to walls and furniture footprints) on the floor grid."""

    def __init__(self, scene: Scene):
        info = scene.info
        self.clear = info["clearance"]
        self.origin = np.asarray(info["grid_origin"], float)
        self.cell = float(info["grid_cell"])

    def at(self, xy: np.ndarray) -> np.ndarray:
        ij = np.floor((np.asarray(xy) - self.origin) / self.cell).astype(int)
        i = np.clip(ij[..., 0], 0, self.clear.shape[0] - 1)
        j = np.clip(ij[..., 1], 0, self.clear.shape[1] - 1)
        inside = (ij[..., 0] >= 0) & (ij[..., 0] < self.clear.shape[0]) & (ij[..., 1] >= 0) & (ij[..., 1] < self.clear.shape[1])
        return np.where(inside, self.clear[i, j], 0.0)

    def cells(self, min_clear: float) -> np.ndarray:
        """Centres of cells in the largest connected region with at least min_clear."""
        ok = self.clear >= min_clear
        lab, n = ndimage.label(ok)
        if n == 0:
            return np.zeros((0, 2))
        sizes = ndimage.sum(ok, lab, index=np.arange(1, n + 1))
        ij = np.argwhere(lab == 1 + int(np.argmax(sizes)))
        return self.origin + (ij + 0.5) * self.cell

    def segment_ok(self, a, b, min_clear) -> bool:
        n = max(2, int(np.linalg.norm(b - a) / (self.cell * 0.5)))
        pts = a[None] + np.linspace(0, 1, n)[:, None] * (b - a)[None]
        return bool((self.at(pts) >= min_clear).all())


def _gaze_targets(rng, scene: Scene, pos: np.ndarray, fps: float):
    """Per-frame gaze points that dwell 1.5-4 s on scene content and move smoothly between."""
    n = len(pos)
    pois = np.asarray(scene.info["pois"], float).reshape(-1, 3).copy()
    pois[:, 2] = np.maximum(pois[:, 2], 0.6)  # look at furniture, not at the floor in front of it
    W, D, H = scene.info["size"]
    # Add points on the walls so bare walls get looked at too.
    poly = np.asarray(scene.info["polygon"], float)
    extra = []
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        for s in rng.uniform(0.15, 0.85, 2):
            p = a + (b - a) * s
            extra.append((p[0], p[1], rng.uniform(0.8, 1.7)))
    cands = np.concatenate([pois, np.array(extra)], 0) if len(pois) else np.array(extra)
    prior = np.concatenate([np.ones(len(pois)), np.full(len(extra), 0.25)])  # furniture over bare wall
    tgt = np.zeros((n, 3))
    i = 0
    prev = None
    while i < n:
        dwell = int(rng.uniform(1.5, 4.0) * fps)
        p = pos[min(i + dwell // 2, n - 1)]
        heading = pos[min(i + dwell, n - 1)] - pos[i]
        vec = cands - p
        dist = np.linalg.norm(vec[:, :2], axis=1)
        ok = (dist > 1.0) & (dist < 6.0)
        if prev is not None:
            ok &= np.linalg.norm(cands - prev, axis=1) > 0.3
        # Room-scale views: things 2-5 m away are preferred over close-ups.
        w = ok * prior * (0.2 + np.clip((dist - 1.0) / 1.5, 0, 1))
        hn = np.linalg.norm(heading[:2])
        if hn > 1e-3:  # prefer things ahead of the walking direction
            cosang = (vec[:, :2] @ heading[:2]) / (dist * hn + 1e-9)
            w *= 0.3 + np.clip(cosang, 0, 1)
        if w.sum() <= 0:
            w = prior.copy()
        k = rng.choice(len(cands), p=w / w.sum())
        prev = cands[k]
        tgt[i:i + dwell] = cands[k]
        i += dwell
    return ndimage.gaussian_filter1d(tgt, 0.5 * fps, axis=0, mode="nearest")


def _wander(rng, scene: Scene, fs: FreeSpace, n: int, fps: float):
    """Positions [n, 2] along a smooth waypoint spline, and the per-frame speed."""
    speed = np.clip(rng.uniform(0.28, 0.42) + smooth_noise(rng, n, fps, 0.12, rng.uniform(0.03, 0.15, 3)),
                    0.2, 0.55)
    need = float(np.sum(speed[1:]) / fps) + 0.3
    for min_clear in (0.7, 0.6, 0.55):
        cells = fs.cells(min_clear)
        if len(cells) < 4:
            continue
        for _ in range(30):
            pts = [cells[rng.integers(len(cells))]]
            length, heading = 0.0, None
            for _ in range(400):
                if length >= need * 1.1 + 1.0:
                    break
                cur = pts[-1]
                d = np.linalg.norm(cells - cur, axis=1)
                near = np.nonzero((d > 0.7) & (d < 2.2))[0]
                if len(near) == 0:
                    break
                w = np.ones(len(near))
                if heading is not None:
                    v = (cells[near] - cur) / d[near, None]
                    w = 0.02 + np.clip(v @ heading, 0, 1) ** 2  # keep walking on, rarely turn back
                for _ in range(8):
                    k = near[rng.choice(len(near), p=w / w.sum())]
                    if fs.segment_ok(cur, cells[k], min_clear - 0.1):
                        break
                else:
                    k = None
                if k is None:
                    heading = -heading if heading is not None else None
                    continue
                heading = (cells[k] - cur) / d[k]
                length += d[k]
                pts.append(cells[k])
            if length < need:
                continue
            pts = np.array(pts)
            chord = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
            spl = CubicSpline(chord, pts, bc_type="natural")
            dense_s = np.arange(0, chord[-1], 0.01)
            dense = spl(dense_s)
            if (fs.at(dense) < min_clear - 0.2).any():
                continue
            arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
            s_t = np.concatenate([[0], np.cumsum(speed[1:] / fps)])
            xy = np.stack([np.interp(s_t, arc, dense[:, 0]), np.interp(s_t, arc, dense[:, 1])], -1)
            return xy
    # A cramped room: sway around the freest point instead.
    c = fs.cells(0.0)
    best = c[np.argmax(fs.at(c))]
    t = np.arange(n) / fps
    return best + 0.15 * np.stack([np.sin(2 * np.pi * t / 9.0), np.sin(2 * np.pi * t / 7.0)], -1)


def _orient(rng, pos3: np.ndarray, gaze: np.ndarray, fps: float):
    v = gaze - pos3
    yaw = np.unwrap(np.arctan2(v[:, 1], v[:, 0]))
    pitch = np.arctan2(v[:, 2], np.linalg.norm(v[:, :2], axis=1))
    pitch = np.clip(pitch, np.radians(-40), np.radians(12))
    yaw = rate_limit(yaw, np.radians(33) / fps, smooth=0.15 * fps)
    pitch = rate_limit(pitch, np.radians(18) / fps, smooth=0.15 * fps)
    return yaw, pitch


def plan_wander(scene: Scene, n: int, rng: np.random.Generator, fps: float = 30.0) -> np.ndarray:
    fs = FreeSpace(scene)
    xy = _wander(rng, scene, fs, n, fps)
    H = scene.info["height"]
    z = np.clip(rng.uniform(1.2, 1.6) + smooth_noise(rng, n, fps, 0.12, rng.uniform(0.02, 0.1, 2)), 1.0,
                min(1.8, H - 0.5))
    pos3 = np.concatenate([xy, z[:, None]], 1)
    gaze = _gaze_targets(rng, scene, pos3, fps)
    yaw, pitch = _orient(rng, pos3, gaze, fps)
    roll = smooth_noise(rng, n, fps, np.radians(2.0), rng.uniform(0.05, 0.3, 2))
    return _assemble(rng, pos3, yaw, pitch, roll, fps)


def _closed_curve(pts: np.ndarray, harmonics: int = 7, samples: int = 1024) -> np.ndarray:
    """Resample a closed polygon by arc length and keep its low Fourier harmonics."""
    seg = np.linalg.norm(np.diff(np.vstack([pts, pts[:1]]), axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    u = np.linspace(0, s[-1], samples, endpoint=False)
    closed = np.vstack([pts, pts[:1]])
    z = np.interp(u, s, closed[:, 0]) + 1j * np.interp(u, s, closed[:, 1])
    Z = np.fft.fft(z)
    keep = np.zeros_like(Z)
    keep[:harmonics + 1] = Z[:harmonics + 1]
    keep[-harmonics:] = Z[-harmonics:]
    zz = np.fft.ifft(keep)
    return np.stack([zz.real, zz.imag], -1)


def _perimeter(curve: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(np.vstack([curve, curve[:1]]), axis=0), axis=1).sum())


def _room_loop(fs: FreeSpace, max_len: float):
    """The widest smooth closed walk around the room's free space that fits max_len:
    a low-passed iso-clearance contour (it follows L shapes and partitions), shrunk
    towards its centre when it is too long for the time available."""
    import cv2

    top = float(fs.clear.max())
    fallback = None
    for c in np.arange(0.65, top - 0.05, 0.1):
        mask = (fs.clear >= c).astype(np.uint8)
        lab, n = ndimage.label(mask)
        if n == 0:
            break
        sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
        region = (lab == 1 + int(np.argmax(sizes))).astype(np.uint8)
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        if not contours:
            break
        cont = max(contours, key=len)[:, 0, :]  # (col=j, row=i)
        if len(cont) < 8:
            break
        pts = fs.origin + (cont[:, ::-1] + 0.5) * fs.cell
        curve = _closed_curve(pts)
        if (fs.at(curve) < 0.5).any():
            continue
        perim = _perimeter(curve)
        if perim <= max_len:
            return curve
        centre = curve.mean(0)
        small = centre + (curve - centre) * (max_len / perim)
        if (fs.at(small) >= 0.5).all():
            return small
        fallback = curve
    return fallback


def plan_loop(scene: Scene, n: int, rng: np.random.Generator, fps: float = 30.0) -> np.ndarray:
    """A smooth loop around the room's free space that ends where, and looking where, it
    started. Long sequences look across the room while circling it (a full 360 degree
    sweep per lap); short ones keep facing one side and sway."""
    fs = FreeSpace(scene)
    T = max(n - 1, 1) / fps
    W, D, H = scene.info["size"]
    curve = _room_loop(fs, 0.45 * T)
    if curve is None:  # cramped: a small circle around the freest point
        cells = fs.cells(0.0)
        c0 = cells[np.argmax(fs.at(cells))]
        ang = np.linspace(0, 2 * np.pi, 1024, endpoint=False)
        curve = c0 + 0.2 * np.stack([np.cos(ang), np.sin(ang)], -1)
    centre = curve.mean(0)
    perim = _perimeter(curve)
    if perim > 0.5 * T:  # still too long for the time: shrink towards its centre
        curve = centre + (curve - centre) * (0.5 * T / perim)
        perim = _perimeter(curve)
    laps = int(np.clip(np.floor(0.4 * T / max(perim, 1e-3)), 1, 3))
    if rng.uniform() < 0.5:
        curve = curve[::-1].copy()  # either direction
    start = int(rng.integers(len(curve)))
    curve = np.roll(curve, -start, axis=0)
    closed = np.vstack([curve, curve[:1]])
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    arc /= arc[-1]

    t = np.arange(n) / fps
    j = int(rng.integers(1, 3))
    eps = rng.uniform(0.0, 0.4)
    phase = laps * (t / T + eps * np.sin(2 * np.pi * j * t / T) / (2 * np.pi * j))
    frac = np.mod(phase, 1.0)
    xy = np.stack([np.interp(frac, arc, closed[:, 0]), np.interp(frac, arc, closed[:, 1])], -1)
    z = np.clip(rng.uniform(1.25, 1.55) + smooth_noise(rng, n, fps, 0.1, [0.05, 0.11], periodic_T=T), 1.0,
                min(1.8, H - 0.5))

    to_c = centre - xy
    inward = np.unwrap(np.arctan2(to_c[:, 1], to_c[:, 0]))
    sway = smooth_noise(rng, n, fps, np.radians(12), [0.04, 0.09], periodic_T=T)
    yaw = inward + rng.uniform(-0.3, 0.3) + sway
    rate = np.degrees(np.abs(np.diff(yaw))).max() * fps if n > 1 else 0.0
    if rate > 35.0:  # a short or tight loop: keep looking at one side of the room
        yaw0 = inward[0] + rng.uniform(-0.3, 0.3)
        amp = min(np.radians(35), 0.45 * T / (2 * np.pi))
        yaw = yaw0 + amp * np.sin(2 * np.pi * t / T)
    pitch = np.radians(rng.uniform(-22, -8)) + smooth_noise(rng, n, fps, np.radians(6), [0.05, 0.1], periodic_T=T)
    roll = smooth_noise(rng, n, fps, np.radians(1.5), [0.07, 0.13], periodic_T=T)
    return _assemble(rng, np.concatenate([xy, z[:, None]], 1), yaw, pitch, roll, fps)


def _assemble(rng, pos3, yaw, pitch, roll, fps):
    n = len(pos3)
    R = look_rotation(angles_to_forward(yaw, pitch), roll)
    jp, jr = jitter(rng, n, fps)
    R = R @ small_rotation(jr)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = R
    T[:, :3, 3] = pos3 + jp
    return T


def step_sizes(poses: np.ndarray):
    """Per-step translation (m) and rotation (deg) between consecutive poses."""
    dt = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    Rrel = np.einsum("nji,njk->nik", poses[:-1, :3, :3], poses[1:, :3, :3])
    cos = np.clip((np.trace(Rrel, axis1=1, axis2=2) - 1) / 2, -1, 1)
    return dt, np.degrees(np.arccos(cos))
