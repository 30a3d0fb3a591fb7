"""Replica scenes in the NICE-SLAM layout.

results/frameNNNNNN.jpg, results/depthNNNNNN.png (depth / 6553.5 = metres), traj.txt with
one row-major 4x4 camera-to-world per line, and cam_params.json beside the scene or one
folder up. Renders have no timestamps: t = index / 30.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from gs4_ros.core.frame import FrameError, Intrinsics

from .base import (Dataset, DatasetError, coerce_intrinsics, make_frame, read_color, read_depth,
                   report_missing, require_dir, valid_pose)

DEFAULT_CAMERA = {"w": 1200, "h": 680, "fx": 600.0, "fy": 600.0, "cx": 599.5, "cy": 339.5,
                  "scale": 6553.5}
FPS = 30.0
_COLOR_RE = re.compile(r"^frame(\d+)\.(jpg|png)$")


def read_cam_params(root: Path):
    """(camera dict, source path or None) from cam_params.json in the scene or its parent."""
    for f in (root / "cam_params.json", root.parent / "cam_params.json"):
        if f.is_file():
            try:
                cam = json.loads(f.read_text())["camera"]
                out = dict(DEFAULT_CAMERA)
                out.update({k: cam[k] for k in ("w", "h", "fx", "fy", "cx", "cy") if k in cam})
                if "scale" in cam:
                    out["scale"] = cam["scale"]
                return out, f
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DatasetError(f"'{f}' is not a Replica camera file (need a 'camera' object with "
                                   f"w, h, fx, fy, cx, cy): {e}") from None
    return dict(DEFAULT_CAMERA), None


def read_traj(path: Path) -> np.ndarray:
    """traj.txt -> [N, 4, 4]."""
    if not path.is_file():
        raise DatasetError(f"Replica scene is missing its trajectory file '{path}'")
    rows = []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            v = [float(x) for x in s.replace(",", " ").split()]
        except ValueError:
            raise DatasetError(f"{path}:{ln}: cannot parse numbers from '{s[:60]}'") from None
        if len(v) != 16:
            raise DatasetError(f"{path}:{ln}: expected 16 numbers (a row-major 4x4 pose), got {len(v)}")
        rows.append(np.array(v).reshape(4, 4))
    return np.array(rows).reshape(-1, 4, 4)


class ReplicaDataset(Dataset):
    """A NICE-SLAM style Replica scene (rendered, so colour and depth are registered)."""

    def __init__(self, path, frames=None, width=None, height=None, intrinsics=None,
                 depth_scale=None, **unused):
        root = require_dir(path, "Replica")
        self.root = root
        self.name = f"replica:{root.name}"
        res = root / "results"
        if not res.is_dir():
            raise DatasetError(f"Replica scene '{root}' has no 'results' folder (expected "
                               f"results/frameNNNNNN.jpg and results/depthNNNNNN.png)")
        colour = {}
        for p in res.iterdir():
            m = _COLOR_RE.match(p.name)
            if m:
                colour[int(m.group(1))] = p
        if not colour:
            raise DatasetError(f"'{res}' holds no frameNNNNNN.jpg images")
        numbers = sorted(colour)
        if numbers != list(range(len(numbers))):
            raise DatasetError(f"'{res}': colour frames must be numbered 0..N-1 without gaps "
                               f"(found {len(numbers)} frames numbered {numbers[0]}..{numbers[-1]})")
        width_digits = len(re.match(_COLOR_RE, colour[0].name).group(1))
        self._color = [colour[n] for n in numbers]
        self._depth = [res / f"depth{n:0{width_digits}d}.png" for n in numbers]

        traj = read_traj(root / "traj.txt")
        if len(traj) < len(numbers):
            raise DatasetError(f"'{root / 'traj.txt'}' has {len(traj)} poses but there are "
                               f"{len(numbers)} frames")
        poses = [valid_pose(T) for T in traj[:len(numbers)]]

        cam, src = read_cam_params(root)
        self.depth_scale = float(depth_scale if depth_scale is not None else cam["scale"])
        try:
            intr = Intrinsics(float(cam["fx"]), float(cam["fy"]), float(cam["cx"]), float(cam["cy"]),
                              int(cam["w"]), int(cam["h"]))
        except (FrameError, ValueError, TypeError) as e:
            raise DatasetError(f"bad camera parameters in '{src}': {e}") from None
        if intrinsics is not None:
            intr = coerce_intrinsics(intrinsics, intr.width, intr.height)
        stamps = np.arange(len(numbers), dtype=np.float64) / FPS
        self._setup(intr, stamps, poses, frames, width, height)
        report_missing([self._depth[k] for k in self._idx], f"Replica scene {root}")

    def _read(self, k):
        rgb = read_color(self._color[k])
        depth = read_depth(self._depth[k], self.depth_scale)
        return make_frame(k, self._all_stamps[k], rgb, depth, self._native, self.gt_pose(k),
                          self._color[k], self._depth[k])
