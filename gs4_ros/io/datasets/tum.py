"""TUM RGB-D benchmark folders (rgb.txt, depth.txt, groundtruth.txt).

Colour and depth come from separate free-running streams, so pairs are associated by
nearest timestamp; ground truth (100 Hz mocap) is interpolated to the colour stamp.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from gs4_ros.core.frame import Intrinsics
from gs4_ros.io.trajectory import read_tum

from .base import (Dataset, DatasetError, coerce_intrinsics, image_size, intrinsics_from_numbers,
                   make_frame, parse_numbers, read_color, read_depth, report_missing, require_dir)

# Published calibrations of the three Kinects used for the benchmark (640x480); the
# ROS default is used for anything else.
TUM_INTRINSICS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
    "default": (525.0, 525.0, 319.5, 239.5),
}
TUM_DEPTH_FACTOR = 5000.0
MAX_DT = 0.02  # seconds, for both rgb<->depth and rgb<->ground truth


def read_file_list(path: Path) -> Tuple[np.ndarray, List[str]]:
    """`timestamp filename` lines (comments with #) -> (stamps, relative file names)."""
    if not path.is_file():
        raise DatasetError(f"TUM folder is missing '{path.name}' (expected at {path})")
    stamps, names = [], []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.replace(",", " ").split()
        if len(parts) < 2:
            raise DatasetError(f"{path}:{ln}: expected 'timestamp filename', got '{s}'")
        try:
            stamps.append(float(parts[0]))
        except ValueError:
            raise DatasetError(f"{path}:{ln}: '{parts[0]}' is not a timestamp") from None
        names.append(parts[1])
    return np.array(stamps, dtype=np.float64), names


def nearest(sorted_t: np.ndarray, queries: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Index into sorted_t of the nearest stamp to each query, and the absolute gap."""
    j = np.searchsorted(sorted_t, queries)
    lo = np.clip(j - 1, 0, len(sorted_t) - 1)
    hi = np.clip(j, 0, len(sorted_t) - 1)
    pick = np.where(np.abs(sorted_t[hi] - queries) < np.abs(sorted_t[lo] - queries), hi, lo)
    return pick, np.abs(sorted_t[pick] - queries)


def associate(t_a: np.ndarray, t_b: np.ndarray, max_dt: float) -> Tuple[np.ndarray, np.ndarray]:
    """For each stamp in a, the nearest in b within max_dt. Returns (idx_a, idx_b)."""
    if len(t_a) == 0 or len(t_b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(t_b, kind="stable")
    pick, gap = nearest(t_b[order], t_a)
    ok = gap <= max_dt
    return np.nonzero(ok)[0], order[pick[ok]]


def interpolate_poses(gt_t: np.ndarray, gt_T: np.ndarray, query: np.ndarray,
                      max_dt: float = MAX_DT) -> List[Optional[np.ndarray]]:
    """Ground-truth pose at each query stamp: interpolated (lerp + slerp) between the
    bracketing samples, or the nearest sample at the ends; None when no sample is within
    max_dt."""
    out: List[Optional[np.ndarray]] = [None] * len(query)
    if len(gt_t) == 0:
        return out
    order = np.argsort(gt_t, kind="stable")
    gt_t, gt_T = gt_t[order], gt_T[order]
    pick, gap = nearest(gt_t, query)
    rots = Rotation.from_matrix(gt_T[:, :3, :3])
    for i, (t, g, p) in enumerate(zip(query, gap, pick)):
        if g > max_dt:
            continue
        j = int(np.searchsorted(gt_t, t))
        if 0 < j < len(gt_t) and gt_t[j] > gt_t[j - 1] and gt_t[j] - gt_t[j - 1] <= 4 * max_dt:
            t0, t1 = gt_t[j - 1], gt_t[j]
            a = (t - t0) / (t1 - t0)
            T = np.eye(4)
            T[:3, :3] = Slerp([t0, t1], rots[[j - 1, j]])([t]).as_matrix()[0]
            T[:3, 3] = (1 - a) * gt_T[j - 1, :3, 3] + a * gt_T[j, :3, 3]
        else:
            T = gt_T[p].copy()
        out[i] = T
    return out


def family_intrinsics(folder: Path) -> Tuple[float, float, float, float]:
    name = folder.resolve().name.lower()
    for fam in ("freiburg1", "freiburg2", "freiburg3"):
        short = "fr" + fam[-1]
        if fam in name or re.search(rf"(^|[_\-]){short}([_\-]|$)", name):
            return TUM_INTRINSICS[fam]
    return TUM_INTRINSICS["default"]


class TUMDataset(Dataset):
    """A TUM RGB-D sequence folder; frames are the associated colour/depth pairs."""

    def __init__(self, path, frames=None, width=None, height=None, intrinsics=None,
                 depth_scale: float = TUM_DEPTH_FACTOR, max_dt: float = MAX_DT, **unused):
        root = require_dir(path, "TUM RGB-D")
        self.root = root
        self.name = f"tum:{root.name}"
        self.depth_scale = float(depth_scale)
        t_rgb, f_rgb = read_file_list(root / "rgb.txt")
        t_dep, f_dep = read_file_list(root / "depth.txt")
        if len(t_rgb) == 0:
            raise DatasetError(f"{root / 'rgb.txt'} lists no images")
        if len(t_dep) == 0:
            raise DatasetError(f"{root / 'depth.txt'} lists no images")
        ia, ib = associate(t_rgb, t_dep, max_dt)
        if ia.size == 0:
            raise DatasetError(f"{root}: no colour image has a depth image within {max_dt * 1000:.0f} ms "
                               f"(rgb.txt spans {t_rgb.min():.3f}-{t_rgb.max():.3f} s, depth.txt "
                               f"{t_dep.min():.3f}-{t_dep.max():.3f} s)")
        self._rgb = [root / f_rgb[i] for i in ia]
        self._dep = [root / f_dep[j] for j in ib]
        stamps = t_rgb[ia]

        poses = None
        gt_file = root / "groundtruth.txt"
        if gt_file.is_file():
            try:
                gt_t, gt_T = read_tum(gt_file)
            except ValueError as e:
                raise DatasetError(f"cannot parse ground truth: {e}") from None
            poses = interpolate_poses(gt_t, gt_T, stamps, max_dt)

        self._fill_intrinsics(intrinsics)
        self._setup(self._intr, stamps, poses, frames, width, height)
        report_missing([self._rgb[k] for k in self._idx] + [self._dep[k] for k in self._idx],
                       f"TUM sequence {root}")

    def _fill_intrinsics(self, override):
        w, h = image_size(self._rgb[0])
        if override is not None:
            self._intr = coerce_intrinsics(override, w, h)
            return
        for fname in ("camera.txt", "intrinsics.txt"):
            f = self.root / fname
            if f.is_file():
                self._intr = intrinsics_from_numbers(parse_numbers(f, "intrinsics file"), w, h, f)
                return
        fx, fy, cx, cy = family_intrinsics(self.root)
        # The published values are for 640x480; scale them if the images differ.
        self._intr = Intrinsics(fx, fy, cx, cy, 640, 480)
        if (w, h) != (640, 480):
            self._intr = self._intr.scaled(w, h)

    def _read(self, k):
        rgb = read_color(self._rgb[k])
        depth = read_depth(self._dep[k], self.depth_scale)
        return make_frame(k, self._all_stamps[k], rgb, depth, self._native, self.gt_pose(k),
                          self._rgb[k], self._dep[k])
