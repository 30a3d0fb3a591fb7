"""Trajectory files in the TUM RGB-D format: `timestamp tx ty tz qx qy qz qw` per line."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Tuple

import numpy as np
from scipy.spatial.transform import Rotation


def pose_to_tum_row(t: float, T: np.ndarray) -> str:
    q = Rotation.from_matrix(np.asarray(T)[:3, :3]).as_quat()  # x, y, z, w
    p = np.asarray(T)[:3, 3]
    return f"{t:.6f} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f} {q[0]:.7f} {q[1]:.7f} {q[2]:.7f} {q[3]:.7f}"


def write_tum(path, stamps: Iterable[float], poses: Iterable[np.ndarray]):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("# timestamp tx ty tz qx qy qz qw (camera-to-world, OpenCV camera axes)\n")
        for t, T in zip(stamps, poses):
            f.write(pose_to_tum_row(t, T) + "\n")


def read_tum(path) -> Tuple[np.ndarray, np.ndarray]:
    """Returns (timestamps [N], poses [N, 4, 4]). Comment lines (#) are skipped."""
    stamps: List[float] = []
    poses: List[np.ndarray] = []
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            v = s.replace(",", " ").split()
            if len(v) != 8:
                raise ValueError(f"{path}:{ln}: expected 8 values (t tx ty tz qx qy qz qw), got {len(v)}")
            t, x, y, z, qx, qy, qz, qw = map(float, v)
            T = np.eye(4)
            T[:3, :3] = Rotation.from_quat([qx, qy, qz, qw]).as_matrix()
            T[:3, 3] = (x, y, z)
            stamps.append(t)
            poses.append(T)
    return np.array(stamps), np.array(poses).reshape(-1, 4, 4)
