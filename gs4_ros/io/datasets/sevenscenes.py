"""Microsoft 7-Scenes sequences: frame-XXXXXX.{color.png|jpg, depth.png, pose.txt}.

Accepts either a flat sequence folder (as in ../shared/data/7scenes_redkitchen_dev) or a
scene folder holding seq-XX subfolders (the original release), picking one by `seq`.
There are no timestamps: the Kinect ran at 30 Hz, so t = index / 30.

The colour images are not registered to the depth images (the dataset says so): they come
from the Kinect's colour camera, whose focal length is about 525 px where the depth
camera's is 585, mounted 2.6 cm beside it. By default each colour image is resampled
into the depth camera's view (io/datasets/registration.py) with those values: 585 from
the dataset's page, 525 and the depth-to-colour transform from the generic Kinect v1
calibration that 7-Scenes' users commonly apply (LIRIS). Measured with our tracker on
redkitchen 0-499 at 640x480: ATE 2.59 -> 2.16 cm, PSNR 15.9 -> 17.4 dB (docs/results.md).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gs4_ros.core.frame import Intrinsics

from .base import (Dataset, DatasetError, coerce_intrinsics, intrinsics_from_numbers, make_frame,
                   parse_numbers, read_color, read_depth, require_dir, valid_pose)
from .registration import ColorCamera, register_color

DEFAULT_INTRINSICS = (585.0, 585.0, 320.0, 240.0)  # the depth camera's, 640x480
# Kinect v1 colour camera at 640x480 and the transform from depth-camera to colour-camera
# points (generic calibration, see the module docstring).
KINECT_V1_COLOR = ColorCamera(
    fx=525.0, fy=525.0, cx=320.0, cy=240.0,
    rgb_from_depth=np.array([[0.99996518, 0.00267651, -0.00790410, -0.02555894],
                             [-0.00274093, 0.99996303, -0.00815045, 0.00010110],
                             [0.00788199, 0.00817183, 0.99993555, 0.00203183],
                             [0.0, 0.0, 0.0, 1.0]]))
FPS = 30.0
_FRAME_RE = re.compile(r"^frame-(\d+)\.(color\.(?:png|jpg)|depth\.png|pose\.txt)$")


def pick_sequence(root: Path, seq) -> Path:
    """The flat folder itself, or the chosen seq-XX subfolder of a scene folder."""
    if any(root.glob("frame-*.depth.png")):
        return root
    subs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("seq-"))
    if not subs:
        raise DatasetError(f"7-Scenes folder '{root}' has no frame-XXXXXX.depth.png files and no "
                           f"seq-XX subfolders")
    if seq is None:
        return subs[0]
    want = str(seq)
    if want.isdigit():
        want = f"seq-{int(want):02d}"
    for s in subs:
        if s.name == want:
            return s
    raise DatasetError(f"7-Scenes folder '{root}' has no sequence '{seq}'; available: "
                       + ", ".join(s.name for s in subs))


class SevenScenesDataset(Dataset):
    """One 7-Scenes sequence. Depth is uint16 millimetres; 0 and 65535 mean no depth."""

    def __init__(self, path, frames=None, width=None, height=None, seq=None, intrinsics=None,
                 depth_scale: float = 1000.0, register_color: bool = True, **unused):
        root = require_dir(path, "7-Scenes")
        folder = pick_sequence(root, seq)
        self.root = folder
        self.name = f"7scenes:{root.name}" + (f"/{folder.name}" if folder != root else "")
        self.depth_scale = float(depth_scale)
        self.register_color = bool(register_color)

        files = {}
        for p in folder.iterdir():
            m = _FRAME_RE.match(p.name)
            if m:
                files.setdefault(int(m.group(1)), {})[m.group(2).split(".")[0]] = p
        numbers = sorted(files)
        incomplete = [n for n in numbers if not {"color", "depth"} <= files[n].keys()]
        if incomplete:
            n = incomplete[0]
            lack = "colour" if "color" not in files[n] else "depth"
            raise DatasetError(f"7-Scenes folder '{folder}': {len(incomplete)} frame(s) lack a colour or "
                               f"depth image, e.g. frame-{n:06d} has no {lack} image")
        self._color = [files[n]["color"] for n in numbers]
        self._depth = [files[n]["depth"] for n in numbers]
        self._numbers = numbers
        stamps = np.array(numbers, dtype=np.float64) / FPS

        poses = []
        for n in numbers:
            pf = files[n].get("pose")
            if pf is None:
                poses.append(None)
                continue
            vals = parse_numbers(pf, "pose file")
            if vals.size != 16:
                raise DatasetError(f"pose file '{pf}' must hold a 4x4 matrix (16 numbers), found {vals.size}")
            poses.append(valid_pose(vals.reshape(4, 4)))
        if all(p is None for p in poses):
            poses = None

        intr = self._intrinsics(folder, root, intrinsics)
        self._setup(intr, stamps, poses, frames, width, height)

    def _intrinsics(self, folder: Path, root: Path, override) -> Intrinsics:
        if not self._color:
            raise DatasetError(f"7-Scenes folder '{folder}' holds no frames")
        # All 7-Scenes images are 640x480; read the first depth image only to confirm.
        first = read_depth(self._depth[0], self.depth_scale)
        h, w = first.shape
        if override is not None:
            return coerce_intrinsics(override, w, h)
        for f in (folder / "camera-intrinsics.txt", root / "camera-intrinsics.txt"):
            if f.is_file():
                return intrinsics_from_numbers(parse_numbers(f, "intrinsics file"), w, h, f)
        fx, fy, cx, cy = DEFAULT_INTRINSICS
        intr = Intrinsics(fx, fy, cx, cy, 640, 480)
        return intr if (w, h) == (640, 480) else intr.scaled(w, h)

    def _read(self, k):
        rgb = read_color(self._color[k])
        depth = read_depth(self._depth[k], self.depth_scale, invalid_values=(0, 65535))
        if self.register_color and rgb.shape[:2] == depth.shape:
            h, w = rgb.shape[:2]
            cam = KINECT_V1_COLOR.scaled(w / 640, h / 480)    # the calibration is for 640x480
            rgb = register_color(rgb, depth, self._native.K_numpy(), cam)
        return make_frame(k, self._all_stamps[k], rgb, depth, self._native, self.gt_pose(k),
                          self._color[k], self._depth[k], meta={"file_number": self._numbers[k]})
